-- Runs last on every migrate: storage (tables, sequences, types) belongs to
-- lic_owner, definer functions to lic_definer (api, private) or lic_maint
-- (worker), nothing is executable by PUBLIC, and each login role can execute
-- exactly its own schema. One exception: the metering partition upkeep
-- (functions/78_metering_partitions.sql) is DDL on lic.metering_events, which
-- only its owner may do, so those two worker functions belong to lic_owner
-- (decision 29).
do $$
declare
  v_fn record;
  v_obj record;
begin
  for v_obj in
    select c.oid::regclass as name
    from pg_catalog.pg_class as c
    join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
    where n.nspname in ('lic', 'api', 'service', 'worker', 'private')
      and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
      and not exists (  -- a serial or identity sequence follows its table
        select from pg_catalog.pg_depend as d
        where c.relkind = 'S' and d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid
          and d.deptype in ('a', 'i')
      )
  loop
    execute format('alter table %s owner to lic_owner', v_obj.name);
  end loop;
  for v_obj in
    select t.oid::regtype as name
    from pg_catalog.pg_type as t
    join pg_catalog.pg_namespace as n on n.oid = t.typnamespace
    left join pg_catalog.pg_class as c on c.oid = t.typrelid
    where n.nspname in ('lic', 'api', 'worker', 'private')
      and (t.typtype in ('e', 'd', 'r') or (t.typtype = 'c' and c.relkind = 'c'))
  loop
    execute format('alter type %s owner to lic_owner', v_obj.name);
  end loop;
  for v_fn in
    select p.oid::regprocedure as signature, n.nspname as schema, p.proname as name
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where n.nspname in ('api', 'service', 'worker', 'private')
  loop
    execute format(
      'alter routine %s owner to %I', v_fn.signature,
      case
        when v_fn.schema <> 'worker' then 'lic_definer'
        when v_fn.name in ('ensure_metering_partitions', 'drop_metering_partitions') then 'lic_owner'
        else 'lic_maint'
      end
    );
    execute format('revoke all on routine %s from public', v_fn.signature);
  end loop;
end;
$$;

-- Tenants' backends (lic_app) reach api only; the web process (lic_web) also
-- the service functions that trust it with an account, slug or hash.
grant execute on all functions in schema api to lic_app, lic_web;
grant execute on all functions in schema service to lic_web;
grant execute on all functions in schema worker to lic_worker;
grant execute on all functions in schema private to lic_definer, lic_maint;
-- lic_reporting reads the security_invoker views in api (sql/0013): it
-- authenticates as a request does, and its tenant policy calls the verified
-- context reader, a definer function, so it needs no USAGE on private.
grant execute on function api.authenticate(text), private.current_account_id() to lic_reporting;
-- The metering partition upkeep's helpers run as their caller, the upkeep's
-- owner lic_owner (decisions 29, 55, 56).
grant execute on function private.ensure_metering_partitions(timestamptz, integer),
private.drop_metering_partitions(timestamptz, integer), private.secure_partition(regclass) to lic_owner;

-- Attaching a partition clones the parent's row triggers, which needs EXECUTE
-- on their functions for the role attaching it: the table owner, lic_owner
-- (worker.ensure_metering_partitions).
do $$
declare
  v_fn record;
begin
  for v_fn in
    select distinct t.tgfoid::regprocedure as signature
    from pg_catalog.pg_trigger as t
    join pg_catalog.pg_class as c on c.oid = t.tgrelid
    join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
    where n.nspname = 'lic' and c.relkind = 'p' and not t.tgisinternal
  loop
    execute format('grant execute on function %s to lic_owner', v_fn.signature);
  end loop;
end;
$$;
