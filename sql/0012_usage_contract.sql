-- The usage contract: the row api.usage answers, and the hourly reporting
-- view for lic_reporting. The view is security_invoker, so the tables' own
-- row level security applies to whoever reads it: lic_reporting sees only the
-- rows of the account its verified context names (<table>__select__reporting),
-- and nothing without a context. lic_reporting gets SELECT on the columns the
-- view reads but no USAGE on lic, so it reaches the tables only through the
-- view; the EXECUTE its policy needs is granted in functions/99_privileges.sql
-- (functions are rebuilt on every migrate).

create type api.usage_row as (
  period_start timestamptz,
  agent_id uuid,
  license_id uuid,
  subject_key text,
  value numeric,
  event_count bigint
);
comment on type api.usage_row is
'One bucket of usage of a meter (calendar-aligned in UTC): its start, the subject when grouped by subject (else '
'null), the value per the meter''s aggregation, and how many events it counts.';

-- The rollups' subject keys hold the nil uuid and '' for "none"; the view
-- shows null.
create view api.usage_hourly with (security_invoker = true) as
select
  r.meter_id,
  m.code as meter_code,
  m.aggregation,
  r.hour,
  nullif(r.agent_id, '00000000-0000-0000-0000-000000000000'::uuid) as agent_id,
  nullif(r.license_id, '00000000-0000-0000-0000-000000000000'::uuid) as license_id,
  nullif(r.subject_key, '') as subject_key,
  r.event_count,
  r.quantity_sum,
  r.quantity_max,
  r.latest_quantity,
  r.latest_at
from lic.metering_rollups as r
inner join lic.meters as m on r.account_id = m.account_id and r.meter_id = m.id;
comment on view api.usage_hourly is
'Hourly usage per meter and subject (agent, license, the tenant''s subject key; null when none), from the '
'rollups: event_count, quantity_sum, quantity_max and the latest quantity. For lic_reporting, after '
'api.authenticate in the same transaction: it shows only that account''s rows.';

grant usage on schema api to lic_reporting;
grant select on api.usage_hourly to lic_reporting;
grant select (
  account_id, meter_id, hour, agent_id, license_id, subject_key, event_count, quantity_sum, quantity_max,
  latest_quantity, latest_at
) on lic.metering_rollups to lic_reporting;
grant select (account_id, id, code, aggregation) on lic.meters to lic_reporting;
