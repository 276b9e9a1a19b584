-- Entitlement snapshots and their change feed (decisions 80-82): what the
-- SDK's local checks read (issue 14).

-- One customer-level decision at an instant: the answer of
-- api.check_entitlement plus the instant it stops holding without a write
-- (null: no time limit). Made by private.entitlement_decision alone.
create type lic.entitlement_decision as (
  allowed boolean,
  reason text,
  license_id uuid,
  valid_until timestamptz
);

-- The transaction that last changed what a customer's decisions read (its
-- licenses or its external id), or made it: the change feed's order. Stamped
-- by a trigger (functions/59_entitlement_feed.sql). A volatile default gives
-- existing rows this migration's id.
alter table lic.customers add column changed_xid xid8 not null default pg_catalog.pg_current_xact_id();
create index customers__account_id_changed_xid_idx on lic.customers (account_id, changed_xid);

-- An external id that stopped naming a customer (the customer was deleted or
-- its external id changed or cleared), so the feed can tell SDKs to forget
-- it. Kept 30 days, pruned when the account next buries one; the newest id
-- pruned is the account's entitlement_feed_floor, and a feed cursor at or
-- below it is too old to serve (410).
create table lic.customer_tombstones (
  account_id uuid not null references lic.accounts (account_id),
  changed_xid xid8 not null default pg_catalog.pg_current_xact_id(),
  external_id text not null,
  created_at timestamptz not null default now(),
  primary key (account_id, changed_xid, external_id)
);

alter table lic.accounts add column entitlement_feed_floor xid8;

grant select, insert, delete on lic.customer_tombstones to lic_definer;

create type api.entitlement_page as (
  data jsonb,
  has_more boolean,
  cursor text
);
comment on type api.entitlement_page is
'A page of customers'' entitlement decisions (api.entitlement_snapshot, api.entitlement_changes): data, a JSON '
'array of {customer, found, default, entitlements}; has_more; cursor, where the change feed goes on from.';
