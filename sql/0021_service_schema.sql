-- The role split (decision 50). Functions that take an account, a portal slug
-- or a token hash from their caller trust the caller to have proved it (a
-- verified Stripe signature, a cookie): they move from api, which every
-- tenant backend may call, to service, which only Licentric's own web process
-- may call. lic_web is that process's login role; lic_app stays the login
-- role of tenants' trusted backends, which reach api alone.
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'lic_web') then
    create role lic_web login nobypassrls;
  end if;
end;
$$;

create schema service authorization lic_owner;
revoke all on schema service from public;
grant usage on schema service to lic_definer, lic_web;
grant usage on schema api to lic_web;
