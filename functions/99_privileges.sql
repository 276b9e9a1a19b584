-- Runs last on every migrate: storage (tables, sequences, types) belongs to
-- lic_owner, definer functions to lic_definer (api, private) or lic_maint
-- (worker), nothing is executable by PUBLIC, and each login role can execute
-- exactly its own schema.
do $$
declare
  v_fn record;
  v_obj record;
begin
  for v_obj in
    select c.oid::regclass as name
    from pg_catalog.pg_class as c
    join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
    where n.nspname in ('lic', 'api', 'worker', 'private')
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
    select p.oid::regprocedure as signature, n.nspname as schema
    from pg_catalog.pg_proc as p
    join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
    where n.nspname in ('api', 'worker', 'private')
  loop
    execute format(
      'alter routine %s owner to %I', v_fn.signature,
      case v_fn.schema when 'worker' then 'lic_maint' else 'lic_definer' end
    );
    execute format('revoke all on routine %s from public', v_fn.signature);
  end loop;
end;
$$;

grant execute on all functions in schema api to lic_app;
grant execute on all functions in schema worker to lic_worker;
grant execute on all functions in schema private to lic_definer, lic_maint;
