-- Each license's effective entitlement codes, kept in the same transaction by
-- triggers (functions/56_license_entitlements.sql) from its policy's
-- entitlements and its own overrides, so validation and entitlement checks
-- read one row. The junction tables stay the source of truth; this column is
-- derived from them like a rollup, never written by an api function.
alter table lic.licenses add column entitlement_codes text[] not null default '{}';

-- Existing licenses: the same rule as private.effective_entitlement_codes
-- (policy's and grants, less revokes), spelled out because functions/ is
-- applied after this file.
update lic.licenses as l
set entitlement_codes = coalesce((
  select array_agg(e.code order by e.code collate pg_catalog."C") -- noqa: RF01, RF03 (a collation, not a column)
  from lic.entitlements as e
  where
    e.account_id = l.account_id
    and e.id in (
      select pe.entitlement_id from lic.policy_entitlements as pe
      where pe.account_id = l.account_id and pe.policy_id = l.policy_id
      union all
      select g.entitlement_id from lic.license_entitlements as g
      where g.account_id = l.account_id and g.license_id = l.id and g.effect = 'grant'
    )
    and not exists (
      select from lic.license_entitlements as r
      where r.account_id = l.account_id and r.license_id = l.id and r.entitlement_id = e.id and r.effect = 'revoke'
    )
), '{}');
