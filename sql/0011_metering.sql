-- Usage metering: meters, the append-only partitioned event table, hourly
-- rollups kept in the ingest transaction (sum(rollups) = sum(events) at every
-- instant), and budgets debited in that same transaction.

create table lic.meters (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  code text not null check (code ~ '^[a-z0-9][a-z0-9._:-]{0,63}$'),
  name text not null check (length(name) between 1 and 200),
  unit text check (length(unit) <= 50),
  aggregation text not null check (aggregation in ('sum', 'count', 'max', 'unique_count', 'latest')),
  -- unique_count counts the distinct values of this property.
  unique_property text check (unique_property ~ '^[A-Za-z0-9_.:-]{1,64}$'),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  archived_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, code),
  check ((aggregation = 'unique_count') = (unique_property is not null))
);

-- The events as recorded, never changed. The client's id is its idempotency
-- key together with occurred_at (the partition key must be in every unique
-- key): the same id and instant again is a duplicate; the same id at another
-- instant is another event. Monthly partitions are made ahead by the worker;
-- the DEFAULT partition takes whatever falls outside them, so no event is
-- ever refused for want of a partition.
create table lic.metering_events (
  account_id uuid not null,
  id text not null check (length(id) between 1 and 255),
  meter_id uuid not null,
  -- The subject: an agent, a license, and/or the tenant's own key.
  agent_id uuid,
  license_id uuid,
  subject_key text check (length(subject_key) between 1 and 255),
  quantity numeric not null check (quantity >= 0),
  occurred_at timestamptz not null,
  received_at timestamptz not null default now(),
  properties jsonb not null default '{}' check (jsonb_typeof(properties) = 'object'),
  primary key (account_id, id, occurred_at),
  check (num_nonnulls(agent_id, license_id, subject_key) > 0)
) partition by range (occurred_at);

create table lic.metering_events_default partition of lic.metering_events default;

-- Hourly rollups per (account, meter, subject): the only thing usage queries
-- read. The subject columns are never null (nil uuid, '') so they can be keys.
create table lic.metering_rollups (
  account_id uuid not null,
  meter_id uuid not null,
  hour timestamptz not null,
  agent_id uuid not null,
  license_id uuid not null,
  subject_key text not null,
  event_count bigint not null,
  quantity_sum numeric not null,
  quantity_max numeric not null,
  latest_quantity numeric not null,
  latest_at timestamptz not null,
  primary key (account_id, meter_id, hour, agent_id, license_id, subject_key)
);

create index metering_rollups__account_id_license_id_meter_id_hour_idx
on lic.metering_rollups (account_id, license_id, meter_id, hour);
create index metering_rollups__account_id_agent_id_meter_id_hour_idx
on lic.metering_rollups (account_id, agent_id, meter_id, hour);

-- The distinct values of a unique_count meter's property, per hour and subject.
create table lic.metering_rollup_values (
  account_id uuid not null,
  meter_id uuid not null,
  hour timestamptz not null,
  agent_id uuid not null,
  license_id uuid not null,
  subject_key text not null,
  value text not null,
  primary key (account_id, meter_id, hour, agent_id, license_id, subject_key, value)
);

-- Budgets: a limit on a meter for an agent or for a license (every event of
-- the license: its own, its agents', its subject keys), per calendar period
-- in UTC. Hard budgets refuse what would pass the limit; soft ones accept and
-- emit budget.exceeded.
create table lic.budgets (
  account_id uuid not null,
  id uuid not null default private.uuid_v7(),
  meter_id uuid not null,
  agent_id uuid,
  license_id uuid,
  period text not null check (period in ('hour', 'day', 'month')),
  "limit" numeric not null check ("limit" >= 0),
  hard boolean not null default true,
  -- Percentages of the limit that emit budget.threshold_reached once per period.
  thresholds integer[] not null default '{}' check (0 < all(thresholds) and 1000 >= all(thresholds)),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  foreign key (account_id, meter_id) references lic.meters (account_id, id),
  foreign key (account_id, agent_id) references lic.agents (account_id, id),
  foreign key (account_id, license_id) references lic.licenses (account_id, id),
  check (num_nonnulls(agent_id, license_id) = 1)
);

create index budgets__account_id_agent_id_idx on lic.budgets (account_id, agent_id) where agent_id is not null;
create index budgets__account_id_license_id_idx on lic.budgets (account_id, license_id) where license_id is not null;

-- What each budget has spent in each period: the row a hard debit updates.
create table lic.budget_usage (
  account_id uuid not null,
  budget_id uuid not null,
  period_start timestamptz not null,
  used numeric not null default 0 check (used >= 0),
  thresholds_reached integer[] not null default '{}',
  exceeded_at timestamptz,
  primary key (account_id, budget_id, period_start),
  foreign key (account_id, budget_id) references lic.budgets (account_id, id) on delete cascade
);

grant select, insert, update, delete on lic.meters, lic.budgets, lic.budget_usage to lic_definer;
grant select, insert on lic.metering_events, lic.metering_rollup_values to lic_definer;
grant select, insert, update on lic.metering_rollups to lic_definer;

-- The contract.
create type api.meter as (
  id uuid,
  code text,
  name text,
  unit text,
  aggregation text,
  unique_property text,
  metadata jsonb,
  archived_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.meter is
'A meter: what usage events count and how (sum, count, max, unique_count of a property, latest).';

create type api.budget as (
  id uuid,
  meter_id uuid,
  meter_code text,
  agent_id uuid,
  license_id uuid,
  period text,
  "limit" numeric,
  hard boolean,
  thresholds integer [],
  used numeric,
  remaining numeric,
  period_start timestamptz,
  period_end timestamptz,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.budget is
'A budget on a meter for an agent or a license, per calendar period (UTC), with what the current period used.';
