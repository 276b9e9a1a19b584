-- Every lic table with an account_id gets row level security, enabled and
-- forced (so the owner is filtered too), and three policies:
--   <table>__all__tenant         RESTRICTIVE, lic_definer: only the context's
--                                account (private.context_account_id: the api
--                                function running verified it on entry);
--   <table>__all__definer        PERMISSIVE, lic_definer: the api functions
--                                may use those rows;
--   <table>__select__reporting   RESTRICTIVE, lic_reporting: only the
--                                verified context's account (it reads views
--                                directly, with no api function in front).
-- Being restrictive, the tenant predicates cannot be widened by any later
-- permissive policy for those roles. lic_maint gets no tenant predicate: its
-- cross-tenant access is only what named <table>__<cmd>__maint policies grant.
-- A partition is reached through its parent, whose policies apply there; it
-- gets row level security enabled and forced too, with the one policy the
-- upkeep needs (private.secure_partition, which makes new ones the same way).
do $$
declare
  v_table record;
begin
  for v_table in
    select c.oid::regclass as name, c.relname
    from pg_catalog.pg_class as c
    join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
    where n.nspname = 'lic'
      and c.relkind in ('r', 'p')
      and not c.relispartition
      and exists (
        select from pg_catalog.pg_attribute as a
        where a.attrelid = c.oid and a.attname = 'account_id' and not a.attisdropped
      )
  loop
    execute format('alter table %s enable row level security', v_table.name);
    execute format('alter table %s force row level security', v_table.name);
    execute format(
      'create policy %I on %s as restrictive for all to lic_definer '
      'using (account_id = (select private.context_account_id())) '
      'with check (account_id = (select private.context_account_id()))',
      v_table.relname || '__all__tenant', v_table.name
    );
    execute format(
      'create policy %I on %s as restrictive for select to lic_reporting '
      'using (account_id = (select private.current_account_id()))',
      v_table.relname || '__select__reporting', v_table.name
    );
    execute format(
      'create policy %I on %s as permissive for all to lic_definer using (true) with check (true)',
      v_table.relname || '__all__definer', v_table.name
    );
  end loop;
  for v_table in
    select c.oid::regclass as name
    from pg_catalog.pg_class as c
    join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
    where n.nspname = 'lic' and c.relkind in ('r', 'p') and c.relispartition
  loop
    perform private.secure_partition(v_table.name);
  end loop;
end;
$$;
