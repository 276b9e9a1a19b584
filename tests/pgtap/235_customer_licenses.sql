-- lic.customers.licenses: each customer's licenses (own and seats) as
-- api.check_entitlement by customer reads them, refreshed by triggers in the
-- same transaction as every change that feeds it, whoever makes it (an api
-- function as lic_definer, the expiry sweep as lic_maint).
begin;
select plan(14);
\ir licensing_fixtures.sql

-- Customers whose stored licenses differ from what private.customer_licenses
-- derives now: none, after every kind of change below.
create function tests.stale_customers()
returns bigint
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select count(*) from lic.customers as c
  where c.licenses is distinct from private.customer_licenses(c.account_id, c.id);
$$;
grant execute on function tests.stale_customers() to lic_app, lic_worker;

create function tests.stored(customer_id uuid)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select string_agg(f.name || ':' || l.status || ':' || array_to_string(l.entitlement_codes, ','), ' ' order by l.license_id)
  from lic.customers as c
  cross join lateral unnest(c.licenses) as l
  inner join tests.fx_licenses as f on f.id = l.license_id
  where c.id = stored.customer_id;
$$;

select from tests.create_account('A');
select from tests.fx_policy('A', 'pro');
select tests.fx_policy('A', 'basic') as basic \gset
select from tests.fx_entitlement('A', 'sso', array['pro']);
select from tests.fx_entitlement('A', 'api', array['basic']);
select tests.fx_customer('A', 'user-1') as u1 \gset
select tests.fx_customer('A', 'user-2') as u2 \gset

select from tests.fx_license('A', 'p', 'pro', customer_id => :'u1');
select from tests.fx_license('A', 'b', 'basic', expires_at => now() + interval '1 hour');
select is(tests.stored(:'u1'), 'p:active:sso', 'a new license is its customer''s');
select from tests.fx_seat('b', :'u1');
select from tests.fx_seat('b', :'u2');
select is(tests.stored(:'u1'), 'p:active:sso b:active:api', 'a seat adds the license, oldest first');

select from tests.act_as(tests.secret_key('A'));
select from api.suspend_license(tests.fx_id('p'));
select tests.clear_context();
select is(tests.stored(:'u1'), 'p:suspended:sso b:active:api', 'a status change through the api reaches the customer');

select from tests.act_as(tests.secret_key('A'));
select from api.attach_entitlement(:'basic', 'sso');
select tests.clear_context();
select is(tests.stored(:'u2'), 'b:active:api,sso', 'a policy''s new entitlement reaches every seat holder');

select from tests.act_as(tests.secret_key('A'));
select from api.set_license_entitlement(tests.fx_id('b'), 'api', 'revoke');
select tests.clear_context();
select is(tests.stored(:'u2'), 'b:active:sso', 'a license''s own override reaches its customers');

select from tests.act_as(tests.secret_key('A'));
select is(
  api.check_entitlement('sso', customer_external_id => 'user-1'),
  row(true, 'ENTITLED', tests.fx_id('b'))::api.entitlement_check,
  'the check by customer reads the refreshed row: the seat allows what the suspended license does not'
);
select from api.remove_license_user(tests.fx_id('b'), :'u2');
select tests.clear_context();
select is(tests.stored(:'u2'), null, 'a removed seat leaves the customer''s licenses');

-- The expiry sweep runs as lic_maint, which refreshes customers through its
-- own policies.
update lic.licenses set expires_at = now() - interval '1 second'
where id = tests.fx_id('b');
select is(tests.stored(:'u1'), 'p:suspended:sso b:active:sso', 'a lapsed license stays active until the sweep');
set local role lic_worker;
select is(worker.expire_licenses(), 1, 'the sweep expires the lapsed license');
select tests.clear_context();
select is(tests.stored(:'u1'), 'p:suspended:sso b:expired:sso', 'the sweep''s status change reaches the customer');

-- A license moved to another customer leaves the first.
update lic.licenses set customer_id = :'u2'
where id = tests.fx_id('p');
select is(tests.stored(:'u2'), 'p:suspended:sso', 'the new customer gains the moved license');
select is(tests.stored(:'u1'), 'b:expired:sso', 'the old customer keeps only its seat');

delete from lic.license_entitlements
where license_id = tests.fx_id('b');
delete from lic.license_users
where license_id = tests.fx_id('b');
delete from lic.licenses
where id = tests.fx_id('b');
select is(tests.stored(:'u1'), null, 'a deleted license leaves its customers');

select is(tests.stale_customers(), 0::bigint, 'no customer''s stored licenses differ from what they derive');

select * from finish();
rollback;
