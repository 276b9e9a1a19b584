-- Side channels (decision 54): the cumulative statistics of this database
-- count rows, scans and calls per table and function across every tenant
-- (n_live_tup of lic.licenses is the whole service's license count), and
-- pg_stat_activity shows what other sessions of the same login run. No login
-- role of Licentric's needs them; monitoring keeps them through
-- pg_read_all_stats. What cannot be revoked (pg_class.reltuples, which every
-- client reads) is listed in docs/operations.md.
do $$
declare
  v_object record;
begin
  for v_object in
    select p.oid::regprocedure::text as name
    from pg_catalog.pg_proc as p
    where p.pronamespace = 'pg_catalog'::regnamespace and p.proname like 'pg\_stat\_get\_%'
  loop
    execute format('revoke execute on function %s from public', v_object.name);
    execute format('grant execute on function %s to pg_read_all_stats', v_object.name);
  end loop;
  for v_object in
    select c.oid::regclass::text as name
    from pg_catalog.pg_class as c
    where
      c.relnamespace = 'pg_catalog'::regnamespace and c.relkind = 'v'
      and (c.relname like 'pg\_stat\_%' or c.relname like 'pg\_statio\_%')
  loop
    execute format('revoke select on %s from public', v_object.name);
    execute format('grant select on %s to pg_read_all_stats', v_object.name);
  end loop;
end;
$$;
