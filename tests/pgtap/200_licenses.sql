-- Licenses after creation: list (filters, pages), get (by id or key), update,
-- and the state machine — every action from every status — with its events.
begin;
select plan(84);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'monthly');
select from tests.fx_policy('A', 'yearly', interval '365 days');
select from tests.fx_policy('A', 'forever', null);
select from tests.fx_policy('A', 'old', archived => true);
select from tests.fx_policy('B', 'monthly');
select tests.fx_customer('A', 'cust-1') as customer_1 \gset

select from tests.fx_license('A', 'active', 'monthly');
select from tests.fx_license('A', 'past_due', 'monthly', 'past_due', grace_ends_at => now() + interval '3 days');
select from tests.fx_license('A', 'overdue', 'monthly', 'past_due', grace_ends_at => now() - interval '1 day');
select from tests.fx_license('A', 'suspended', 'yearly', 'suspended');
select from tests.fx_license('A', 'expired', 'yearly', 'expired', now() - interval '1 day');
select from tests.fx_license('A', 'lapsed', 'monthly', 'active', now() - interval '1 hour');
select from tests.fx_license('A', 'canceled', 'monthly', 'canceled');
select from tests.fx_license('A', 'perpetual', 'forever', expires_at => null);
select
from tests.fx_license('A', 'owned', 'yearly', expires_at => now() + interval '365 days', customer_id => :'customer_1');
select from tests.fx_license('B', 'b', 'monthly');

select tests.act_as(tests.secret_key('A'));

-- List: newest first, the account's only, filtered by index-backed predicates.
select results_eq(
  'select id from api.list_licenses(page_limit => 100)',
  $$select id from tests.fx_licenses where name <> 'b' order by id desc$$,
  'api.list_licenses lists the account''s licenses newest first, never another account''s'
);
select results_eq(
  $$select id from api.list_licenses(status => 'suspended')$$,
  array[tests.fx_id('suspended')],
  'status filters by the stored status'
);
select results_eq(
  $$select id from api.list_licenses(status => 'active')$$,
  array[tests.fx_id('owned'), tests.fx_id('perpetual'), tests.fx_id('lapsed'), tests.fx_id('active')],
  'status active includes a license whose expiry passed before the sweep (its effective_status says expired)'
);
select is(
  (
    select effective_status from api.list_licenses(status => 'active')
    where id = tests.fx_id('lapsed')
  ),
  'expired',
  'each listed license carries its effective status'
);
select results_eq(
  $$
    select id from api.list_licenses(
      license_policy_id => (select policy_id from api.get_license(tests.fx_id('suspended')))
    )
  $$,
  array[tests.fx_id('owned'), tests.fx_id('expired'), tests.fx_id('suspended')],
  'license_policy_id filters by policy'
);
select results_eq(
  format('select id from api.list_licenses(customer_id => %L)', :'customer_1'),
  array[tests.fx_id('owned')],
  'customer_id filters by customer'
);
select results_eq(
  $$select id from api.list_licenses(expiring_before => now() + interval '2 days')$$,
  array[tests.fx_id('lapsed')],
  'expiring_before lists active or past_due licenses expiring before then, already passed ones included'
);
select results_eq(
  $$select id from api.list_licenses(expiring_before => now() + interval '31 days')$$,
  array[tests.fx_id('lapsed'), tests.fx_id('overdue'), tests.fx_id('past_due'), tests.fx_id('active')],
  'expiring_before leaves out suspended, expired, canceled and perpetual licenses'
);
select results_eq(
  $$
    select id from api.list_licenses(
      status => 'active', license_policy_id => (select policy_id from api.get_license(tests.fx_id('active')))
    )
  $$,
  array[tests.fx_id('lapsed'), tests.fx_id('active')],
  'filters combine'
);
select is_empty(
  $$select id from api.list_licenses(customer_id => gen_random_uuid())$$,
  'an unknown customer lists nothing'
);
select throws_ok(
  $$select * from api.list_licenses(status => 'overdue')$$, 'LINVL', null,
  'a status that is not stored is refused with LINVL'
);
select throws_ok('select * from api.list_licenses(page_limit => 0)', 'LINVL', null, 'page_limit 0 is refused');
select results_eq(
  format('select id from api.list_licenses(page_limit => 2, starting_after => %L)', tests.fx_id('owned')),
  array[tests.fx_id('perpetual'), tests.fx_id('canceled'), tests.fx_id('lapsed')],
  'starting_after pages forwards, one row past the page'
);
select results_eq(
  format('select id from api.list_licenses(page_limit => 2, ending_before => %L)', tests.fx_id('canceled')),
  array[tests.fx_id('owned'), tests.fx_id('perpetual')],
  'ending_before pages backwards, newest first'
);

-- Get: by id, or by key however it was typed.
select is(
  (api.get_license(license_id => tests.fx_id('active'))).key, tests.fx_key('active'), 'api.get_license by id'
);
select is(
  (api.get_license(key => lower(replace(tests.fx_key('active'), '-', ' ')))).id, tests.fx_id('active'),
  'api.get_license by key, in lower case with spaces for dashes'
);
select is(
  (api.get_license(license_id => tests.fx_id('overdue'))).effective_status, 'overdue',
  'a past_due license after its grace period reads as overdue'
);
select throws_ok('select api.get_license()', 'LINVL', null, 'api.get_license needs an id or a key');
select throws_ok(
  format('select api.get_license(license_id => %L, key => %L)', tests.fx_id('active'), tests.fx_key('active')),
  'LINVL', null, 'api.get_license refuses both an id and a key'
);
select throws_ok(
  format('select api.get_license(license_id => %L)', tests.fx_id('b')), 'LNTFD', null,
  'another account''s license is not found by id'
);
select throws_ok(
  format('select api.get_license(key => %L)', tests.fx_key('b')), 'LNTFD', null,
  'another account''s license is not found by key'
);
select throws_ok(
  $$select api.get_license(key => 'not-a-key')$$, 'LNTFD', null, 'a malformed key is not found'
);

-- Update: metadata merges, expiry moves or goes.
select is(
  (api.update_license(tests.fx_id('active'), metadata => '{"seat": "x", "plan": "a"}')).metadata,
  '{"seat": "x", "plan": "a"}'::jsonb,
  'update_license sets metadata keys'
);
select is(
  (api.update_license(tests.fx_id('active'), metadata => '{"plan": null, "tier": 2}')).metadata,
  '{"seat": "x", "tier": 2}'::jsonb,
  'update_license merges metadata and removes keys given as null'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes from lic.events as e
    where e.type = 'license.updated' and e.object ->> 'id' = tests.fx_id('active')::text
    order by e.id desc limit 1
  ),
  '{"metadata": {"seat": "x", "plan": "a"}}'::jsonb,
  'license.updated carries the old metadata in previous_attributes'
);
select tests.act_as(tests.secret_key('A'));
select is(
  (api.update_license(tests.fx_id('active'), expires_at => '2100-01-01Z')).expires_at,
  '2100-01-01Z'::timestamptz,
  'update_license moves the expiry'
);
select is(
  (api.update_license(tests.fx_id('active'), clear_expiry => true)).expires_at, null,
  'clear_expiry makes the license perpetual'
);
select is(
  (api.update_license(tests.fx_id('active'))).metadata, '{"seat": "x", "tier": 2}'::jsonb,
  'an update that gives nothing changes nothing'
);
select throws_ok(
  format('select api.update_license(%L, expires_at => now() - interval %L)', tests.fx_id('active'), '1 day'),
  'LINVL', null, 'an expiry in the past is refused'
);
select throws_ok(
  format('select api.update_license(%L, expires_at => %L, clear_expiry => true)', tests.fx_id('active'), '2100-01-01Z'),
  'LINVL', null, 'expires_at and clear_expiry together are refused'
);
select throws_ok(
  format('select api.update_license(%L, metadata => %L)', tests.fx_id('active'), '[1]'),
  'LINVL', null, 'metadata must be an object'
);
select throws_ok(
  format('select api.update_license(%L, expires_at => %L)', tests.fx_id('canceled'), '2100-01-01Z'),
  'LSTAT', null, 'a canceled license cannot change its expiry'
);
select is(
  (api.update_license(tests.fx_id('canceled'), metadata => '{"note": "refund"}')).metadata,
  '{"note": "refund"}'::jsonb,
  'a canceled license can still take metadata'
);
select throws_ok(
  format('select api.update_license(%L, metadata => %L)', tests.fx_id('b'), '{}'),
  'LNTFD', null, 'another account''s license cannot be updated'
);

-- The state machine: each action from each status (effective: lapsed is an
-- active license whose expiry passed, overdue a past_due one after grace).
create temporary table transitions (action text, from_name text, expected text);
grant select on transitions to lic_app;
insert into transitions values
('suspend', 'active', 'suspended'), ('suspend', 'past_due', 'suspended'), ('suspend', 'overdue', 'suspended'),
('suspend', 'suspended', 'LSTAT'), ('suspend', 'expired', 'LSTAT'), ('suspend', 'lapsed', 'LSTAT'),
('suspend', 'canceled', 'LSTAT'),
('reinstate', 'active', 'LSTAT'), ('reinstate', 'past_due', 'LSTAT'), ('reinstate', 'overdue', 'LSTAT'),
('reinstate', 'suspended', 'active'), ('reinstate', 'expired', 'LSTAT'), ('reinstate', 'lapsed', 'LSTAT'),
('reinstate', 'canceled', 'LSTAT'),
('renew', 'active', 'active'), ('renew', 'past_due', 'past_due'), ('renew', 'overdue', 'past_due'),
('renew', 'suspended', 'suspended'), ('renew', 'expired', 'active'), ('renew', 'lapsed', 'active'),
('renew', 'canceled', 'LSTAT'),
('change_policy', 'active', 'active'), ('change_policy', 'past_due', 'past_due'),
('change_policy', 'overdue', 'past_due'), ('change_policy', 'suspended', 'suspended'),
('change_policy', 'expired', 'expired'), ('change_policy', 'lapsed', 'active'),
('change_policy', 'canceled', 'LSTAT'),
('cancel', 'active', 'canceled'), ('cancel', 'past_due', 'canceled'), ('cancel', 'overdue', 'canceled'),
('cancel', 'suspended', 'canceled'), ('cancel', 'expired', 'canceled'), ('cancel', 'lapsed', 'canceled'),
('cancel', 'canceled', 'LSTAT');
select tests.clear_context();

create function pg_temp.try_transition(action text, from_name text)
returns text
language plpgsql
as $$
declare
  v_license api.license;
  v_id uuid;
begin
  -- A fresh copy of the named fixture, so each transition starts from it.
  perform tests.clear_context();
  insert into lic.licenses (account_id, key, policy_id, status, expires_at, grace_ends_at, canceled_at)
  select l.account_id, private.new_license_key(), l.policy_id, l.status, l.expires_at, l.grace_ends_at, l.canceled_at
  from lic.licenses as l where l.id = tests.fx_id(from_name)
  returning id into v_id;
  perform tests.act_as(tests.secret_key('A'));
  v_license := case action
    when 'suspend' then api.suspend_license(v_id, 'why')
    when 'reinstate' then api.reinstate_license(v_id)
    when 'renew' then api.renew_license(v_id)
    when 'change_policy' then api.change_license_policy(v_id, license_policy_code => 'yearly')
    when 'cancel' then api.cancel_license(v_id, 'why')
  end;
  perform tests.clear_context();
  return v_license.status;
exception when sqlstate 'LSTAT' then
  perform tests.clear_context();
  return 'LSTAT';
end;
$$;

select is_empty(
  $$
    select r.* from (
      select t.action, t.from_name, t.expected, pg_temp.try_transition(t.action, t.from_name) as got
      from transitions as t
    ) as r
    where r.got is distinct from r.expected
  $$,
  'every action from every status ends in the expected status or raises LSTAT (35 cases)'
);

select tests.act_as(tests.secret_key('A'));

-- Suspend, reinstate, renew, cancel in detail.
select is(
  (api.suspend_license(tests.fx_id('active'), 'chargeback')).suspended_reason, 'chargeback',
  'suspend_license keeps the reason'
);
select throws_ok(
  format('select api.suspend_license(%L)', tests.fx_id('active')), 'LSTAT', null,
  'suspending a suspended license is an illegal transition'
);
select ok(
  (select r.suspended_reason is null and r.status = 'active' from api.reinstate_license(tests.fx_id('active')) as r),
  'reinstate_license makes it active and clears the reason'
);
select throws_ok(
  format('select api.suspend_license(%L, %L)', tests.fx_id('active'), repeat('x', 501)), '23514', null,
  'a reason over 500 characters is refused'
);
select is(
  (api.renew_license(tests.fx_id('past_due'))).expires_at, now() + interval '60 days',
  'renewing before expiry extends from the current expiry (30 + 30 days)'
);
select tests.act_as(tests.secret_key('A'));
select ok(
  (
    select r.expires_at between now() + interval '364 days' and now() + interval '366 days' and r.status = 'active'
    from api.renew_license(tests.fx_id('expired')) as r
  ),
  'renewing an expired license extends from now and makes it active'
);
select throws_ok(
  format('select api.renew_license(%L)', tests.fx_id('perpetual')), 'LSTAT', null,
  'a license on a perpetual policy cannot be renewed'
);
select throws_ok(
  format('select api.renew_license(%L)', tests.fx_id('b')), 'LNTFD', null,
  'another account''s license cannot be renewed'
);

-- Change policy.
select is(
  (api.change_license_policy(tests.fx_id('perpetual'), license_policy_code => 'yearly')).policy_code, 'yearly',
  'change_license_policy by code'
);
select is(
  (api.get_license(tests.fx_id('perpetual'))).expires_at, null,
  'without reset_expiry the expiry stays'
);
select ok(
  (
    select r.expires_at between now() + interval '29 days' and now() + interval '31 days' and r.policy_code = 'monthly'
    from api.change_license_policy(
      tests.fx_id('perpetual'),
      license_policy_id => (select policy_id from api.get_license(tests.fx_id('active'))),
      reset_expiry => true
    ) as r
  ),
  'change_license_policy by id with reset_expiry restarts the expiry with the new duration'
);
select is(
  (
    api.change_license_policy(tests.fx_id('perpetual'), license_policy_code => 'forever', reset_expiry => true)
  ).expires_at,
  null,
  'reset_expiry on a perpetual policy removes the expiry'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes ->> 'policy_code' from lic.events as e
    where e.type = 'license.policy_changed' and e.object ->> 'id' = tests.fx_id('perpetual')::text
    order by e.id desc limit 1
  ),
  'monthly',
  'license.policy_changed names the previous policy'
);
select tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.change_license_policy(%L, license_policy_code => %L)', tests.fx_id('owned'), 'old'),
  'LSTAT', null, 'an archived policy takes no license'
);
select throws_ok(
  format('select api.change_license_policy(%L, license_policy_code => %L)', tests.fx_id('owned'), 'nope'),
  'LNTFD', null, 'an unknown policy is not found'
);
select throws_ok(
  format('select api.change_license_policy(%L)', tests.fx_id('owned')),
  'LINVL', null, 'a policy id or code is required'
);
select tests.clear_context();
select tests.fx_policy('B', 'b-only') as b_policy
\gset
select tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.change_license_policy(%L, license_policy_id => %L)', tests.fx_id('owned'), :'b_policy'),
  'LNTFD', null, 'another account''s policy is not found'
);
select is(
  (api.change_license_policy(tests.fx_id('owned'), license_policy_code => 'yearly')).policy_code, 'yearly',
  'moving a license to its own policy without reset_expiry answers it unchanged ...'
);
select tests.clear_context();
select is_empty(
  $$
    select e.id from lic.events as e
    where e.type = 'license.policy_changed' and e.object ->> 'id' = tests.fx_id('owned')::text
  $$,
  '... and emits nothing'
);
select tests.act_as(tests.secret_key('A'));

-- Cancel: terminal.
select is(
  (api.cancel_license(tests.fx_id('owned'), 'refunded')).suspended_reason, 'refunded',
  'cancel_license keeps its reason'
);
select isnt((api.get_license(tests.fx_id('owned'))).canceled_at, null, 'a canceled license has canceled_at');
select throws_ok(
  format('select api.cancel_license(%L)', tests.fx_id('owned')), 'LSTAT', null, 'canceling twice is refused'
);
select throws_ok(
  format('select api.reinstate_license(%L)', tests.fx_id('owned')), 'LSTAT', null,
  'a canceled license cannot be reinstated'
);
select throws_ok(
  format('select api.renew_license(%L)', tests.fx_id('owned')), 'LSTAT', null, 'a canceled license cannot be renewed'
);
select throws_ok(
  format('select api.change_license_policy(%L, license_policy_code => %L)', tests.fx_id('owned'), 'monthly'),
  'LSTAT', null, 'a canceled license cannot change policy'
);

-- Every action on another account's license is not found.
select
  throws_ok(
    format('select api.%s', f), 'LNTFD', null, 'another account''s license: ' || split_part(f, '(', 1)
  )
from unnest(array[
  format('suspend_license(%L)', tests.fx_id('b')),
  format('reinstate_license(%L)', tests.fx_id('b')),
  format('cancel_license(%L)', tests.fx_id('b')),
  format('change_license_policy(%L, license_policy_code => %L)', tests.fx_id('b'), 'monthly'),
  format('update_license(%L)', tests.fx_id('b'))
]) as f;

-- Events: each state change emits its event with the license and what changed.
select tests.clear_context();
select results_eq(
  $$
    select e.type, e.previous_attributes ->> 'status', e.object ->> 'status'
    from lic.events as e
    where e.object ->> 'id' = tests.fx_id('active')::text and e.type in ('license.suspended', 'license.reinstated')
    order by e.id
  $$,
  $$values ('license.suspended', 'active', 'suspended'), ('license.reinstated', 'suspended', 'active')$$,
  'license.suspended and license.reinstated carry the license and its previous status'
);
select is(
  (
    select e.object ->> 'status' from lic.events as e
    where e.object ->> 'id' = tests.fx_id('owned')::text and e.type = 'license.canceled'
  ),
  'canceled',
  'license.canceled carries the canceled license'
);
select ok(
  (
    select e.previous_attributes ? 'expires_at' and e.object ->> 'status' = 'active'
    from lic.events as e
    where e.object ->> 'id' = tests.fx_id('expired')::text and e.type = 'license.renewed'
  ),
  'license.renewed carries the new expiry and the previous one'
);
select is(
  (
    select count(*)::integer from lic.events as e
    where e.account_id = tests.account_id('B')
  ),
  0,
  'no event landed in another account'
);

-- Locks: a state change takes the license row for update.
select ok(
  (
    select bool_and(strpos(p.prosrc, 'private.lock_license(') > 0)
    from pg_catalog.pg_proc as p inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where n.nspname = 'api' and p.proname in (
      'update_license', 'suspend_license', 'reinstate_license', 'renew_license', 'change_license_policy',
      'cancel_license'
    )
  ),
  'every license state change locks the license row (private.lock_license)'
);

-- Plan usage: the counter follows the state machine.
select is(
  (
    select a.active_licenses from lic.accounts as a
    where a.account_id = tests.account_id('A')
  ),
  (
    select count(*)::integer from lic.licenses as l
    where l.account_id = tests.account_id('A') and l.status in ('active', 'past_due')
  ),
  'the active license count equals the active and past_due licenses after all these changes'
);
update lic.accounts set max_active_licenses = active_licenses
where account_id = tests.account_id('A');
select from tests.fx_license('A', 'held', 'monthly', 'suspended');
select tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.reinstate_license(%L)', tests.fx_id('held')), 'LPLAN', null,
  'reinstating over the tenant plan''s limit raises LPLAN'
);
select lives_ok(
  format('select api.renew_license(%L)', tests.fx_id('held')),
  'renewing a suspended license needs no plan room (it stays suspended)'
);
select lives_ok(
  format('select api.cancel_license(%L)', tests.fx_id('active')), 'canceling frees room ...'
);
select is(
  (api.reinstate_license(tests.fx_id('held'))).status, 'active', '... so the held license can be reinstated'
);

-- Publishable keys cannot manage licenses.
select tests.clear_context();
select tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.act_as(tests.key_secret('A pk'));
select
  throws_ok(
    format('select api.%s', f), 'LDNID', null, 'a publishable key may not call api.' || split_part(f, '(', 1)
  )
from unnest(array[
  'list_licenses()',
  format('get_license(%L)', tests.fx_id('held')),
  format('update_license(%L)', tests.fx_id('held')),
  format('suspend_license(%L)', tests.fx_id('held')),
  format('reinstate_license(%L)', tests.fx_id('held')),
  format('renew_license(%L)', tests.fx_id('held')),
  format('change_license_policy(%L, license_policy_code => %L)', tests.fx_id('held'), 'monthly'),
  format('cancel_license(%L)', tests.fx_id('held')),
  'create_license(policy_code => ''monthly'')'
]) as f;

select * from finish();
rollback;
