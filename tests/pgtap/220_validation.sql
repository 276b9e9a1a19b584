-- api.validate_license: every code of the pipeline, and that the first
-- failing step answers when several would (the pipeline's order).
begin;
select plan(47);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'basic');
select from tests.fx_policy('A', 'fp', require_fingerprint => true, heartbeat_interval => interval '10 minutes');
select
from tests.fx_policy('A', 'limited', max_machines => 1, max_users => 1, heartbeat_interval => interval '10 minutes');
select from tests.fx_policy('B', 'basic');
select from tests.fx_entitlement('A', 'sso', array['basic', 'limited']);
select from tests.fx_entitlement('A', 'api', array['basic']);
select tests.fx_customer('A', 'c1') as c1 \gset
select tests.fx_customer('A', 'c2') as c2 \gset

select from tests.fx_license('A', 'valid', 'basic');
select from tests.fx_license('A', 'canceled', 'basic', 'canceled', now() - interval '1 day');
select from tests.fx_license('A', 'suspended', 'basic', 'suspended', now() - interval '1 day');
select from tests.fx_license('A', 'expired', 'basic', 'expired', now() - interval '1 day');
select from tests.fx_license('A', 'lapsed', 'basic', 'active', now() - interval '1 second');
select from tests.fx_license('A', 'overdue', 'fp', 'past_due', grace_ends_at => now() - interval '1 minute');
select from tests.fx_license('A', 'grace', 'basic', 'past_due', grace_ends_at => now() + interval '2 days');
select from tests.fx_license('A', 'fp', 'fp');
select from tests.fx_license('A', 'fp dead', 'fp');
select from tests.fx_license('A', 'fp live', 'fp');
select from tests.fx_license('A', 'crowded', 'limited');
select from tests.fx_license('A', 'seats', 'limited');
select from tests.fx_license('A', 'roomy', 'limited');
select from tests.fx_license('B', 'b', 'basic');
select from tests.fx_machine('fp dead', 'dead-1', now() - interval '11 minutes');
select from tests.fx_machine('fp live', 'live-1');
select from tests.fx_machine('fp live', 'dead-2', now() - interval '1 hour');
select from tests.fx_machine('crowded', 'm1');
select from tests.fx_machine('crowded', 'm2');
select from tests.fx_machine('roomy', 'r1');
select from tests.fx_machine('roomy', 'r-dead', now() - interval '1 hour');
select from tests.fx_seat('seats', :'c1', 'owner');
select from tests.fx_seat('seats', :'c2');
select from tests.fx_seat('roomy', :'c1', 'owner');
select from tests.fx_seat('crowded', :'c1');
select from tests.fx_seat('crowded', :'c2');
select private.new_license_key() as unknown_key \gset

select tests.act_as(tests.secret_key('A'));

-- Each code, in pipeline order.
select is(
  (api.validate_license('not a key')).code, 'MALFORMED_KEY', 'a key of the wrong shape is MALFORMED_KEY'
);
select is(
  (
    api.validate_license(
      left(tests.fx_key('valid'), -1) || case right(tests.fx_key('valid'), 1) when '0' then '1' else '0' end
    )
  ).code,
  'MALFORMED_KEY', 'a key whose checksum fails (one character mistyped) is MALFORMED_KEY'
);
select ok(
  (
    select not v.valid and v.license is null and v.entitlements is null and v.detail <> ''
    from api.validate_license('') as v
  ),
  'MALFORMED_KEY is invalid, with no license, no entitlements and a detail'
);
select is((api.validate_license(:'unknown_key')).code, 'NOT_FOUND', 'a well-formed unknown key is NOT_FOUND');
select ok(
  (select not v.valid and v.license is null and v.entitlements is null from api.validate_license(:'unknown_key') as v),
  'NOT_FOUND has no license and no entitlements'
);
select is(
  (api.validate_license(tests.fx_key('b'))).code, 'NOT_FOUND', 'another account''s license key is NOT_FOUND'
);
select is(
  (api.validate_license(tests.fx_key('canceled'))).code, 'CANCELED',
  'a canceled license (also past its expiry) is CANCELED'
);
select is(
  (api.validate_license(tests.fx_key('suspended'))).code, 'SUSPENDED',
  'a suspended license (also past its expiry) is SUSPENDED'
);
select is((api.validate_license(tests.fx_key('expired'))).code, 'EXPIRED', 'an expired license is EXPIRED');
select is(
  (api.validate_license(tests.fx_key('lapsed'))).code, 'EXPIRED',
  'an active license whose expiry passed is EXPIRED before any sweep'
);
select is(
  (api.validate_license(tests.fx_key('overdue'))).code, 'OVERDUE',
  'a past_due license after its grace period is OVERDUE (before the fingerprint its policy requires)'
);
select is(
  (api.validate_license(tests.fx_key('fp'))).code, 'FINGERPRINT_SCOPE_REQUIRED',
  'a policy that requires a fingerprint answers FINGERPRINT_SCOPE_REQUIRED without one'
);
select is(
  (api.validate_license(tests.fx_key('fp'), fingerprint => '  ')).code, 'FINGERPRINT_SCOPE_REQUIRED',
  'a blank fingerprint is no fingerprint'
);
select is(
  (api.validate_license(tests.fx_key('fp'), fingerprint => 'x')).code, 'NO_MACHINE',
  'a fingerprint on a license with no machine is NO_MACHINE'
);
select is(
  (api.validate_license(tests.fx_key('fp dead'), fingerprint => 'x')).code, 'NO_MACHINE',
  'a fingerprint on a license whose only machine is silent is NO_MACHINE'
);
select is(
  (api.validate_license(tests.fx_key('fp dead'), fingerprint => 'dead-1')).code, 'HEARTBEAT_DEAD',
  'the fingerprint of a machine silent past the heartbeat interval is HEARTBEAT_DEAD'
);
select is(
  (api.validate_license(tests.fx_key('fp live'), fingerprint => 'dead-2')).code, 'HEARTBEAT_DEAD',
  'HEARTBEAT_DEAD even when another machine of the license is alive'
);
select is(
  (api.validate_license(tests.fx_key('fp live'), fingerprint => 'other')).code, 'FINGERPRINT_SCOPE_MISMATCH',
  'a fingerprint no live machine has is FINGERPRINT_SCOPE_MISMATCH'
);
select is(
  (api.validate_license(tests.fx_key('fp live'), fingerprint => 'live-1')).code, 'VALID',
  'the fingerprint of a live machine validates'
);
select is(
  (api.validate_license(tests.fx_key('valid'), fingerprint => 'x')).code, 'NO_MACHINE',
  'a fingerprint given to a policy that does not require one is still checked'
);
select is(
  (api.validate_license(tests.fx_key('crowded'), fingerprint => 'nope')).code, 'FINGERPRINT_SCOPE_MISMATCH',
  'a fingerprint mismatch comes before TOO_MANY_MACHINES'
);
select is(
  (api.validate_license(tests.fx_key('crowded'), fingerprint => 'm1')).code, 'TOO_MANY_MACHINES',
  'more live machines than max_machines is TOO_MANY_MACHINES (before TOO_MANY_USERS)'
);
select is(
  (api.validate_license(tests.fx_key('crowded'))).code, 'TOO_MANY_MACHINES',
  'TOO_MANY_MACHINES without a fingerprint too'
);
select is(
  (api.validate_license(tests.fx_key('roomy'))).code, 'VALID',
  'a silent machine does not count against max_machines'
);
select is(
  (api.validate_license(tests.fx_key('seats'), entitlements => array['nope'])).code, 'TOO_MANY_USERS',
  'more seats than max_users is TOO_MANY_USERS (before ENTITLEMENTS_MISSING)'
);
select is(
  (api.validate_license(tests.fx_key('valid'), entitlements => array['sso', 'nope', 'zzz'])).code,
  'ENTITLEMENTS_MISSING',
  'a requested entitlement the license lacks is ENTITLEMENTS_MISSING'
);
select ok(
  (
    select v.detail like '%nope, zzz%' and v.detail not like '%sso%'
    from api.validate_license(tests.fx_key('valid'), entitlements => array['sso', 'zzz', 'nope']) as v
  ),
  'the detail names the missing entitlements'
);
select is(
  (api.validate_license(tests.fx_key('grace'), entitlements => array['nope'])).code, 'ENTITLEMENTS_MISSING',
  'ENTITLEMENTS_MISSING comes before PAYMENT_GRACE'
);
select ok(
  (select v.valid and v.code = 'PAYMENT_GRACE' from api.validate_license(tests.fx_key('grace')) as v),
  'a past_due license within its grace period is valid: PAYMENT_GRACE'
);
select ok(
  (select v.valid and v.code = 'VALID' from api.validate_license(tests.fx_key('valid'), entitlements => '{}') as v),
  'an empty entitlements list asks for nothing: VALID'
);
select is(
  (api.validate_license(tests.fx_key('valid'), entitlements => array['sso', 'api'])).entitlements,
  array['api', 'sso'],
  'a valid answer carries the effective entitlement codes, sorted'
);
select is(
  (api.validate_license(tests.fx_key('valid'))).license,
  to_jsonb(api.get_license(tests.fx_id('valid'))),
  'a valid answer carries the license as api.get_license shows it'
);
select is(
  (api.validate_license(tests.fx_key('suspended'))).license ->> 'effective_status', 'suspended',
  'an invalid answer carries the license too'
);
select is(
  (api.validate_license(lower(replace(tests.fx_key('valid'), '-', '')))).code, 'VALID',
  'the key may be typed in lower case without dashes'
);
select is(
  (api.validate_license(replace(tests.fx_key('valid'), '1', 'l'))).code, 'VALID',
  'l reads as 1'
);

-- Overrides count.
select tests.clear_context();
insert into lic.license_entitlements (account_id, license_id, entitlement_id, effect)
select
  e.account_id,
  tests.fx_id('valid') as license_id,
  e.id,
  'revoke' as effect
from lic.entitlements as e
where e.account_id = tests.account_id('A') and e.code = 'sso';
select tests.act_as(tests.secret_key('A'));
select is(
  (api.validate_license(tests.fx_key('valid'), entitlements => array['sso'])).code, 'ENTITLEMENTS_MISSING',
  'a revoked entitlement is missing'
);
select is(
  (api.validate_license(tests.fx_key('valid'))).entitlements, array['api'],
  'a revoked entitlement is not listed'
);

-- Publishable keys may validate, and only their own account's licenses.
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.clear_context();
select tests.act_as(tests.secret_key('B'));
select from tests.remember_key('B pk', api.create_api_key(kind => 'publishable'));
select tests.clear_context();
select tests.act_as(tests.key_secret('A pk'));
select is(
  (api.validate_license(tests.fx_key('valid'))).code, 'VALID', 'a publishable key may validate'
);
select is(
  (api.validate_license(tests.fx_key('b'))).code, 'NOT_FOUND',
  'A''s publishable key on B''s license key is NOT_FOUND'
);
select throws_ok(
  format('select api.check_entitlement(%L, license_id => %L)', 'sso', tests.fx_id('valid')), 'LDNID', null,
  'a publishable key may not check entitlements'
);
select tests.clear_context();
select tests.act_as(tests.key_secret('B pk'));
select is(
  (api.validate_license(tests.fx_key('b'))).code, 'VALID', 'B''s publishable key validates B''s license'
);
select tests.clear_context();

-- Read-only and stable: validation writes nothing.
select is(
  (
    select p.provolatile from pg_catalog.pg_proc as p
    where p.oid = 'api.validate_license(text, text, text[])'::regprocedure
  ),
  's',
  'api.validate_license is stable (it cannot write)'
);
select is(
  (
    select l.lanname from pg_catalog.pg_proc as p inner join pg_catalog.pg_language as l on p.prolang = l.oid
    where p.oid = 'api.validate_license(text, text, text[])'::regprocedure
  ),
  'plpgsql',
  'api.validate_license is PL/pgSQL (cached plans)'
);
select is(
  (
    select count(*)::integer from lic.events
    where type like 'license.validat%'
  ),
  0,
  'no validation event was written'
);

-- The lookups are index scans: with sequential scans priced out, the plans
-- of the statements validation runs use indexes only.
set local enable_seqscan = off;
select unalike(
  (
    select string_agg(line, e'\n') from tests.explain_lines(format(
      $q$select l.* from lic.licenses as l where l.account_id = %L and l.key = %L$q$,
      tests.account_id('A'), tests.fx_key('valid')
    )) as line
  ),
  '%Seq Scan%',
  'the license is found by key through an index'
);
select unalike(
  (
    select string_agg(line, e'\n') from tests.explain_lines(format(
      $q$select from lic.machines as m where m.account_id = %L and m.license_id = %L and m.fingerprint = 'x'$q$,
      tests.account_id('A'), tests.fx_id('valid')
    )) as line
  ),
  '%Seq Scan%',
  'machines are found by fingerprint through an index'
);
select unalike(
  (
    select string_agg(line, e'\n') from tests.explain_lines(format(
      $q$select from lic.license_users as u where u.account_id = %L and u.license_id = %L limit 2$q$,
      tests.account_id('A'), tests.fx_id('valid')
    )) as line
  ),
  '%Seq Scan%',
  'seats are counted through an index'
);

select * from finish();
rollback;
