-- Offline license files (functions/77_license_files.sql): the signing key
-- lifecycle (first use, rotation, one current key), the payload a file signs
-- (license, validation answer, transitions, entitlements, machine, budgets,
-- validity), who may issue what (publishable keys), tenant isolation and row
-- level security on lic.signing_keys. Keys are stand-ins: SQL stores bytes,
-- the web layer makes and signs (tests/python/sdk/test_license_files.py).
begin;
select plan(50);
-- Instants in a payload are UTC whatever the session says.
set local timezone = 'Asia/Kolkata';
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'monthly');
select from tests.fx_policy('B', 'monthly');
select from tests.fx_entitlement('A', 'export-4k', array['monthly']);
select from tests.fx_license('A', 'valid', 'monthly', expires_at => null);
select from tests.fx_license('A', 'expiring', 'monthly', expires_at => now() + interval '2 days');
select from tests.fx_license(
  'A', 'grace', 'monthly', status => 'past_due', expires_at => now() + interval '10 days',
  grace_ends_at => now() + interval '1 day'
);
select from tests.fx_license('A', 'suspended', 'monthly', status => 'suspended');
select from tests.fx_license('B', 'b', 'monthly');
select tests.remember('machine', tests.fx_machine('valid', 'fp-1'));
select from tests.fx_machine('expiring', 'fp-elsewhere');

-- A meter and a budget of 100 a month on 'valid', 30 of it used.
with m as (
  insert into lic.meters (account_id, code, name, aggregation)
  values (tests.account_id('A'), 'renders', 'Renders', 'sum')
  returning id
),

b as (
  insert into lic.budgets (account_id, meter_id, license_id, period, "limit")
  select
    tests.account_id('A') as account_id,
    m.id as meter_id,
    tests.fx_id('valid') as license_id,
    'month' as period,
    100 as "limit"
  from m
  returning id, account_id
)

insert into lic.budget_usage (account_id, budget_id, period_start, used)
select
  b.account_id,
  b.id,
  private.budget_period_start('month', now()) as period_start,
  30 as used
from b;

-- ---------------------------------------------------------------------------
-- Signing keys

select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'))$$,
  'LSTAT', null, 'no file is issued before the account has a signing key'
);
select is_empty('select * from api.list_signing_keys()', 'an account starts with no signing key');
select tests.remember(
  'key 1',
  (api.ensure_signing_key(public_key => decode(repeat('11', 32), 'hex'), private_key_ciphertext => '\x0101')).kid
);
select results_eq(
  $$
    select kid, algorithm, public_key, retired_at
    from api.ensure_signing_key(public_key => decode(repeat('22', 32), 'hex'), private_key_ciphertext => '\x0202')
  $$,
  $$values (tests.id('key 1'), 'Ed25519', 'ERERERERERERERERERERERERERERERERERERERERERE', null::timestamptz)$$,
  'ensuring again keeps the current key (its public half in base64url, unpadded); the spare pair is dropped'
);
select is(tests.event_count('signing_key.created', '{}'), 1, 'the first key is an event, once');
select throws_ok(
  $$select api.ensure_signing_key(public_key => '\x0102', private_key_ciphertext => '\x01')$$,
  'LINVL', null, 'a public key that is not 32 bytes is refused'
);
select throws_ok(
  $$select api.rotate_signing_key(public_key => decode(repeat('33', 32), 'hex'), private_key_ciphertext => null)$$,
  'LINVL', null, 'a rotation needs the encrypted private half'
);

select tests.remember(
  'key 2',
  (api.rotate_signing_key(public_key => decode(repeat('33', 32), 'hex'), private_key_ciphertext => '\x0303')).kid
);
select results_eq(
  $$select kid, retired_at is null from api.list_signing_keys()$$,
  $$values (tests.id('key 2'), true), (tests.id('key 1'), false)$$,
  'a rotation retires the current key, which stays listed; the new one is current; newest first'
);
select is(
  tests.event_count('signing_key.retired', jsonb_build_object('kid', tests.id('key 1'))), 1,
  'the retired key is an event'
);
select is(
  tests.event_count('signing_key.created', jsonb_build_object('kid', tests.id('key 2'))), 1,
  'the new key is an event'
);
select results_eq(
  $$select kid from api.list_signing_keys(page_limit => 1)$$,
  $$values (tests.id('key 2')), (tests.id('key 1'))$$,
  'signing keys are listed in keyset pages (page_limit + 1 rows)'
);
select results_eq(
  $$select kid from api.list_signing_keys(starting_after => tests.id('key 2'))$$,
  $$values (tests.id('key 1'))$$,
  'starting_after pages on'
);
select tests.clear_context();
select throws_ok(
  $$
    insert into lic.signing_keys (account_id, public_key, private_key_ciphertext)
    values (tests.account_id('A'), decode(repeat('44', 32), 'hex'), '\x04')
  $$,
  '23505', null, 'an account has at most one current signing key'
);

-- ---------------------------------------------------------------------------
-- The payload

create temporary table files (name text primary key, content api.license_file_content, payload jsonb);
grant select, insert on files to lic_app;
select from tests.act_as(tests.secret_key('A'));
insert into files
select
  'valid' as name,
  f as content,
  f.payload::jsonb as payload
from api.issue_license_file(license_id => tests.fx_id('valid')) as f;

select is((
  select (content).kid from files
  where name = 'valid'
), tests.id('key 2'
), 'the current key signs');
select is(
  (
    select (content).private_key_ciphertext from files
    where name = 'valid'
  ), '\x0303'::bytea,
  'the content carries the current key''s encrypted private half for the web layer to sign with'
);
select is(
  (
    select (content).payload from files
    where name = 'valid'
  ),
  (
    select payload::text from files
    where name = 'valid'
  ),
  'the payload is JSON text (its bytes are what is signed)'
);
select is(
  (
    select payload - array['license', 'issued_at', 'expires_at', 'budgets'] from files
    where name = 'valid'
  ),
  jsonb_build_object(
    'object', 'license_file_payload', 'version', 1, 'id', (
      select (content).id from files
      where name = 'valid'
    ),
    'kid', tests.id('key 2'), 'account_id', tests.account_id('A'),
    'validation', jsonb_build_object('valid', true, 'code', 'VALID', 'detail', 'the license is valid'),
    'transitions', '[]'::jsonb, 'entitlements', '["export-4k"]'::jsonb, 'machine', null
  ),
  'the payload: the file and key ids, the account, the validation answer now, the effective entitlements'
);
select is(
  (
    select payload -> 'license' ->> 'id' from files
    where name = 'valid'
  ), tests.fx_id('valid'
  )::text,
  'the payload carries the license (as validation shows it)'
);
select is(
  (select (payload ->> 'expires_at')::timestamptz - (payload ->> 'issued_at')::timestamptz from files),
  interval '30 days',
  'a file verifies for 30 days by default'
);
select ok(
  (
    select payload ->> 'issued_at' like '____-__-__T__:__:%+00:00' and (payload ->> 'issued_at')::timestamptz = now()
    from files
    where name = 'valid'
  ),
  'instants are RFC 3339 in UTC, whatever the session''s time zone'
);
select is(
  (
    select (payload -> 'budgets' -> 0) - array['id', 'period_start', 'period_end'] from files
    where name = 'valid'
  ),
  '{"meter": "renders", "period": "month", "limit": 100, "hard": true, "used": 30, "remaining": 70}'::jsonb,
  'the payload carries the license''s budgets with what remains of them at issue'
);
select is(
  (
    select (payload -> 'budgets' -> 0 ->> 'period_end')::timestamptz from files
    where name = 'valid'
  ),
  (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC',
  'and when their period ends'
);
select is(
  tests.event_count(
    'license.file_issued',
    jsonb_build_object(
      'id', (
        select (content).id from files
        where name = 'valid'
      ), 'license_id', tests.fx_id('valid'
      ),
      'kid', tests.id('key 2'), 'code', 'VALID'
    )
  ),
  1,
  'issuing a file is an event'
);

insert into files
select
  'machine' as name,
  f as content,
  f.payload::jsonb as payload
from api.issue_license_file(key => tests.fx_key('valid'), fingerprint => ' fp-1 ', ttl_seconds => 3600) as f;
select is(
  (
    select payload -> 'machine' from files
    where name = 'machine'
  ),
  jsonb_build_object('id', tests.id('machine'), 'fingerprint', 'fp-1', 'name', null, 'platform', null),
  'a fingerprint scopes the file to its machine (found by key, trimmed as validation trims it)'
);
select is(
  (
    select (payload ->> 'expires_at')::timestamptz - (payload ->> 'issued_at')::timestamptz from files
    where name = 'machine'
  ),
  interval '1 hour',
  'ttl_seconds sets how long the file verifies'
);
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'), fingerprint => 'fp-elsewhere')$$,
  'LNTFD', null, 'a machine of another license does not scope a file'
);
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'), fingerprint => 'never-seen')$$,
  'LNTFD', null, 'nor does a fingerprint never activated'
);
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'), ttl_seconds => 3599)$$,
  'LINVL', null, 'a file verifies for at least an hour'
);
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'), ttl_seconds => 31622401)$$,
  'LINVL', null, 'and at most 366 days'
);
select throws_ok(
  $$select api.issue_license_file()$$, 'LINVL', null, 'a file needs its license'
);
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'), key => tests.fx_key('valid'))$$,
  'LINVL', null, 'named once: license_id or key'
);
select throws_ok(
  $$select api.issue_license_file(key => 'AAAAA-BBBBB')$$, 'LNTFD', null, 'an unknown key is not found'
);

insert into files
select
  l.name,
  f,
  f.payload::jsonb
from unnest(array['expiring', 'grace', 'suspended']) as l (name)
cross join lateral api.issue_license_file(license_id => tests.fx_id(l.name)) as f;
select is(
  (
    select payload -> 'transitions' from files
    where name = 'expiring'
  ),
  (
    select
      jsonb_build_array(jsonb_build_object(
        'at', payload -> 'license' -> 'expires_at', 'valid', false,
        'code', 'EXPIRED'
      ))
    from files
    where name = 'expiring'
  ),
  'a license expiring while the file verifies: the answer turns EXPIRED at its expiry'
);
select is(
  (
    select payload -> 'validation' ->> 'code' from files
    where name = 'grace'
  ), 'PAYMENT_GRACE',
  'a license in its payment grace period is valid (PAYMENT_GRACE)'
);
select is(
  (
    select jsonb_agg(t.change -> 'code') from files as f, jsonb_array_elements(f.payload -> 'transitions') as t (change)
    where f.name = 'grace'
  ),
  '["OVERDUE", "EXPIRED"]'::jsonb,
  'and turns OVERDUE when the grace ends, then EXPIRED'
);
select is(
  (
    select payload -> 'validation' from files
    where name = 'suspended'
  ),
  '{"valid": false, "code": "SUSPENDED", "detail": "the license is suspended"}'::jsonb,
  'a file for an unusable license carries the validation code (so a refresh brings bad news too)'
);
select is(
  (
    select payload -> 'transitions' from files
    where name = 'suspended'
  ), '[]'::jsonb,
  'an answer that is not valid has no transitions'
);
select tests.clear_context();

-- ---------------------------------------------------------------------------
-- Publishable keys

select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.clear_context();
select from tests.act_as(tests.key_secret('A pk'));
select is(
  (api.issue_license_file(key => tests.fx_key('valid'), fingerprint => 'fp-1')).kid, tests.id('key 2'),
  'a publishable key issues a file by license key for an activated machine'
);
select throws_ok(
  $$select api.issue_license_file(key => tests.fx_key('valid'))$$,
  'LDNID', null, 'but never one for any machine'
);
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'), fingerprint => 'fp-1')$$,
  'LDNID', null, 'nor by license id'
);
select is(
  (select count(*)::integer from api.list_signing_keys()), 2, 'a publishable key lists the public keys'
);
select throws_ok(
  $$select api.rotate_signing_key(public_key => decode(repeat('55', 32), 'hex'), private_key_ciphertext => '\x05')$$,
  'LDNID', null, 'a publishable key may not rotate'
);
select tests.clear_context();

-- ---------------------------------------------------------------------------
-- Tenant isolation and row level security

select from tests.act_as(tests.secret_key('B'));
select is_empty('select * from api.list_signing_keys()', 'B sees none of A''s signing keys');
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('valid'))$$,
  'LNTFD', null, 'A''s license is not found by B, by id'
);
select throws_ok(
  $$select api.issue_license_file(license_id => tests.fx_id('b'))$$,
  'LSTAT', null, 'A''s signing key does not sign for B, which has none yet'
);
select from api.ensure_signing_key(public_key => decode(repeat('66', 32), 'hex'), private_key_ciphertext => '\x06');
select throws_ok(
  $$select api.issue_license_file(key => tests.fx_key('valid'))$$,
  'LNTFD', null, 'nor by key'
);
select isnt(
  (api.issue_license_file(license_id => tests.fx_id('b'))).kid, tests.id('key 2'),
  'B''s files are signed with B''s key'
);
select throws_ok(
  'select * from lic.signing_keys', '42501', null, 'lic_app reads no signing key table'
);
select tests.clear_context();

select from tests.act_as_definer(tests.account_id('B'));
select is(
  tests.count_rows('lic.signing_keys', tests.account_id('B'), false)::integer, 0,
  'RLS: with B''s context, lic_definer sees no other account''s signing keys'
);
select is(
  tests.count_rows('lic.signing_keys', tests.account_id('B'))::integer, 1, 'and sees B''s own'
);
select throws_ok(
  $$
    insert into lic.signing_keys (account_id, public_key, private_key_ciphertext)
    values (tests.account_id('A'), decode(repeat('77', 32), 'hex'), '\x07')
  $$,
  '42501', null, 'RLS: nor writes a key into another account'
);
select tests.clear_context();

select * from finish();
rollback;
