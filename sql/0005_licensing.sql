-- Licensing core: license policies (the tenant's plan tiers), entitlements,
-- customers, licenses, machines, team seats, agent identities and the event
-- outbox. Every table is a tenant table: account_id leads every key.

-- Plan usage counters, kept by triggers on licenses and agents so the tenant
-- plan's limits are enforced by one conditional update, exactly, under
-- concurrency (see private.adjust_plan_usage).
alter table lic.accounts
add column active_licenses integer not null default 0 check (active_licenses >= 0),
add column active_agents integer not null default 0 check (active_agents >= 0);

create table lic.license_policies (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  code text not null check (code ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  name text not null check (length(name) between 1 and 200),
  -- null: perpetual
  duration interval check (duration > interval '0'),
  -- null: unlimited
  max_machines integer check (max_machines > 0),
  max_users integer check (max_users > 0),
  -- Validation must name a fingerprint activated on the license.
  require_fingerprint boolean not null default false,
  -- Machines silent for longer are not counted and do not validate; null: no heartbeat.
  heartbeat_interval interval check (heartbeat_interval >= interval '1 minute'),
  grace_period interval not null default interval '7 days' check (grace_period >= interval '0'),
  refund_action text not null default 'suspend' check (refund_action in ('suspend', 'none')),
  dispute_action text not null default 'suspend' check (dispute_action in ('suspend', 'none')),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  archived_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, code)
);

create table lic.entitlements (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  code text not null check (code ~ '^[a-z0-9][a-z0-9._:-]{0,63}$'),
  name text not null check (length(name) between 1 and 200),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, code)
);

create table lic.policy_entitlements (
  account_id uuid not null,
  policy_id uuid not null,
  entitlement_id uuid not null,
  created_at timestamptz not null default now(),
  primary key (account_id, policy_id, entitlement_id),
  foreign key (account_id, policy_id) references lic.license_policies (account_id, id),
  foreign key (account_id, entitlement_id) references lic.entitlements (account_id, id)
);

create index policy_entitlements__account_id_entitlement_id_idx
on lic.policy_entitlements (account_id, entitlement_id);

create table lic.customers (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  email text check (email ~ '^[^@\s]+@[^@\s]+$' and length(email) <= 320),
  name text check (length(name) <= 200),
  -- The tenant's own id for this customer (its user id).
  external_id text check (length(external_id) between 1 and 200),
  stripe_customer_id text check (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$'),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, external_id),
  unique (account_id, stripe_customer_id)
);

create index customers__account_id_lower_email_idx on lic.customers (account_id, lower(email));

create table lic.licenses (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  -- Shown to the tenant and its customer whenever asked (as peers do): the
  -- key is a product key, not a credential of the tenant.
  key text not null,
  policy_id uuid not null,
  customer_id uuid,
  status text not null default 'active'
  check (status in ('active', 'past_due', 'suspended', 'expired', 'canceled')),
  expires_at timestamptz,
  -- Set while past_due: the license validates (PAYMENT_GRACE) until then, OVERDUE after.
  grace_ends_at timestamptz,
  suspended_reason text check (length(suspended_reason) <= 500),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  suspended_at timestamptz,
  canceled_at timestamptz,
  primary key (account_id, id),
  unique (account_id, key),
  foreign key (account_id, policy_id) references lic.license_policies (account_id, id),
  foreign key (account_id, customer_id) references lic.customers (account_id, id)
);

create index licenses__account_id_customer_id_idx on lic.licenses (account_id, customer_id, id);
create index licenses__account_id_policy_id_idx on lic.licenses (account_id, policy_id, id);
create index licenses__account_id_status_idx on lic.licenses (account_id, status, id);
create index licenses__account_id_expires_at_idx on lic.licenses (account_id, expires_at)
where expires_at is not null and status in ('active', 'past_due');
-- The expiry sweep runs across tenants.
create index licenses__expires_at_idx on lic.licenses (expires_at)
where expires_at is not null and status in ('active', 'past_due');

create table lic.license_entitlements (
  account_id uuid not null,
  license_id uuid not null,
  entitlement_id uuid not null,
  effect text not null check (effect in ('grant', 'revoke')),
  created_at timestamptz not null default now(),
  primary key (account_id, license_id, entitlement_id),
  foreign key (account_id, license_id) references lic.licenses (account_id, id),
  foreign key (account_id, entitlement_id) references lic.entitlements (account_id, id)
);

create index license_entitlements__account_id_entitlement_id_idx
on lic.license_entitlements (account_id, entitlement_id);

create table lic.machines (
  account_id uuid not null,
  id uuid not null default private.uuid_v7(),
  license_id uuid not null,
  fingerprint text not null check (length(fingerprint) between 1 and 500),
  name text check (length(name) <= 200),
  platform text check (length(platform) <= 200),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  last_heartbeat_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, license_id, fingerprint),
  foreign key (account_id, license_id) references lic.licenses (account_id, id)
);

-- Team seats: customers who may use a license (the license's customer is its owner).
create table lic.license_users (
  account_id uuid not null,
  license_id uuid not null,
  customer_id uuid not null,
  role text not null check (role in ('owner', 'member')),
  created_at timestamptz not null default now(),
  primary key (account_id, license_id, customer_id),
  foreign key (account_id, license_id) references lic.licenses (account_id, id),
  foreign key (account_id, customer_id) references lic.customers (account_id, id)
);

create index license_users__account_id_customer_id_idx on lic.license_users (account_id, customer_id);

-- AI agents as principals, with their own token (lic_ak_…, stored hashed).
create table lic.agents (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  name text not null check (length(name) between 1 and 200),
  license_id uuid,
  status text not null default 'active' check (status in ('active', 'revoked')),
  token_hash bytea not null,
  redacted text not null,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  revoked_at timestamptz,
  primary key (account_id, id),
  unique (account_id, token_hash),
  foreign key (account_id, license_id) references lic.licenses (account_id, id)
);

-- The transactional outbox: every state change writes its event here in the
-- same transaction (Stripe's shape: type, data.object, data.previous_attributes).
create table lic.events (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  type text not null check (type ~ '^[a-z_]+(\.[a-z_]+)+$'),
  object jsonb not null,
  previous_attributes jsonb,
  created_at timestamptz not null default now(),
  primary key (account_id, id)
);

create index events__account_id_type_id_idx on lic.events (account_id, type, id);

grant select, insert, update, delete on
lic.license_policies, lic.entitlements, lic.policy_entitlements, lic.customers, lic.licenses,
lic.license_entitlements, lic.machines, lic.license_users, lic.agents
to lic_definer;
grant select, insert on lic.events to lic_definer;
-- The expiry sweep (worker.expire_licenses) crosses tenants as lic_maint,
-- through the named __maint policies in policies/20_maint.sql.
grant select, update on lic.licenses to lic_maint;
grant select on lic.license_policies, lic.customers to lic_maint;
grant select, update on lic.accounts to lic_maint;
grant insert on lic.events to lic_maint;

-- The contract.
alter type api.auth_context add attribute agent_id uuid;

create type api.license_policy as (
  id uuid,
  code text,
  name text,
  duration text,
  max_machines integer,
  max_users integer,
  require_fingerprint boolean,
  heartbeat_interval text,
  grace_period text,
  refund_action text,
  dispute_action text,
  entitlements text [],
  metadata jsonb,
  archived_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.license_policy is
'A license policy (a plan tier of the tenant); durations are ISO 8601 (P1M, P1Y, P14D).';

create type api.entitlement as (
  id uuid,
  code text,
  name text,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.entitlement is 'A feature flag that license policies and licenses grant.';

create type api.license_entitlement as (
  code text,
  name text,
  source text
);
comment on type api.license_entitlement is
'One effective entitlement of a license and where it comes from: policy or grant.';

create type api.customer as (
  id uuid,
  email text,
  name text,
  external_id text,
  stripe_customer_id text,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.customer is 'A customer of the tenant (external_id is the tenant''s own user id).';

create type api.license as (
  id uuid,
  key text,
  policy_id uuid,
  policy_code text,
  customer_id uuid,
  status text,
  effective_status text,
  expires_at timestamptz,
  grace_ends_at timestamptz,
  suspended_reason text,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz,
  canceled_at timestamptz
);
comment on type api.license is
'A license. status is as stored; effective_status is computed now (active, past_due, overdue, suspended, '
'expired, canceled).';

create type api.license_validation as (
  valid boolean,
  code text,
  detail text,
  license jsonb,
  entitlements text []
);
comment on type api.license_validation is
'The answer of api.validate_license: valid, a precise code, the license summary and its effective entitlements.';

create type api.entitlement_check as (
  allowed boolean,
  reason text,
  license_id uuid
);
comment on type api.entitlement_check is
'The answer of api.check_entitlement: allowed, why (a code), and the license that allows it.';

create type api.machine as (
  id uuid,
  license_id uuid,
  fingerprint text,
  name text,
  platform text,
  metadata jsonb,
  alive boolean,
  last_heartbeat_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.machine is
'A machine activated on a license; alive is false once its policy''s heartbeat interval has passed in silence.';

create type api.license_user as (
  license_id uuid,
  customer_id uuid,
  email text,
  name text,
  role text,
  created_at timestamptz
);
comment on type api.license_user is 'A seat on a license: a customer with the role owner or member.';

create type api.agent as (
  id uuid,
  name text,
  license_id uuid,
  status text,
  redacted text,
  metadata jsonb,
  created_at timestamptz,
  updated_at timestamptz,
  revoked_at timestamptz,
  -- The clear token: set only in the answer that creates or rolls it.
  token text
);
comment on type api.agent is 'An AI agent identity with its own token (lic_ak_…), counted against the tenant plan.';

create type api.event as (
  id uuid,
  type text,
  created timestamptz,
  data jsonb
);
comment on type api.event is
'Something that happened, as webhooks will deliver it: data.object and data.previous_attributes.';
