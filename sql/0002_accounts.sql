-- Tenant plans: Licentric's own pricing. Reference data owned by no tenant,
-- read-only to everyone but migrations. A null limit means unlimited.
create table lic.tenant_plans (
  code text primary key,
  name text not null,
  max_active_licenses integer check (max_active_licenses > 0),
  max_agents integer check (max_agents > 0),
  custom_branding boolean not null,
  embeddable_analytics boolean not null
);

insert into lic.tenant_plans (
  code, name, max_active_licenses, max_agents, custom_branding, embeddable_analytics
) values
('free', 'Free', 100, 5, false, false),
('starter', 'Starter', 1000, 50, true, false),
('growth', 'Growth', 10000, 500, true, true),
('enterprise', 'Enterprise', null, null, true, true);

-- One row per tenant. The key is named account_id like every tenant column so
-- one RLS predicate (and one Citus distribution column) fits every table.
create table lic.accounts (
  account_id uuid primary key default private.uuid_v7(),
  name text not null check (length(name) between 1 and 200),
  plan text not null default 'free' references lic.tenant_plans (code),
  -- Per-account overrides of the plan's limits (enterprise contracts).
  max_active_licenses integer check (max_active_licenses > 0),
  max_agents integer check (max_agents > 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- API keys are stored as sha256 hashes; the clear key is shown once.
create table lic.api_keys (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  kind text not null check (kind in ('secret', 'publishable')),
  name text check (length(name) <= 200),
  key_hash bytea not null,
  redacted text not null,
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  rolled_from uuid,
  created_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, key_hash),
  foreign key (account_id, rolled_from) references lic.api_keys (account_id, id)
);

-- Idempotency-Key records, written in the same transaction as the effect, so
-- a rolled-back request leaves no key behind and a retry runs again.
create table lic.idempotency_keys (
  account_id uuid not null references lic.accounts (account_id),
  key text not null check (length(key) between 1 and 255),
  request_fingerprint text not null,
  response_status integer not null,
  response_body jsonb,
  created_at timestamptz not null default now(),
  primary key (account_id, key)
);

create index idempotency_keys__account_id_created_at_idx
on lic.idempotency_keys (account_id, created_at);

grant select on lic.tenant_plans to lic_definer, lic_maint;
grant select, insert, update on lic.accounts to lic_definer;
grant select, insert, update on lic.api_keys to lic_definer;
grant select, insert, update, delete on lic.idempotency_keys to lic_definer;

-- The public contract: composite types the api functions return.
create type api.account as (
  id uuid,
  name text,
  plan text,
  limits jsonb,
  usage jsonb,
  created_at timestamptz
);

create type api.api_key as (
  id uuid,
  kind text,
  name text,
  redacted text,
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  rolled_from uuid,
  created_at timestamptz,
  -- The clear key: set only in the answer that creates it, null afterwards.
  secret text
);

create type api.auth_context as (
  account_id uuid,
  api_key_id uuid,
  kind text
);

create type api.idempotent_response as (
  status integer,
  body jsonb
);
