-- The end-user self-service portal (DESIGN §8, functions/85_portal.sql): the
-- tenant's slug and branding, magic-link login tokens and server-side
-- sessions. Tokens and session ids are made by the web layer and reach the
-- database only as their sha256; nothing here can turn a hash back into a
-- token.

-- The slug directory: the one portal table read across tenants, because a
-- visitor arrives with a slug and no account. It holds only what the portal
-- URL already says (slug -> account) and lives in private, where no login
-- role reaches; lic_definer reads it in private.portal_begin and writes only
-- the current account's row (decision 44).
create table private.portal_slugs (
  slug text primary key check (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
  account_id uuid not null unique references lic.accounts (account_id),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Branding, shown only while the tenant plan has custom_branding.
create table lic.portal_settings (
  account_id uuid primary key references lic.accounts (account_id),
  logo_url text check (logo_url ~ '^https://[^\s"''<>\\]+$' and length(logo_url) <= 2000),
  primary_color text check (primary_color ~ '^#[0-9a-f]{6}$'),
  accent_color text check (accent_color ~ '^#[0-9a-f]{6}$'),
  product_name text check (length(product_name) between 1 and 100),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Magic-link tokens: sha256 of 32 random bytes, single use, 15 minutes. A
-- token is never deleted when superseded (revoked_at), so the rate limits
-- count every token issued; rows older than a day are purged as new ones are
-- issued.
create table lic.portal_login_tokens (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  token_hash bytea not null check (octet_length(token_hash) = 32),
  -- The customer it signs in (the oldest with the address, decision 45).
  customer_id uuid not null,
  -- The address as asked for, lowercased: limits and invalidation go by it.
  email text not null check (email = lower(email) and length(email) <= 320),
  ip_hash bytea not null check (octet_length(ip_hash) = 32),
  created_at timestamptz not null,
  expires_at timestamptz not null,
  used_at timestamptz,
  -- Superseded by a newer token for the same address.
  revoked_at timestamptz,
  primary key (account_id, id),
  unique (account_id, token_hash),
  foreign key (account_id, customer_id) references lic.customers (account_id, id),
  check (used_at is null or revoked_at is null)
);

create index portal_login_tokens__account_id_email_created_at_idx
on lic.portal_login_tokens (account_id, email, created_at);
create index portal_login_tokens__account_id_ip_hash_created_at_idx
on lic.portal_login_tokens (account_id, ip_hash, created_at);
create index portal_login_tokens__account_id_created_at_idx
on lic.portal_login_tokens (account_id, created_at);
create index portal_login_tokens__account_id_customer_id_idx
on lic.portal_login_tokens (account_id, customer_id);

-- Server-side sessions, made only by confirming a token: the web layer
-- makes the session id and passes its sha256, so an id the server never
-- issued matches no row. Idle timeout 30 minutes from last_seen_at,
-- absolute timeout at expires_at (12 hours after created_at).
create table lic.portal_sessions (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  session_hash bytea not null check (octet_length(session_hash) = 32),
  customer_id uuid not null,
  -- The address the token proved, lowercased: the session ends when the
  -- customer's address changes.
  email text not null check (email = lower(email) and length(email) <= 320),
  created_at timestamptz not null,
  last_seen_at timestamptz not null,
  expires_at timestamptz not null,
  primary key (account_id, id),
  unique (account_id, session_hash),
  foreign key (account_id, customer_id) references lic.customers (account_id, id)
);

create index portal_sessions__account_id_last_seen_at_idx on lic.portal_sessions (account_id, last_seen_at);
create index portal_sessions__account_id_customer_id_idx on lic.portal_sessions (account_id, customer_id);

grant select, insert, update, delete on private.portal_slugs to lic_definer;
grant select, insert, update, delete on lic.portal_settings, lic.portal_login_tokens, lic.portal_sessions
to lic_definer;

-- The contract.
create type api.portal_settings as (
  slug text,
  logo_url text,
  primary_color text,
  accent_color text,
  product_name text,
  custom_branding boolean,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.portal_settings is
'The account''s portal: its slug (null: no portal) and branding as stored; custom_branding says whether the '
'tenant plan shows it (free: the default look, whatever is stored).';

create type api.portal_face as (
  slug text,
  account_name text,
  product_name text,
  logo_url text,
  primary_color text,
  accent_color text,
  branded boolean
);
comment on type api.portal_face is
'What a visitor of a portal may see of its account: the account''s name and, when the tenant plan allows '
'custom branding (branded), its product name, logo URL and colours (else null: the default look).';

create type api.portal_login_request as (
  send boolean,
  reason text,
  email text,
  name text,
  expires_at timestamptz,
  portal jsonb
);
comment on type api.portal_login_request is
'For the web layer only, never shown to the visitor: whether to email the link (send), why not (reason: '
'unknown_email, email_rate_limited, ip_rate_limited, account_rate_limited; ok when send), and, when send, to '
'whom (email, name), when the link expires and the portal''s face (api.portal_face as an object).';

create type api.portal_login_peek as (
  usable boolean,
  masked_email text,
  expires_at timestamptz
);
comment on type api.portal_login_peek is
'What the confirm page may show about a link: whether it can still sign in and the address it is for, masked '
'(a***@example.com); null masked_email for a token never issued.';

create type api.portal_session as (
  session_id uuid,
  customer_id uuid,
  email text,
  name text,
  created_at timestamptz,
  last_seen_at timestamptz,
  idle_expires_at timestamptz,
  expires_at timestamptz
);
comment on type api.portal_session is
'A signed-in portal session: the customer (the oldest with the address) with its email and name, when it was '
'last used, and when it ends: idle_expires_at unless used again, expires_at at the latest.';

create type api.portal_license as (
  id uuid,
  key text,
  role text,
  policy_code text,
  policy_name text,
  status text,
  effective_status text,
  expires_at timestamptz,
  grace_ends_at timestamptz,
  paid_through timestamptz,
  renews_at timestamptz,
  cancel_at timestamptz,
  max_machines integer,
  machines integer,
  max_users integer,
  users integer,
  entitlements text [],
  created_at timestamptz
);
comment on type api.portal_license is
'A license as its customer sees it in the portal: role (owner or member), its plan (policy code and name), '
'status and effective_status (past_due within grace_ends_at, overdue after it), expiry, paid_through, the '
'Stripe renewal (renews_at) or scheduled end (cancel_at), machines and seats used against their limits '
'(null: unlimited) and its effective entitlement codes.';

create type api.portal_budget as (
  budget_id uuid,
  license_id uuid,
  agent_id uuid,
  agent_name text,
  meter_code text,
  meter_name text,
  unit text,
  period text,
  "limit" numeric,
  hard boolean,
  used numeric,
  remaining numeric,
  period_start timestamptz,
  period_end timestamptz
);
comment on type api.portal_budget is
'A budget of a license (agent_id null) or of one of its agents, with what the current period used: for the '
'portal''s usage chart.';

create type api.portal_member as (
  license_id uuid,
  customer_id uuid,
  email text,
  name text,
  role text,
  is_you boolean,
  created_at timestamptz
);
comment on type api.portal_member is
'A seat on a license as the portal shows it: the customer''s email and name, owner or member, and whether it is '
'the signed-in customer''s own.';

create type api.portal_billing as (
  stripe_customer_id text,
  livemode boolean,
  session_return_url text,
  api_key_ciphertext bytea
);
comment on type api.portal_billing is
'What the web layer needs to open the Stripe Customer Portal for the signed-in customer: the Stripe customer id '
'(null: no billing button), the mode, where Stripe returns to, and the encrypted API key of that mode (null: '
'none connected).';
