-- Who may log in to this database, and for how long a statement or an idle
-- transaction may run (decision 51). Per database: roles are cluster-wide,
-- so `alter role … in database` keeps each Licentric database's settings
-- its own. Operators may tune the timeouts later; migrations never reset them.
do $$
declare
  v_db text := pg_catalog.current_database();
  v_login record;
begin
  execute format('revoke connect, temporary on database %I from public', v_db);
  execute format('grant connect on database %I to lic_app, lic_web, lic_worker, lic_reporting', v_db);
  -- `licentric usage import` stages its file in a temporary table.
  execute format('grant temporary on database %I to lic_app', v_db);
  for v_login in
    select r.role, r.statement_timeout
    from (values
      ('lic_app', '30s'), ('lic_web', '30s'), ('lic_reporting', '120s'),
      -- Partition upkeep moves a month of events out of the DEFAULT partition.
      ('lic_worker', '10min')
    ) as r (role, statement_timeout)
  loop
    execute format('alter role %I in database %I set statement_timeout = %L', v_login.role, v_db,
      v_login.statement_timeout);
    execute format('alter role %I in database %I set idle_in_transaction_session_timeout = %L', v_login.role,
      v_db, '60s');
  end loop;
end;
$$;
