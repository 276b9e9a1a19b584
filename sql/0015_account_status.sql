-- An operator may suspend a tenant account (an unpaid bill, abuse) and
-- reactivate it: `licentric accounts suspend|reactivate`. A suspended account
-- records no usage (api.ingest_events answers LACCT); it still reads, and its
-- customers' licenses still validate, so a tenant's end users are not cut off
-- by the tenant's own standing with the operator (decision 42).

alter table lic.accounts
add column status text not null default 'active' check (status in ('active', 'suspended')),
add column status_reason text check (length(status_reason) between 1 and 500),
add column status_changed_at timestamptz;

alter type api.account add attribute status text, add attribute status_reason text;
