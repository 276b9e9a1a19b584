-- Stripe auto-sync: the tenant's connection (per mode), its price/product ->
-- license policy map, the ledger of every event Stripe delivered, and the
-- facts those events carry. Licenses are derived from the facts
-- (functions/70_stripe_sync.sql), never from arrival order: each fact merges
-- monotonically (a max, a min, a terminal state, a newest snapshot), so any
-- order of the same events leaves the same facts and the same current
-- licenses (docs/stripe.md says what an order can still change).

-- What Stripe decides on a license, shown on it.
alter table lic.licenses
-- Seats bought (the subscription item's quantity); null: the policy's max_users.
add column seats integer check (seats > 0),
-- The latest end of a paid period (a max over paid invoices, never a sum).
add column paid_through timestamptz,
-- Set while a dispute on its payment is open (validation: DISPUTED).
add column disputed_at timestamptz,
add column stripe_subscription_id text check (stripe_subscription_id ~ '^sub_[A-Za-z0-9]+$');

-- The grace sweep runs across tenants.
create index licenses__grace_ends_at_idx on lic.licenses (grace_ends_at) where status = 'past_due';

create index licenses__account_id_stripe_subscription_id_idx
on lic.licenses (account_id, stripe_subscription_id)
where stripe_subscription_id is not null;

alter type api.license
add attribute seats integer,
add attribute paid_through timestamptz,
add attribute disputed_at timestamptz,
add attribute stripe_subscription_id text;

-- Test and live are kept apart: one connection per mode. The API key and the
-- webhook signing secrets are encrypted by the application (AES-GCM, its key
-- never reaches the database); the database keeps ciphertext and a redacted
-- form to show.
create table lic.stripe_connections (
  account_id uuid not null references lic.accounts (account_id),
  livemode boolean not null,
  -- Null when the tenant pasted a signing secret for an endpoint it made itself.
  api_key_ciphertext bytea,
  api_key_redacted text check (length(api_key_redacted) <= 40),
  webhook_endpoint_id text check (webhook_endpoint_id ~ '^we_[A-Za-z0-9]+$'),
  -- Where the Stripe Customer Portal sends the customer back.
  portal_return_url text check (portal_return_url ~ '^https?://' and length(portal_return_url) <= 2000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, livemode),
  check ((api_key_ciphertext is null) = (api_key_redacted is null))
);

-- Several secrets may verify at once: a rolled secret stays valid until
-- expires_at (Stripe keeps an old one up to 24 hours).
create table lic.stripe_webhook_secrets (
  account_id uuid not null,
  id uuid not null default private.uuid_v7(),
  livemode boolean not null,
  secret_ciphertext bytea not null,
  redacted text not null check (length(redacted) <= 40),
  expires_at timestamptz,
  created_at timestamptz not null default now(),
  primary key (account_id, id),
  foreign key (account_id, livemode) references lic.stripe_connections (account_id, livemode) on delete cascade
);

-- A price's mapping beats its product's.
create table lic.stripe_mappings (
  account_id uuid not null,
  id uuid not null default private.uuid_v7(),
  stripe_price_id text check (stripe_price_id ~ '^price_[A-Za-z0-9]+$'),
  -- Product ids may be chosen by the merchant: any id without spaces.
  stripe_product_id text check (stripe_product_id ~ '^[A-Za-z0-9_-]{1,200}$'),
  policy_id uuid not null,
  created_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, stripe_price_id),
  unique (account_id, stripe_product_id),
  foreign key (account_id, policy_id) references lic.license_policies (account_id, id),
  check (num_nonnulls(stripe_price_id, stripe_product_id) = 1)
);

-- The ledger: every delivery once per (account, Stripe event id), with what
-- it did. Recorded in the transaction that applies it, so an event exists
-- here exactly when its effect committed.
create table lic.stripe_events (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  -- Null only for a signed body that is not an event (outcome invalid).
  stripe_event_id text check (length(stripe_event_id) between 1 and 255),
  type text check (length(type) <= 255),
  livemode boolean,
  -- The mode of the signing secret that verified it (null: not given).
  verified_livemode boolean,
  -- The event's own created (whole seconds), or null when missing.
  stripe_created_at timestamptz,
  api_version text check (length(api_version) <= 100),
  -- The data.object id, and the subscription it concerns once known.
  object_id text check (length(object_id) <= 255),
  subscription_id text,
  payload jsonb not null,
  outcome text not null
  check (outcome in ('applied', 'stale', 'ignored', 'parked', 'needs_refetch', 'failed', 'invalid')),
  detail text,
  received_at timestamptz not null default now(),
  processed_at timestamptz not null default now(),
  refetched_at timestamptz,
  primary key (account_id, id),
  unique (account_id, stripe_event_id)
);

create index stripe_events__account_id_outcome_id_idx on lic.stripe_events (account_id, outcome, id);
create index stripe_events__account_id_type_id_idx on lic.stripe_events (account_id, type, id);
create index stripe_events__account_id_subscription_id_idx on lic.stripe_events (account_id, subscription_id)
where subscription_id is not null;

-- The newest snapshot of each subscription. observed_at is the event's
-- created (or the time of a fetch from Stripe); canceled and
-- incomplete_expired are terminal and never replaced.
create table lic.stripe_subscriptions (
  account_id uuid not null references lic.accounts (account_id),
  subscription_id text not null check (subscription_id ~ '^sub_[A-Za-z0-9]+$'),
  livemode boolean,
  customer text not null,
  status text not null,
  -- [{id, price, product, quantity, period_end}], in Stripe's order.
  items jsonb not null check (jsonb_typeof(items) = 'array'),
  period_end timestamptz,
  -- The scheduled end: cancel_at, else the period end when cancel_at_period_end.
  ends_at timestamptz,
  -- When it became past_due (a grace period's start when no failure is known).
  past_due_since timestamptz,
  metadata jsonb not null default '{}',
  observed_at timestamptz not null,
  observed_event_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, subscription_id)
);

create index stripe_subscriptions__account_id_customer_idx on lic.stripe_subscriptions (account_id, customer);

-- Which license each subscription item gave. A removed item keeps its row
-- (its license is canceled), so a late event never makes a second license.
create table lic.stripe_subscription_licenses (
  account_id uuid not null,
  license_id uuid not null,
  subscription_id text not null,
  item_id text not null,
  -- The status the last sync set: a license changes only when Stripe's facts
  -- change what it should be, so a manual suspension or the grace sweep
  -- holds until then.
  synced_status text not null,
  primary key (account_id, license_id),
  unique (account_id, subscription_id, item_id),
  foreign key (account_id, license_id) references lic.licenses (account_id, id)
);

-- Invoices: paid is a fact that never goes away (a late failure cannot undo
-- it); the paid period end is a max; failures keep the first failure and the
-- highest attempt.
create table lic.stripe_invoices (
  account_id uuid not null references lic.accounts (account_id),
  invoice_id text not null check (length(invoice_id) between 1 and 255),
  subscription_id text,
  customer text,
  invoice_created_at timestamptz,
  billing_reason text,
  paid_at timestamptz,
  period_end timestamptz,
  first_failed_at timestamptz,
  attempt_count integer,
  charge_id text,
  payment_intent_id text,
  primary key (account_id, invoice_id)
);

create index stripe_invoices__account_id_subscription_id_idx on lic.stripe_invoices (account_id, subscription_id);
create index stripe_invoices__account_id_payment_intent_id_idx on lic.stripe_invoices (account_id, payment_intent_id)
where payment_intent_id is not null;
create index stripe_invoices__account_id_charge_id_idx on lic.stripe_invoices (account_id, charge_id)
where charge_id is not null;

-- Charges: refunds are cumulative on the charge, so the largest amount seen wins.
create table lic.stripe_charges (
  account_id uuid not null references lic.accounts (account_id),
  charge_id text not null check (length(charge_id) between 1 and 255),
  payment_intent_id text,
  invoice_id text,
  customer text,
  amount bigint,
  amount_refunded bigint not null default 0,
  refunded boolean not null default false,
  primary key (account_id, charge_id)
);

create index stripe_charges__account_id_payment_intent_id_idx on lic.stripe_charges (account_id, payment_intent_id)
where payment_intent_id is not null;

-- Disputes: a closed dispute never reopens.
create table lic.stripe_disputes (
  account_id uuid not null references lic.accounts (account_id),
  dispute_id text not null check (length(dispute_id) between 1 and 255),
  charge_id text,
  payment_intent_id text,
  status text not null,
  observed_at timestamptz not null,
  primary key (account_id, dispute_id)
);

create index stripe_disputes__account_id_charge_id_idx on lic.stripe_disputes (account_id, charge_id);

-- Checkout sessions: the only place Stripe names the tenant's own user
-- (client_reference_id) and, for one-off payments, what was bought.
create table lic.stripe_checkouts (
  account_id uuid not null references lic.accounts (account_id),
  session_id text not null check (length(session_id) between 1 and 255),
  livemode boolean,
  mode text not null,
  customer text,
  subscription_id text,
  payment_intent_id text,
  client_reference_id text,
  email text,
  -- paid, unpaid, no_payment_required; failed once async payment failed (terminal).
  payment_status text not null,
  -- What a one-off payment bought: [{price, product, quantity}], null until known.
  line_items jsonb,
  -- metadata.licentric_policy: a policy code chosen at checkout.
  policy_code text,
  -- The session's own created: a one-off license's expiry counts from it.
  session_created_at timestamptz,
  license_id uuid,
  -- As lic.stripe_subscription_licenses.synced_status.
  synced_status text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, session_id),
  foreign key (account_id, license_id) references lic.licenses (account_id, id)
);

create index stripe_checkouts__account_id_subscription_id_idx on lic.stripe_checkouts (account_id, subscription_id)
where subscription_id is not null;
create index stripe_checkouts__account_id_customer_idx on lic.stripe_checkouts (account_id, customer)
where customer is not null;
create index stripe_checkouts__account_id_payment_intent_id_idx on lic.stripe_checkouts (
  account_id, payment_intent_id
)
where payment_intent_id is not null;

grant select, insert, update, delete on
lic.stripe_connections, lic.stripe_webhook_secrets, lic.stripe_mappings, lic.stripe_subscriptions,
lic.stripe_subscription_licenses, lic.stripe_invoices, lic.stripe_charges, lic.stripe_disputes,
lic.stripe_checkouts
to lic_definer;
grant select, insert, update on lic.stripe_events to lic_definer;
