-- Roles are cluster-wide: create each one only if it is missing, so a second
-- database on the same server (tests, staging) migrates cleanly.
do $$
declare
  v_role record;
begin
  for v_role in
    select r.name, r.login
    from (values
      ('lic_owner', false), ('lic_definer', false), ('lic_maint', false),
      ('lic_app', true), ('lic_worker', true), ('lic_reporting', true)
    ) as r (name, login)
  loop
    if not exists (select from pg_catalog.pg_roles where rolname = v_role.name) then
      execute format('create role %I %s nobypassrls', v_role.name,
        case when v_role.login then 'login' else 'nologin' end);
    end if;
  end loop;
end;
$$;

-- lic: storage (tables, types); api: the public contract; worker: background
-- jobs; private: helpers no login role may call directly.
create schema lic authorization lic_owner;
create schema api authorization lic_owner;
create schema worker authorization lic_owner;
create schema private authorization lic_owner;

revoke all on schema lic, api, worker, private from public;
grant usage on schema lic, private to lic_definer, lic_maint;
grant usage on schema api to lic_definer, lic_app;
grant usage on schema worker to lic_maint, lic_worker;

-- Functions are executable by PUBLIC unless revoked; nothing here should be.
alter default privileges revoke execute on functions from public;
alter default privileges for role lic_owner revoke execute on functions from public;
alter default privileges for role lic_definer revoke execute on functions from public;
alter default privileges for role lic_maint revoke execute on functions from public;

-- UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits, so ids sort by
-- creation time and double as keyset cursors. Written in SQL because PG 15 has
-- no uuidv7(). Lives here, not in functions/, because column defaults use it.
create function private.uuid_v7(at timestamptz default clock_timestamp())
returns uuid
language sql
volatile
parallel safe
as $$
  select encode(
    set_bit(
      set_bit(
        overlay(
          uuid_send(gen_random_uuid())
          placing substring(int8send((extract(epoch from at) * 1000)::bigint) from 3)
          from 1 for 6
        ),
        52, 1
      ),
      53, 1
    ),
    'hex'
  )::uuid;
$$;
comment on function private.uuid_v7(timestamptz) is
'A version 7 UUID for the given instant (default: now).';
