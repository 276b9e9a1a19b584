-- Fixtures for the licensing tests (200-240), included with \ir after begin;
-- so they vanish with each file's rollback. Not a test file itself (the run
-- script runs [0-9]*.sql only). Rows are written as the superuser, straight
-- into lic, so these tests do not depend on the policy, machine or seat APIs:
--   tests.fx_policy(account, code, ...)           a license policy, its id;
--   tests.fx_entitlement(account, code, policies) an entitlement on policies;
--   tests.fx_license(account, name, policy, status, expires_at, grace_ends_at)
--                                                 a license remembered by name;
--   tests.fx_id(name), tests.fx_key(name)          look it up;
--   tests.fx_machine(name, fingerprint, heard)     a machine on a license;
--   tests.fx_customer(account, external_id)       a customer, its id;
--   tests.fx_seat(name, customer_id, role)         a seat on a license;
--   tests.explain_lines(query)                    the lines of its plan.
-- They are security definer (owned by the superuser), so a test can call them
-- while it acts as lic_app.

create table tests.fx_licenses (
  name text primary key,
  id uuid not null,
  key text not null
);

create function tests.fx_policy(
  account text,
  code text,
  duration interval default interval '30 days',
  max_machines integer default null,
  max_users integer default null,
  require_fingerprint boolean default false,
  heartbeat_interval interval default null,
  archived boolean default false
)
returns uuid
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into lic.license_policies (
    account_id, code, name, duration, max_machines, max_users, require_fingerprint, heartbeat_interval, archived_at
  )
  values (
    tests.account_id(account), code, code, duration, max_machines, max_users, require_fingerprint,
    heartbeat_interval, case when archived then now() end
  )
  returning id;
$$;

create function tests.fx_entitlement(account text, code text, policies text[] default '{}')
returns uuid
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  with e as (
    insert into lic.entitlements (account_id, code, name)
    values (tests.account_id(account), code, upper(code))
    returning account_id, id
  ),

  pe as (
    insert into lic.policy_entitlements (account_id, policy_id, entitlement_id)
    select e.account_id, p.id, e.id
    from e inner join lic.license_policies as p on e.account_id = p.account_id
    where p.code = any(policies)
  )

  select e.id from e;
$$;

create function tests.fx_license(
  account text,
  name text,
  policy text,
  status text default 'active',
  expires_at timestamptz default now() + interval '30 days',
  grace_ends_at timestamptz default null,
  customer_id uuid default null
)
returns uuid
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  with l as (
    insert into lic.licenses (
      account_id, key, policy_id, status, expires_at, grace_ends_at, customer_id, canceled_at, suspended_at
    )
    select
      a.account_id, private.new_license_key(), p.id, fx_license.status, fx_license.expires_at,
      fx_license.grace_ends_at, fx_license.customer_id,
      case when fx_license.status = 'canceled' then now() end,
      case when fx_license.status = 'suspended' then now() end
    from (select tests.account_id(account) as account_id) as a
    inner join lic.license_policies as p on a.account_id = p.account_id and p.code = policy
    returning id, key
  )

  insert into tests.fx_licenses (name, id, key)
  select fx_license.name, l.id, l.key from l
  returning id;
$$;

create function tests.fx_id(name text)
returns uuid
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select f.id from tests.fx_licenses as f where f.name = fx_id.name;
$$;

create function tests.fx_key(name text)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select f.key from tests.fx_licenses as f where f.name = fx_key.name;
$$;

create function tests.fx_machine(license text, fingerprint text, heard timestamptz default now())
returns uuid
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into lic.machines (account_id, license_id, fingerprint, last_heartbeat_at)
  select l.account_id, l.id, fingerprint, heard
  from lic.licenses as l where l.id = tests.fx_id(license)
  returning id;
$$;

create function tests.fx_customer(account text, external_id text)
returns uuid
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into lic.customers (account_id, external_id) values (tests.account_id(account), external_id)
  returning id;
$$;

create function tests.fx_seat(license text, customer_id uuid, role text default 'member')
returns void
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into lic.license_users (account_id, license_id, customer_id, role)
  select l.account_id, l.id, fx_seat.customer_id, fx_seat.role
  from lic.licenses as l where l.id = tests.fx_id(license);
$$;

create function tests.explain_lines(query text)
returns setof text
language plpgsql
volatile
as $$
declare
  v_line text;
begin
  for v_line in execute 'explain (costs off) ' || query loop
    return next v_line;
  end loop;
end;
$$;

grant select on tests.fx_licenses to lic_app, lic_web, lic_worker;
grant execute on all functions in schema tests to lic_app, lic_web, lic_worker;
