-- Test-only helpers in the style of basejump's supabase-test-helpers, loaded
-- by tests/pgtap/run after the migration (never part of sql/). The test files
-- run as the superuser that loads them and switch roles transaction-locally:
--   tests.create_account(name, plan)  a tenant and its first secret key,
--                                     remembered under name;
--   tests.account_id(name), tests.secret_key(name)   look them up;
--   tests.remember_key(label, key), tests.key_id(label), tests.key_secret(label)
--                                     the same for keys a test makes;
--   tests.act_as(secret)              lic_app, authenticated with the key;
--   tests.act_as_definer(account_id)  lic_definer with that tenant's context,
--                                     for table-level RLS checks;
--   tests.clear_context()             back to the superuser, no context.
-- The lic_* roles get USAGE on this schema and EXECUTE on what they call
-- after switching; the migration revoked EXECUTE from PUBLIC by default.

create schema tests;
grant usage on schema tests to lic_app, lic_web, lic_definer, lic_maint, lic_worker, lic_reporting, lic_owner;

create function tests.clear_context()
returns void
language plpgsql
volatile
as $$
begin
  perform pg_catalog.set_config('role', 'none', true);
  perform pg_catalog.set_config('lic.account_id', '', true);
  perform pg_catalog.set_config('lic.key_kind', '', true);
  perform pg_catalog.set_config('lic.principal_id', '', true);
  perform pg_catalog.set_config('lic.context_signature', '', true);
end;
$$;
comment on function tests.clear_context() is
'Return to the session''s own role (the superuser) with no tenant context.';

-- Accounts and keys made by a test, by name, so test files can write
-- tests.account_id('A') or tests.key_secret('A web') (as basejump's
-- tests.get_supabase_uid does). Rows vanish with each test's rollback.
create table tests.accounts (
  name text primary key,
  account_id uuid not null,
  secret_key text not null
);
create table tests.api_keys (
  label text primary key,
  id uuid not null,
  secret text
);

create function tests.create_account(name text, plan text default 'free')
returns table (account_id uuid, secret_key text)
language plpgsql
volatile
as $$
declare
  v_account_id uuid;
  v_secret_key text;
begin
  select a.account_id, a.secret_key into v_account_id, v_secret_key
  from private.create_account(name => create_account.name, plan => create_account.plan) as a;
  -- private.create_account leaves the new account's context set; a test
  -- starts from none.
  perform tests.clear_context();
  insert into tests.accounts (name, account_id, secret_key) values (create_account.name, v_account_id, v_secret_key);
  -- The first key is remembered under the account's name (the superuser
  -- running this bypasses RLS).
  insert into tests.api_keys (label, id, secret)
  select create_account.name, k.id, v_secret_key from lic.api_keys as k where k.account_id = v_account_id;
  return query select v_account_id, v_secret_key;
end;
$$;
comment on function tests.create_account(text, text) is
'A new tenant account and its first secret key, made as the operator would (call as the superuser); remembered '
'under name in tests.accounts and tests.api_keys.';

create function tests.account_id(name text)
returns uuid
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select a.account_id from tests.accounts as a where a.name = account_id.name;
$$;
comment on function tests.account_id(text) is
'The id of the account tests.create_account made under name.';

create function tests.secret_key(name text)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select a.secret_key from tests.accounts as a where a.name = secret_key.name;
$$;
comment on function tests.secret_key(text) is
'The first secret key of the account tests.create_account made under name.';

create function tests.remember_key(label text, api_key api.api_key)
returns api.api_key
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into tests.api_keys (label, id, secret) values (remember_key.label, (api_key).id, (api_key).secret);
  select api_key;
$$;
comment on function tests.remember_key(text, api.api_key) is
'Remember a key (as returned by api.create_api_key or api.roll_api_key) under label; returns it.';

create function tests.key_id(label text)
returns uuid
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select k.id from tests.api_keys as k where k.label = key_id.label;
$$;
comment on function tests.key_id(text) is
'The id of the key remembered under label.';

create function tests.key_secret(label text)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select k.secret from tests.api_keys as k where k.label = key_secret.label;
$$;
comment on function tests.key_secret(text) is
'The clear text of the key remembered under label.';

create function tests.act_as(secret text)
returns api.auth_context
language plpgsql
volatile
as $$
begin
  perform pg_catalog.set_config('role', 'lic_app', true);
  return api.authenticate(secret => act_as.secret);
end;
$$;
comment on function tests.act_as(text) is
'Become lic_app for the rest of the transaction and authenticate with an API key, as a request does.';

create function tests.act_as_definer(account_id uuid)
returns void
language plpgsql
volatile
as $$
begin
  -- The context is written by private.set_context, as the api functions do,
  -- while still the superuser (lic_definer may call it too, lic_app may not).
  perform pg_catalog.set_config('role', 'none', true);
  perform private.set_context(account_id => act_as_definer.account_id, kind => 'secret');
  perform pg_catalog.set_config('role', 'lic_definer', true);
end;
$$;
comment on function tests.act_as_definer(uuid) is
'Become lic_definer (the role api functions run as) with the given account''s context, for table-level checks.';

create function tests.key_ids(variadic labels text[])
returns setof uuid
language sql
stable
as $$
  select tests.key_id(l.label) from unnest(labels) with ordinality as l (label, n) order by l.n;
$$;
comment on function tests.key_ids(text[]) is
'The ids of the keys remembered under labels, in the order given.';

-- A key with the character at pos changed to the next hex digit.
create function tests.mistype(secret text, pos integer)
returns text
language sql
immutable
as $$
  select
    left(secret, pos - 1)
    || translate(substr(secret, pos, 1), '0123456789abcdef', '123456789abcdef0')
    || substr(secret, pos + 1);
$$;
comment on function tests.mistype(text, integer) is
'secret with the hex digit at pos replaced by the next one (f wraps to 0).';

-- A secret key in the right format with a valid checksum, naming account_id,
-- whose random part is all zeros: no such key is ever issued.
create function tests.well_formed_key(account_id uuid)
returns text
language sql
stable
as $$
  select b.body || private.token_checksum(b.body)
  from (select 'lic_sk_' || replace(account_id::text, '-', '') || repeat('0', 40) as body) as b;
$$;
comment on function tests.well_formed_key(uuid) is
'A well-formed secret key with a valid checksum for account_id that was never issued.';

-- Every lic table that holds tenant rows (has an account_id column), so the
-- isolation tests cover a new table without being edited.
create function tests.tenant_tables()
returns setof regclass
language plpgsql
stable
as $$
begin
  -- PL/pgSQL, not SQL: an inlined SQL function would let the planner run a
  -- caller's volatile filter (tests.count_rows) on rows of pg_class that are
  -- not lic tables.
  return query
  select c.oid::regclass
  from pg_catalog.pg_class as c
  inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
  where
    n.nspname = 'lic'
    and c.relkind in ('r', 'p')
    and not c.relispartition
    and exists (
      select from pg_catalog.pg_attribute as a
      where a.attrelid = c.oid and a.attname = 'account_id' and not a.attisdropped
    )
  order by c.oid::regclass::text;
end;
$$;
comment on function tests.tenant_tables() is
'Every lic table (or partition) with an account_id column.';

create function tests.count_rows(tbl regclass, account_id uuid, of_account boolean default true)
returns bigint
language plpgsql
volatile
as $$
declare
  v_count bigint;
begin
  execute format(
    'select count(*) from %s where account_id %s $1', tbl,
    case when of_account then 'is not distinct from' else 'is distinct from' end
  )
  into v_count
  using account_id;
  return v_count;
end;
$$;
comment on function tests.count_rows(regclass, uuid, boolean) is
'How many rows of tbl the current role sees that belong (of_account) or do not belong to account_id.';

create function tests.rows_of(tbl regclass, account_id uuid)
returns text
language plpgsql
volatile
as $$
declare
  v_digest text;
begin
  execute format(
    'select md5(coalesce(string_agg(t::text, %L order by t::text), %L)) from %s as t where t.account_id = $1',
    E'\n', '', tbl
  )
  into v_digest
  using account_id;
  return v_digest;
end;
$$;
comment on function tests.rows_of(regclass, uuid) is
'A digest of every row of tbl of account_id the current role sees, to tell whether any changed.';

create function tests.touch_rows(tbl regclass, command text, account_id uuid)
returns bigint
language plpgsql
volatile
as $$
declare
  v_count bigint;
begin
  if command = 'update' then
    execute format('update %s set account_id = account_id where account_id = $1', tbl) using account_id;
  elsif command = 'delete' then
    execute format('delete from %s where account_id = $1', tbl) using account_id;
  else
    raise exception using errcode = '22023', message = format('unknown command %L', command);
  end if;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
comment on function tests.touch_rows(regclass, text, uuid) is
'Update (to the same values) or delete the rows of tbl that belong to account_id; returns how many it affected.';

-- The SQLSTATE a statement raises, or null when it succeeds, so one test can
-- check a whole list of statements and name the ones that misbehave.
create function tests.sqlstate_of(statement text)
returns text
language plpgsql
volatile
as $$
begin
  execute statement;
  return null;
exception
  when others then
    return sqlstate;
end;
$$;
comment on function tests.sqlstate_of(text) is
'The SQLSTATE that statement raises, or null if it runs without error (its effects are rolled back either way).';

-- A call of the function with every argument null, for checks that must
-- hold before any argument is looked at (an api function without an
-- authenticated account raises LAUTH whatever it is given).
create function tests.call_with_nulls(fn regprocedure)
returns text
language sql
stable
as $$
  select format(
    'select * from %s.%s(%s)', pg_catalog.quote_ident(n.nspname), pg_catalog.quote_ident(p.proname),
    coalesce(
      (
        select string_agg(format('null::%s', pg_catalog.format_type(t.type, null)), ', ' order by t.pos)
        from unnest(p.proargtypes::oid []) with ordinality as t (type, pos)
      ),
      ''
    )
  )
  from pg_catalog.pg_proc as p
  join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
  where p.oid = fn;
$$;
comment on function tests.call_with_nulls(regprocedure) is
'SQL that calls fn with a typed null for every argument.';

grant execute on all functions in schema tests to lic_app, lic_web, lic_definer, lic_maint, lic_worker, lic_reporting,
lic_owner;
revoke execute on function tests.create_account(text, text) from lic_app, lic_web, lic_definer, lic_maint, lic_worker,
lic_reporting, lic_owner;

-- One row in every licensing table for an account, written as the superuser,
-- so the two-tenant checks in 010_tenant_isolation.sql are not vacuous. A new
-- tenant table gets its row here.
create function tests.seed_licensing(account_id uuid)
returns void
language plpgsql
volatile
as $$
declare
  v_policy uuid;
  v_entitlement uuid;
  v_customer uuid;
  v_license uuid;
  v_meter uuid;
  v_budget uuid;
  v_endpoint uuid;
  v_delivery uuid;
begin
  insert into lic.license_policies (account_id, code, name) values (seed_licensing.account_id, 'seed', 'Seed')
  returning id into v_policy;
  insert into lic.entitlements (account_id, code, name) values (seed_licensing.account_id, 'seed', 'Seed')
  returning id into v_entitlement;
  insert into lic.policy_entitlements (account_id, policy_id, entitlement_id)
  values (seed_licensing.account_id, v_policy, v_entitlement);
  insert into lic.customers (account_id, email, external_id) values (seed_licensing.account_id, 'seed@example.com', 'seed')
  returning id into v_customer;
  insert into lic.licenses (account_id, key, policy_id, customer_id)
  values (seed_licensing.account_id, private.new_license_key(), v_policy, v_customer)
  returning id into v_license;
  insert into lic.license_entitlements (account_id, license_id, entitlement_id, effect)
  values (seed_licensing.account_id, v_license, v_entitlement, 'grant');
  insert into lic.customer_tombstones (account_id, external_id) values (seed_licensing.account_id, 'seed-gone');
  insert into lic.machines (account_id, license_id, fingerprint) values (seed_licensing.account_id, v_license, 'seed');
  insert into lic.license_users (account_id, license_id, customer_id, role)
  values (seed_licensing.account_id, v_license, v_customer, 'owner');
  insert into lic.agents (account_id, name, token_hash, redacted)
  values (seed_licensing.account_id, 'seed', sha256(convert_to(seed_licensing.account_id::text, 'UTF8')), 'seed');
  insert into lic.events (account_id, type, object) values (seed_licensing.account_id, 'seed.created', '{}');
  -- Members (the directory row follows by trigger).
  insert into lic.members (account_id, email, role) values (seed_licensing.account_id, 'seed@example.com', 'owner');
  insert into lic.member_invitations (account_id, email, role, token_hash, invited_by_kind, expires_at)
  values (
    seed_licensing.account_id, 'invited@example.com', 'viewer', sha256(convert_to('iv' || seed_licensing.account_id::text, 'UTF8')),
    'secret', now() + interval '7 days'
  );
  -- Stripe auto-sync.
  insert into lic.stripe_connections (account_id, livemode) values (seed_licensing.account_id, false);
  insert into lic.stripe_webhook_secrets (account_id, livemode, secret_ciphertext, redacted)
  values (seed_licensing.account_id, false, '\x00', 'whsec_…seed');
  insert into lic.stripe_mappings (account_id, stripe_price_id, policy_id)
  values (seed_licensing.account_id, 'price_seed', v_policy);
  insert into lic.stripe_events (account_id, stripe_event_id, type, payload, outcome)
  values (seed_licensing.account_id, 'evt_seed', 'seed.created', '{}', 'ignored');
  insert into lic.stripe_subscriptions (account_id, subscription_id, customer, status, items, observed_at)
  values (seed_licensing.account_id, 'sub_seed', 'cus_seed', 'active', '[]', now());
  insert into lic.stripe_subscription_licenses (account_id, license_id, subscription_id, item_id, synced_status)
  values (seed_licensing.account_id, v_license, 'sub_seed', 'si_seed', 'active');
  insert into lic.stripe_invoices (account_id, invoice_id) values (seed_licensing.account_id, 'in_seed');
  insert into lic.stripe_charges (account_id, charge_id) values (seed_licensing.account_id, 'ch_seed');
  insert into lic.stripe_disputes (account_id, dispute_id, status, observed_at)
  values (seed_licensing.account_id, 'dp_seed', 'won', now());
  insert into lic.stripe_checkouts (account_id, session_id, mode, payment_status)
  values (seed_licensing.account_id, 'cs_seed', 'payment', 'paid');
  -- Usage metering.
  insert into lic.meters (account_id, code, name, aggregation) values (seed_licensing.account_id, 'seed', 'Seed', 'sum')
  returning id into v_meter;
  insert into lic.metering_events (account_id, id, meter_id, license_id, quantity, occurred_at)
  values (seed_licensing.account_id, 'seed', v_meter, v_license, 1, now());
  insert into lic.metering_rollups (
    account_id, meter_id, hour, agent_id, license_id, subject_key, event_count, quantity_sum, quantity_max,
    latest_quantity, latest_at
  )
  values (seed_licensing.account_id, v_meter, date_trunc('hour', now()), private.uuid_v7(), v_license, '', 1, 1, 1, 1, now());
  insert into lic.metering_rollup_values (account_id, meter_id, hour, agent_id, license_id, subject_key, value)
  values (seed_licensing.account_id, v_meter, date_trunc('hour', now()), private.uuid_v7(), v_license, '', 'seed');
  insert into lic.budgets (account_id, meter_id, license_id, period, "limit")
  values (seed_licensing.account_id, v_meter, v_license, 'month', 10)
  returning id into v_budget;
  insert into lic.budget_usage (account_id, budget_id, period_start)
  values (seed_licensing.account_id, v_budget, date_trunc('month', now()));
  -- Outbound webhooks: an endpoint made after the seed event, so the
  -- delivery of that event is made here rather than by the fan-out.
  insert into lic.webhook_endpoints (account_id, url, secret_ciphertext)
  values (seed_licensing.account_id, 'https://example.com/seed', '\x00')
  returning id into v_endpoint;
  insert into lic.webhook_deliveries (account_id, endpoint_id, event_id, event_type, status)
  select seed_licensing.account_id, v_endpoint, e.id, e.type, 'succeeded'
  from lic.events as e
  where e.account_id = seed_licensing.account_id and e.type = 'seed.created'
  returning id into v_delivery;
  insert into lic.webhook_attempts (account_id, delivery_id, attempt, started_at, status_code)
  values (seed_licensing.account_id, v_delivery, 1, now(), 200);
  -- The portal: branding, a sign-in token and a session of the seed customer.
  insert into lic.portal_settings (account_id, product_name) values (seed_licensing.account_id, 'Seed');
  insert into lic.portal_login_tokens (account_id, token_hash, customer_id, email, ip_hash, created_at, expires_at)
  values (
    seed_licensing.account_id, sha256(convert_to('token ' || seed_licensing.account_id::text, 'UTF8')), v_customer,
    'seed@example.com', sha256('\x00'::bytea), now(), now() + interval '15 minutes'
  );
  insert into lic.portal_login_requests (account_id, ip_hash) values (seed_licensing.account_id, sha256('\x00'::bytea));
  insert into lic.portal_sessions (account_id, session_hash, customer_id, email, created_at, last_seen_at, expires_at)
  values (
    seed_licensing.account_id, sha256(convert_to('session ' || seed_licensing.account_id::text, 'UTF8')), v_customer,
    'seed@example.com', now(), now(), now() + interval '12 hours'
  );
  -- License files: a signing key.
  insert into lic.signing_keys (account_id, public_key, private_key_ciphertext)
  values (seed_licensing.account_id, decode(repeat('00', 32), 'hex'), '\x00');
end;
$$;
comment on function tests.seed_licensing(uuid) is
'One row in each licensing table for the account (as the superuser, bypassing the api).';

-- Ids and secrets remembered by name, and events counted as the superuser
-- (the machines, seats, agents and events tests use them; each file's rows
-- vanish with its rollback).
create table tests.ids (name text primary key, id uuid not null);
create function tests.remember(name text, id uuid)
returns uuid
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into tests.ids (name, id) values (remember.name, remember.id) returning id;
$$;
create function tests.id(name text)
returns uuid
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select i.id from tests.ids as i where i.name = id.name;
$$;
create function tests.event_count(type text, object jsonb)
returns integer
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select count(*)::integer from lic.events as e where e.type = event_count.type and e.object @> event_count.object;
$$;
create table tests.secrets (name text primary key, secret text not null);
create function tests.remember_secret(name text, secret text)
returns text
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into tests.secrets (name, secret) values (remember_secret.name, remember_secret.secret) returning secret;
$$;
create function tests.secret(name text)
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.secret from tests.secrets as s where s.name = secret.name;
$$;
grant execute on function
tests.remember(text, uuid), tests.id(text), tests.event_count(text, jsonb),
tests.remember_secret(text, text), tests.secret(text)
to lic_app, lic_web;

-- ---------------------------------------------------------------------------
-- Stripe sync helpers (410_stripe_sync.sql). Payload builders in Stripe's
-- shapes (basil and later by default, pre-basil on request; see
-- /work/shared/reference/stripe-webhooks.md §2), and the calls the web layer
-- makes. Times are offsets in seconds from a base an hour before now(), so
-- events are in the past and periods are current:
--   tests.stripe_epoch(at), tests.stripe_time(at)   the base plus at seconds;
--   tests.stripe_event(type, object, at, id, ...)   an event envelope;
--   tests.stripe_subscription(id, customer, status, items, ...)
--                                                   items: [{id, price, product,
--                                                   quantity, period_end}];
--   tests.stripe_invoice(id, subscription, customer, at, period_ends, ...);
--   tests.stripe_apply(account, event, livemode)    service.apply_stripe_event as
--                                                   lic_web, then back to the
--                                                   superuser with no context;
--   tests.stripe_refetch(account, event id, object) service.apply_stripe_refetch, the same way;
--   tests.stripe_map(account, price, product, policy code)   a mapping, as the superuser;
--   tests.stripe_license(subscription, n, account)  the nth license (by id) of a subscription;
--   tests.stripe_license_count(subscription, account);
--   tests.stripe_checkout_license(session, account) the license of a one-off Checkout;
--   tests.stripe_outcome(account, event id)         the ledger row's outcome;
--   tests.stripe_state(subscription, n, account)    what Stripe decides on that license, as jsonb.
-- The readers run as the superuser (call tests.clear_context() first).
create function tests.stripe_epoch(at integer default 0)
returns bigint
language sql
stable
as $$
  select floor(extract(epoch from now()))::bigint - 3600 + at;
$$;

create function tests.stripe_time(at integer default 0)
returns timestamptz
language sql
stable
as $$
  select pg_catalog.to_timestamp(tests.stripe_epoch(at));
$$;

create function tests.stripe_event(
  type text,
  object jsonb,
  at integer default 0,
  id text default null,
  livemode boolean default false,
  api_version text default '2025-03-31.basil'
)
returns jsonb
language sql
volatile
as $$
  select jsonb_build_object(
    'id', coalesce(id, 'evt_' || replace(gen_random_uuid()::text, '-', '')),
    'object', 'event',
    'api_version', api_version,
    'created', tests.stripe_epoch(at),
    'data', jsonb_build_object('object', object),
    'livemode', livemode,
    'pending_webhooks', 1,
    'request', jsonb_build_object('id', null, 'idempotency_key', null),
    'type', type
  );
$$;

create function tests.stripe_subscription(
  id text,
  customer text,
  status text,
  items jsonb,
  period_end integer default 2592000,
  basil boolean default true,
  extra jsonb default '{}'
)
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'id', id,
    'object', 'subscription',
    'customer', customer,
    'status', status,
    'livemode', false,
    'cancel_at', null,
    'cancel_at_period_end', false,
    'pause_collection', null,
    'metadata', '{}'::jsonb,
    'items', jsonb_build_object(
      'object', 'list',
      'has_more', false,
      'data', coalesce((
        select jsonb_agg(
          jsonb_build_object(
            'id', i.item ->> 'id',
            'object', 'subscription_item',
            'price', jsonb_build_object('id', i.item ->> 'price', 'object', 'price', 'product', i.item ->> 'product'),
            'quantity', coalesce(i.item -> 'quantity', '1'::jsonb),
            'subscription', id
          )
          || case when basil then jsonb_build_object(
            'current_period_end', tests.stripe_epoch(coalesce((i.item ->> 'period_end')::integer, period_end))
          ) else '{}'::jsonb end
          order by i.n
        )
        from jsonb_array_elements(items) with ordinality as i (item, n)
      ), '[]'::jsonb)
    )
  )
  || case when basil then '{}'::jsonb
    else jsonb_build_object('current_period_end', tests.stripe_epoch(period_end)) end
  || extra;
$$;

create function tests.stripe_invoice(
  id text,
  subscription text,
  customer text,
  at integer default 0,
  period_ends integer[] default '{2592000}',
  amount_paid integer default 1500,
  basil boolean default true,
  extra jsonb default '{}'
)
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'id', id,
    'object', 'invoice',
    'customer', customer,
    'created', tests.stripe_epoch(at),
    'billing_reason', 'subscription_cycle',
    'amount_paid', amount_paid,
    'attempt_count', 1,
    'lines', jsonb_build_object(
      'object', 'list',
      'has_more', false,
      'data', coalesce((
        select jsonb_agg(
          jsonb_build_object(
            'id', 'il_' || replace(gen_random_uuid()::text, '-', ''),
            'object', 'line_item',
            'period', jsonb_build_object('start', tests.stripe_epoch(at), 'end', tests.stripe_epoch(e.period_end))
          )
          || case when basil then jsonb_build_object(
            'parent', jsonb_build_object(
              'type', 'subscription_item_details',
              'subscription_item_details', jsonb_build_object('subscription', subscription, 'proration', false)
            )
          ) else jsonb_build_object('subscription', subscription) end
          order by e.n
        )
        from unnest(period_ends) with ordinality as e (period_end, n)
      ), '[]'::jsonb)
    )
  )
  || case when basil then jsonb_build_object(
    'parent', jsonb_build_object(
      'type', 'subscription_details',
      'subscription_details', jsonb_build_object('subscription', subscription, 'metadata', '{}'::jsonb)
    )
  ) else jsonb_build_object('subscription', subscription) end
  || extra;
$$;

create function tests.stripe_apply(account text, event jsonb, livemode boolean default false)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_account_id uuid := tests.account_id(account);
  v_result jsonb;
begin
  perform pg_catalog.set_config('role', 'lic_web', true);
  v_result := service.apply_stripe_event(v_account_id, event, livemode);
  perform tests.clear_context();
  return v_result;
end;
$$;

create function tests.stripe_refetch(account text, stripe_event_id text, object jsonb)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_account_id uuid := tests.account_id(account);
  v_result jsonb;
begin
  perform pg_catalog.set_config('role', 'lic_web', true);
  v_result := service.apply_stripe_refetch(v_account_id, stripe_event_id, object);
  perform tests.clear_context();
  return v_result;
end;
$$;

create function tests.stripe_map(account text, price text, product text, policy_code text)
returns uuid
language sql
volatile
as $$
  insert into lic.stripe_mappings (account_id, stripe_price_id, stripe_product_id, policy_id)
  select p.account_id, price, product, p.id
  from lic.license_policies as p
  where p.account_id = tests.account_id(account) and p.code = policy_code
  returning id;
$$;

create function tests.stripe_license(subscription text, n integer default 1, account text default 'A')
returns api.license
language sql
stable
as $$
  select private.license_view(l)
  from lic.licenses as l
  where l.account_id = tests.account_id(account) and l.stripe_subscription_id = subscription
  order by l.id
  offset n - 1
  limit 1;
$$;

create function tests.stripe_license_count(subscription text, account text default 'A')
returns integer
language sql
stable
as $$
  select count(*)::integer
  from lic.licenses as l
  where l.account_id = tests.account_id(account) and l.stripe_subscription_id = subscription;
$$;

create function tests.stripe_checkout_license(session text, account text default 'A')
returns api.license
language sql
stable
as $$
  select private.license_view(l)
  from lic.stripe_checkouts as c
  inner join lic.licenses as l on c.account_id = l.account_id and c.license_id = l.id
  where c.account_id = tests.account_id(account) and c.session_id = session;
$$;

create function tests.stripe_outcome(account text, stripe_event_id text)
returns text
language sql
stable
as $$
  select e.outcome
  from lic.stripe_events as e
  where e.account_id = tests.account_id(account) and e.stripe_event_id = stripe_outcome.stripe_event_id;
$$;

create function tests.stripe_state(subscription text, n integer default 1, account text default 'A')
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'status', l.status,
    'effective_status', l.effective_status,
    'policy', l.policy_code,
    'seats', l.seats,
    'expires_at', l.expires_at,
    'paid_through', l.paid_through,
    'grace_ends_at', l.grace_ends_at,
    'disputed_at', l.disputed_at
  )
  from tests.stripe_license(subscription, n, account) as l
  where l.id is not null;
$$;

-- The clock helpers are called while acting as a lic_* role too.
grant execute on function tests.stripe_epoch(integer), tests.stripe_time(integer)
to lic_app, lic_web, lic_definer, lic_maint, lic_worker, lic_reporting;
-- End of the Stripe sync helpers.
