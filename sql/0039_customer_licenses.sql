-- Each customer's licenses (its own and those it holds a seat on), with what
-- an entitlement check needs of them, kept in the same transaction by
-- triggers (functions/54_customer_licenses.sql): a check by the tenant's user
-- id then reads one row (issue 12 item 4, decision 79). Derived like
-- lic.licenses.entitlement_codes (sql/0008), never written by an api function.
create type lic.customer_license as (
  license_id uuid,
  status text,
  expires_at timestamptz,
  grace_ends_at timestamptz,
  entitlement_codes text []
);

alter table lic.customers add column licenses lic.customer_license[] not null default '{}';

-- Existing customers: the same rule as private.customer_licenses, spelled out
-- because functions/ is applied after this file.
update lic.customers as c
set licenses = coalesce((
  select
    array_agg(
      row(l.id, l.status, l.expires_at, l.grace_ends_at, l.entitlement_codes)::lic.customer_license order by l.id
    )
  from lic.licenses as l
  where
    l.account_id = c.account_id
    and l.id in (
      select u.license_id from lic.license_users as u
      where u.account_id = c.account_id and u.customer_id = c.id
      union
      select o.id from lic.licenses as o
      where o.account_id = c.account_id and o.customer_id = c.id
    )
), '{}');

-- The expiry sweep (lic_maint) changes licenses, so it refreshes their
-- customers' arrays too (policies/20_maint.sql).
grant select on lic.license_users to lic_maint;
grant update (licenses) on lic.customers to lic_maint;
