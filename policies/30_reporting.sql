-- lic_reporting reads these tables only through the security_invoker views in
-- api (it has no USAGE on lic). Row level security shows a row only when some
-- permissive policy allows it, so each table a view reads gets one for
-- lic_reporting here; the restrictive <table>__select__reporting
-- (00_tenant.sql) still limits it to its verified context's account.
create policy meters__select__reporting_views on lic.meters
as permissive for select to lic_reporting using (true);
create policy metering_rollups__select__reporting_views on lic.metering_rollups
as permissive for select to lic_reporting using (true);
