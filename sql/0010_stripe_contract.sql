-- The contract of the Stripe connection, its price/product map and its event
-- ledger (functions/72_stripe_connection.sql). Keys and signing secrets
-- never leave the database in clear: they arrive encrypted and only their
-- redacted forms are shown.

create type api.stripe_connection as (
  livemode boolean,
  api_key_redacted text,
  webhook_endpoint_id text,
  portal_return_url text,
  secrets jsonb,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.stripe_connection is
'The account''s Stripe connection for one mode (livemode): the redacted API key (null when only a signing secret '
'was pasted), the webhook endpoint Licentric made in Stripe (null for one made by hand), where the Customer '
'Portal returns to, and the signing secrets still valid: [{id, redacted, expires_at, created_at}], newest first '
'(a replaced secret stays valid until expires_at).';

create type api.stripe_mapping as (
  id uuid,
  stripe_price_id text,
  stripe_product_id text,
  policy_id uuid,
  policy_code text,
  reapplied integer,
  created_at timestamptz
);
comment on type api.stripe_mapping is
'A Stripe price or product (exactly one) mapped to a license policy; a price''s mapping beats its product''s. '
'reapplied: how many parked events creating it applied (null when listed).';

create type api.stripe_event as (
  id uuid,
  stripe_event_id text,
  type text,
  livemode boolean,
  stripe_created_at timestamptz,
  api_version text,
  object_id text,
  subscription_id text,
  outcome text,
  detail text,
  received_at timestamptz,
  processed_at timestamptz,
  refetched_at timestamptz,
  payload jsonb
);
comment on type api.stripe_event is
'One Stripe event as recorded in the account''s ledger (id is Licentric''s, stripe_event_id Stripe''s evt_…) with '
'its outcome (applied, stale, ignored, parked, needs_refetch, failed, invalid) and detail; payload (the body '
'Stripe signed) only when one event is read, null in lists.';
