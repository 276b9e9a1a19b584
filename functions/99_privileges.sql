-- Runs last on every migrate: definer functions belong to lic_definer (api,
-- private) or lic_maint (worker), nothing is executable by PUBLIC, and each
-- login role can execute exactly its own schema.
do $$
declare
  v_fn record;
begin
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
