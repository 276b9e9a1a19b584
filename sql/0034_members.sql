-- Account members and the tenant console's sign-in (issue 13, decisions 65-67,
-- functions/88_members.sql). A member is a person of the tenant with a role;
-- they sign in by magic link, like portal customers, but arrive with an
-- email and no account: the sign-in tables below are found by what the
-- visitor brings (an address, a token or session hash), not by account, so
-- they live in private beside private.portal_slugs, where no login role
-- reaches, and hold no tenant data beyond which account a member is of.

create table lic.members (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  -- Lowercased: one address is one member of an account.
  email text not null check (email = lower(email) and length(email) <= 320 and email ~ '^[^@\s]+@[^@\s]+$'),
  name text check (length(name) between 1 and 200),
  role text not null check (role in ('owner', 'admin', 'developer', 'viewer')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (account_id, id),
  unique (account_id, email)
);

create index members__account_id_role_idx on lic.members (account_id, role);

-- An invitation to join as a role, accepted through a link whose token
-- (lic_iv_, made like an API key: it names its account) is shown once and
-- stored as its sha256. Pending until accepted, revoked or expired; one
-- pending invitation per address.
create table lic.member_invitations (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  email text not null check (email = lower(email) and length(email) <= 320 and email ~ '^[^@\s]+@[^@\s]+$'),
  role text not null check (role in ('owner', 'admin', 'developer', 'viewer')),
  token_hash bytea not null check (octet_length(token_hash) = 32),
  -- Who invited: a member, or null for a key (actor_kind says which).
  invited_by_kind text not null,
  invited_by_id uuid,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  accepted_at timestamptz,
  member_id uuid,
  revoked_at timestamptz,
  primary key (account_id, id),
  unique (account_id, token_hash),
  check (accepted_at is null or revoked_at is null)
);

create unique index member_invitations__account_id_email_idx on lic.member_invitations (account_id, email)
where accepted_at is null and revoked_at is null;

-- The member directory: which accounts an address is a member of, kept by a
-- trigger on lic.members. Sign-in reads it by email (an equality on its
-- first key column, decision 66).
create table private.member_emails (
  email text not null,
  account_id uuid not null,
  member_id uuid not null,
  primary key (email, account_id)
);

-- Console sign-in links: sha256 of the link's 32 random bytes, single use,
-- 15 minutes, for an address (whatever accounts it is a member of when it
-- is confirmed). Kept a day for the limits, as the portal's.
create table private.console_login_tokens (
  token_hash bytea primary key check (octet_length(token_hash) = 32),
  email text not null check (email = lower(email) and length(email) <= 320),
  ip_hash bytea not null check (octet_length(ip_hash) = 32),
  created_at timestamptz not null,
  expires_at timestamptz not null,
  used_at timestamptz,
  revoked_at timestamptz,
  check (used_at is null or revoked_at is null)
);

create index console_login_tokens__email_created_at_idx on private.console_login_tokens (email, created_at);
create index console_login_tokens__created_at_idx on private.console_login_tokens (created_at);

-- Every console sign-in request, known address or not: the per-client limit.
create table private.console_login_requests (
  id uuid primary key default private.uuid_v7(),
  ip_hash bytea not null check (octet_length(ip_hash) = 32),
  requested_at timestamptz not null
);

create index console_login_requests__ip_hash_requested_at_idx
on private.console_login_requests (ip_hash, requested_at);
create index console_login_requests__requested_at_idx on private.console_login_requests (requested_at);

-- Console sessions, one membership each: found by the cookie's hash; idle
-- timeout 30 minutes from last_seen_at, absolute at expires_at.
create table private.console_sessions (
  session_hash bytea primary key check (octet_length(session_hash) = 32),
  id uuid not null unique default private.uuid_v7(),
  account_id uuid not null,
  member_id uuid not null,
  created_at timestamptz not null,
  last_seen_at timestamptz not null,
  expires_at timestamptz not null
);

create index console_sessions__account_id_member_id_idx on private.console_sessions (account_id, member_id);
create index console_sessions__last_seen_at_idx on private.console_sessions (last_seen_at);

grant select, insert, update, delete on lic.members, lic.member_invitations to lic_definer;
grant select, insert, update, delete on
private.member_emails, private.console_login_tokens, private.console_login_requests, private.console_sessions
to lic_definer;

-- Who made a change: the principal of the context that emitted the event
-- (kind secret, publishable, agent, member, stripe, customer; id the key,
-- agent, member or portal session), null for the worker's own sweeps.
alter table lic.events
add column actor_kind text,
add column actor_id uuid;

create index events__account_id_actor_id_id_idx on lic.events (account_id, actor_id, id) where actor_id is not null;

-- The contract.
create type api.member as (
  id uuid,
  email text,
  name text,
  role text,
  created_at timestamptz,
  updated_at timestamptz
);
comment on type api.member is
'A member of the account: a person who signs in to the console, with a role (owner, admin, developer, viewer).';

create type api.member_invitation as (
  id uuid,
  email text,
  role text,
  status text,
  invited_by_kind text,
  invited_by_id uuid,
  created_at timestamptz,
  expires_at timestamptz,
  accepted_at timestamptz,
  member_id uuid,
  revoked_at timestamptz,
  token text
);
comment on type api.member_invitation is
'An invitation to join the account as a role: status pending, accepted, revoked or expired; who invited (a member '
'or a key: invited_by_kind and its id); token (lic_iv_…) only in the answer that made it, for the link.';

create type api.console_login_request as (
  send boolean,
  reason text,
  email text,
  name text,
  expires_at timestamptz,
  accounts jsonb
);
comment on type api.console_login_request is
'For the web layer only, never shown to the visitor: whether to email the console sign-in link (send), why not '
'(reason: unknown_email, email_rate_limited, ip_rate_limited, global_rate_limited; ok when send), and, when send, '
'to whom (email, name), when the link expires and the accounts the address is a member of '
'([{account_id, account_name, role}]).';

create type api.console_login_peek as (
  usable boolean,
  masked_email text,
  expires_at timestamptz,
  accounts jsonb
);
comment on type api.console_login_peek is
'What the confirm page may show about a console sign-in link: whether it can still sign in, the address masked, '
'and, when usable, the accounts to choose from ([{account_id, account_name, role}]).';

create type api.console_session as (
  session_id uuid,
  account_id uuid,
  account_name text,
  member_id uuid,
  email text,
  name text,
  role text,
  created_at timestamptz,
  last_seen_at timestamptz,
  idle_expires_at timestamptz,
  expires_at timestamptz
);
comment on type api.console_session is
'A signed-in console session: the member (id, email, name, role) of one account, and when the session ends: '
'idle_expires_at unless used again, expires_at at the latest.';

create type api.member_invitation_peek as (
  usable boolean,
  masked_email text,
  account_name text,
  role text,
  expires_at timestamptz
);
comment on type api.member_invitation_peek is
'What the page an invitation link opens may show: whether it can still be accepted, the invited address masked, '
'the account''s name and the role.';

create type api.member_session as (
  id uuid,
  created_at timestamptz,
  last_seen_at timestamptz,
  idle_expires_at timestamptz,
  expires_at timestamptz
);
comment on type api.member_session is 'One of the signed-in member''s console sessions.';

create type api.audit_event as (
  id uuid,
  type text,
  created timestamptz,
  actor_kind text,
  actor_id uuid,
  actor_email text,
  data jsonb
);
comment on type api.audit_event is
'An event with who caused it: actor_kind (member, secret, publishable, agent, stripe, customer; null: Licentric '
'itself) and actor_id (the member, key, agent or portal session), with the member''s email when a member did it.';
