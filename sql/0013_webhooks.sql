-- Outbound webhooks: the endpoints a tenant registers, one delivery per
-- (endpoint, event) made by the fan-out trigger on lic.events in the emitting
-- transaction (functions/80_webhooks.sql), and one row per attempt. The
-- worker claims pending deliveries that are due with FOR UPDATE SKIP LOCKED
-- and a lease, sends outside any transaction, then records the attempt.

-- Endpoints. The signing secret is made and encrypted in Python (SecretBox,
-- purpose webhook_endpoint_secret, bound to the account); SQL keeps only the
-- ciphertext. After a rotation the previous secret signs too until
-- previous_secret_expires_at.
create table lic.webhook_endpoints (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  url text not null check (length(url) between 1 and 2048),
  description text check (length(description) between 1 and 500),
  -- '{}' subscribes to every type.
  event_types text[] not null default '{}',
  enabled boolean not null default true,
  disabled_reason text,
  disabled_at timestamptz,
  secret_ciphertext bytea not null,
  previous_secret_ciphertext bytea,
  previous_secret_expires_at timestamptz,
  secret_rotated_at timestamptz,
  -- The first failed attempt since the last success: five days of failure
  -- disable the endpoint.
  failing_since timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  check ((previous_secret_ciphertext is null) = (previous_secret_expires_at is null)),
  check (enabled = (disabled_at is null))
);

-- One per (endpoint, event): the event's stable id goes out on every attempt.
-- next_attempt_at is when it is due; a claim moves it to the end of the lease
-- (a visibility timeout), so the claim query's index holds only what is due
-- and a worker killed mid-send loses nothing: its lease runs out and the
-- delivery is due again. Finished deliveries have no next_attempt_at.
create table lic.webhook_deliveries (
  account_id uuid not null,
  id uuid not null default private.uuid_v7(),
  endpoint_id uuid not null,
  event_id uuid not null,
  event_type text not null,
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
  attempts integer not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz,
  leased_until timestamptz,
  lease_id uuid,
  last_attempt_at timestamptz,
  last_status_code integer,
  succeeded_at timestamptz,
  created_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, endpoint_id, event_id),
  foreign key (account_id, endpoint_id) references lic.webhook_endpoints (account_id, id) on delete cascade,
  foreign key (account_id, event_id) references lic.events (account_id, id),
  check ((status = 'pending') = (next_attempt_at is not null)),
  check ((lease_id is null) = (leased_until is null))
)
-- Every claim and attempt updates a row: vacuum the dead versions early, so
-- the claim query does not wade through them.
with (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);

-- The claim: pending deliveries by due time, across tenants.
create index webhook_deliveries__next_attempt_at_idx
on lic.webhook_deliveries (next_attempt_at) where status = 'pending';
-- Release on shutdown finds deliveries by lease.
create index webhook_deliveries__lease_id_idx
on lic.webhook_deliveries (lease_id) where lease_id is not null;
-- Retention: finished deliveries by age.
create index webhook_deliveries__created_at_idx
on lic.webhook_deliveries (created_at) where status <> 'pending';
-- The delivery log of one endpoint, newest first, and replay.
create index webhook_deliveries__account_id_endpoint_id_id_idx
on lic.webhook_deliveries (account_id, endpoint_id, id);
create index webhook_deliveries__account_id_event_type_id_idx
on lic.webhook_deliveries (account_id, event_type, id);

create table lic.webhook_attempts (
  account_id uuid not null,
  delivery_id uuid not null,
  attempt integer not null check (attempt >= 1),
  started_at timestamptz not null,
  latency_ms integer check (latency_ms >= 0),
  -- Null when no response came (timeout, refused connection, unsafe target).
  status_code integer,
  error_class text check (length(error_class) between 1 and 100),
  -- The first 1,024 characters of the response.
  response_body text check (length(response_body) <= 1024),
  primary key (account_id, delivery_id, attempt),
  foreign key (account_id, delivery_id) references lic.webhook_deliveries (account_id, id) on delete cascade
);

-- A test delivery sends the single-word type 'ping'.
alter table lic.events drop constraint events_type_check;
alter table lic.events add constraint events_type_check check (type ~ '^[a-z_]+(\.[a-z_]+)+$' or type = 'ping');

grant select, insert, update, delete on lic.webhook_endpoints, lic.webhook_deliveries, lic.webhook_attempts
to lic_definer;
-- The worker functions (owned by lic_maint) and the fan-out of events a sweep
-- emits cross tenants through the named __maint policies
-- (policies/40_webhooks.sql).
grant select, update on lic.webhook_endpoints to lic_maint;
grant select, insert, update, delete on lic.webhook_deliveries to lic_maint;
grant insert on lic.webhook_attempts to lic_maint;
grant select on lic.events to lic_maint;

-- The contract.
create type api.webhook_endpoint as (
  id uuid,
  url text,
  description text,
  event_types text [],
  enabled boolean,
  disabled_reason text,
  disabled_at timestamptz,
  secret_rotated_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.webhook_endpoint is
'A webhook endpoint: where events are posted, the event types it subscribes to (empty: all), whether it is '
'enabled (else why and since when it is disabled), and when its secret was last rotated. Never the secret.';

create type api.webhook_delivery as (
  id uuid,
  endpoint_id uuid,
  event_id uuid,
  event_type text,
  status text,
  attempts integer,
  next_attempt_at timestamptz,
  last_attempt_at timestamptz,
  last_status_code integer,
  succeeded_at timestamptz,
  created_at timestamptz
);
comment on type api.webhook_delivery is
'One event to one endpoint: pending (due at next_attempt_at), succeeded or failed, with how many attempts were '
'made and the last one''s time and HTTP status.';
