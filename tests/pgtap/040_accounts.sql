-- Accounts: creation, tenant plan limits and overrides, the read-only plan
-- table, and the UUIDv7 ids every table uses.
begin;
select plan(26);

select throws_ok(
  $$select private.create_account(name => 'Nope', plan => 'platinum')$$,
  'LINVL', null,
  'creating an account on an unknown plan raises LINVL'
);
select throws_ok(
  $$select private.create_account(name => '', plan => 'free')$$,
  '23514', null,
  'creating an account without a name is refused by a check constraint'
);

select from tests.create_account(name => 'free', plan => 'free');
select from tests.create_account(name => 'starter', plan => 'starter');
select from tests.create_account(name => 'growth', plan => 'growth');
select from tests.create_account(name => 'enterprise', plan => 'enterprise');

select from private.create_account(name => 'Default');
select is(
  (
    select plan from lic.accounts
    where name = 'Default'
  ),
  'free',
  'an account is on the free plan unless told otherwise'
);
select tests.clear_context();

select from tests.act_as(tests.secret_key('free'));
select is(
  (tests.act_as(tests.secret_key('free'))).kind, 'secret',
  'a new account''s first key is a secret key that authenticates'
);
select is((api.get_account()).id, tests.account_id('free'), 'api.get_account returns its id');
select is((api.get_account()).plan, 'free', 'api.get_account returns its plan');
select is(
  (api.get_account()).limits,
  (
    '{"active_licenses": 100, "agents": 5, "webhook_endpoints": 16, '
    || '"custom_branding": false, "embeddable_analytics": false}'
  )::jsonb,
  'the free plan allows 100 active licenses, 5 agents and 16 webhook endpoints, no branding, no analytics'
);
select from tests.act_as(tests.secret_key('starter'));
select is(
  (api.get_account()).limits,
  (
    '{"active_licenses": 1000, "agents": 50, "webhook_endpoints": 64, '
    || '"custom_branding": true, "embeddable_analytics": false}'
  )::jsonb,
  'the starter plan allows 1000 active licenses, 50 agents and 64 webhook endpoints, with custom branding'
);
select from tests.act_as(tests.secret_key('growth'));
select is(
  (api.get_account()).limits,
  (
    '{"active_licenses": 10000, "agents": 500, "webhook_endpoints": 256, '
    || '"custom_branding": true, "embeddable_analytics": true}'
  )::jsonb,
  'the growth plan allows 10000 active licenses, 500 agents and 256 webhook endpoints, with branding and '
  'embeddable analytics'
);
select from tests.act_as(tests.secret_key('enterprise'));
select is(
  (api.get_account()).limits,
  (
    '{"active_licenses": null, "agents": null, "webhook_endpoints": null, '
    || '"custom_branding": true, "embeddable_analytics": true}'
  )::jsonb,
  'the enterprise plan is unlimited (null) with every feature'
);

-- Per-account overrides (contracts) win over the plan.
select tests.clear_context();
update lic.accounts set max_active_licenses = 250
where account_id = tests.account_id('free');
update lic.accounts set max_active_licenses = 50000, max_agents = 20, max_webhook_endpoints = 1000
where account_id = tests.account_id('enterprise');
select from tests.act_as(tests.secret_key('free'));
select is(
  (api.get_account()).limits -> 'active_licenses', '250'::jsonb,
  'an account''s max_active_licenses overrides its plan''s'
);
select is(
  (api.get_account()).limits -> 'agents', '5'::jsonb,
  'a limit without an override still comes from the plan'
);
select from tests.act_as(tests.secret_key('enterprise'));
select is(
  (api.get_account()).limits,
  (
    '{"active_licenses": 50000, "agents": 20, "webhook_endpoints": 1000, '
    || '"custom_branding": true, "embeddable_analytics": true}'
  )::jsonb,
  'overrides also cap an unlimited plan'
);
select tests.clear_context();

-- Tenant plans are reference data: readable, never writable by the roles.
select tests.act_as_definer(tests.account_id('free'));
select is((select count(*)::integer from lic.tenant_plans), 4, 'lic_definer reads the four tenant plans');
select throws_ok(
  $$insert into lic.tenant_plans (code, name, custom_branding, embeddable_analytics) values ('x', 'X', true, true)$$,
  '42501', null,
  'lic_definer cannot add a tenant plan'
);
select throws_ok(
  $$update lic.tenant_plans set max_active_licenses = null where code = 'free'$$,
  '42501', null,
  'lic_definer cannot change a tenant plan'
);
select throws_ok(
  $$delete from lic.tenant_plans where code = 'free'$$,
  '42501', null,
  'lic_definer cannot delete a tenant plan'
);
select tests.clear_context();
set local role lic_maint;
select throws_ok(
  $$update lic.tenant_plans set max_active_licenses = null where code = 'free'$$,
  '42501', null,
  'lic_maint cannot change a tenant plan'
);
select tests.clear_context();

-- UUIDv7: 48 bits of Unix milliseconds, version 7, RFC variant.
select is(
  substr(private.uuid_v7('2024-01-01 00:00:00+00')::text, 15, 1), '7',
  'private.uuid_v7 makes version 7 UUIDs'
);
select matches(
  substr(private.uuid_v7('2024-01-01 00:00:00+00')::text, 20, 1), '^[89ab]$',
  'private.uuid_v7 sets the RFC 9562 variant'
);
select is(
  replace(left(private.uuid_v7('2024-01-01 00:00:00+00')::text, 13), '-', ''), lpad(to_hex(1704067200000), 12, '0'),
  'the first 48 bits are the instant in Unix milliseconds'
);
select cmp_ok(
  private.uuid_v7('2024-01-01 00:00:00.001+00'), '<', private.uuid_v7('2024-01-01 00:00:00.002+00'),
  'an id made one millisecond later sorts after'
);
select is_empty(
  $$
    select t from generate_series(
      '2024-01-01 00:00:00+00'::timestamptz, '2024-01-01 00:00:01+00'::timestamptz, interval '1 millisecond'
    ) as t
    where not private.uuid_v7(t) < private.uuid_v7(t + interval '1 millisecond')
  $$,
  'for every millisecond of a second the next millisecond''s id sorts after'
);
select is_empty(
  $$select account_id from tests.accounts where substr(account_id::text, 15, 1) <> '7'$$,
  'account ids are UUIDv7'
);

select is(
  (
    select count(*)::integer
    from generate_series(1, 999) as us,
      lateral (select timestamptz '2024-01-01 00:00:00.001+00' + us * interval '1 microsecond' as t) as i
    where not private.uuid_v7(i.t - interval '1 microsecond') < private.uuid_v7(i.t)
  ),
  0,
  'private.uuid_v7 orders ids made within one millisecond by their microsecond'
);
select is(
  left(private.uuid_v7('2024-01-01 00:00:00.0009+00')::text, 13),
  left(private.uuid_v7('2024-01-01 00:00:00+00')::text, 13),
  'private.uuid_v7 truncates to the millisecond instead of rounding up'
);

select * from finish();
rollback;
