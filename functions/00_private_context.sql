-- The tenant context: transaction-local settings written only through
-- private.set_context, by api.authenticate and by definer functions that
-- derive the account themselves. Any role can write a lic.* setting, so
-- set_context also signs the settings (bound to the transaction's start) and
-- the readers trust only a signed context. An unset, empty or forged context
-- reads as null, so RLS sees no rows and api functions raise LAUTH.
-- A database login bound to an account (lic_tenant_<account hex>, made by
-- `licentric accounts login`, decision 52) needs no key: PostgreSQL has
-- authenticated it, and session_user cannot be changed by a non-superuser.

-- The account a login role is bound to, or null: its name is lic_tenant_
-- followed by the account id in 32 hex digits (decision 52).
-- SQL, so the callers' expressions inline it: it runs in every api call.
create or replace function private.login_account()
returns uuid
language sql
stable
parallel safe
as $$
  select case
    when pg_catalog.length(session_user) = 43 and pg_catalog.starts_with(session_user, 'lic_tenant_')
      then pg_catalog.substr(session_user, 12)::uuid
  end;
$$;
comment on function private.login_account() is
'The account the session''s login role is bound to (lic_tenant_<32 hex>), or null for any other login.';

create or replace function private.context_signature(account_id text, kind text, principal_id text)
returns text
language plpgsql
stable
parallel safe
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_key bytea;
begin
  select k.key into v_key from private.context_signing_keys as k;
  -- sha256(key || sha256(key || message)); the message includes the start of
  -- the transaction (as numeric, whose text no session setting changes), so a
  -- signature read in one transaction is void in the next.
  return pg_catalog.encode(
    pg_catalog.sha256(v_key || pg_catalog.sha256(v_key || pg_catalog.convert_to(
      pg_catalog.jsonb_build_array(account_id, kind, principal_id, extract(epoch from pg_catalog.now())::text)::text,
      'UTF8'
    ))),
    'hex'
  );
end;
$$;
comment on function private.context_signature(text, text, text) is
'The signature of a tenant context (the text of its three settings) for the current transaction.';

create or replace function private.set_context(account_id uuid, kind text, principal_id uuid default null)
returns void
language plpgsql
volatile
as $$
declare
  v_account_id text := coalesce(account_id::text, '');
  v_kind text := coalesce(kind, '');
  v_principal_id text := coalesce(principal_id::text, '');
begin
  perform
    pg_catalog.set_config('lic.account_id', v_account_id, true),
    pg_catalog.set_config('lic.key_kind', v_kind, true),
    pg_catalog.set_config('lic.principal_id', v_principal_id, true),
    pg_catalog.set_config(
      'lic.context_signature', private.context_signature(v_account_id, v_kind, v_principal_id), true
    );
end;
$$;
comment on function private.set_context(uuid, text, uuid) is
'Set (and sign) the tenant context for the rest of the current transaction only.';

create or replace function private.current_context(out account_id uuid, out kind text, out principal_id uuid)
returns record
language plpgsql
stable
parallel safe
as $$
declare
  v_signature text := pg_catalog.current_setting('lic.context_signature', true);
  v_account_id text;
  v_kind text;
  v_principal_id text;
begin
  if v_signature is null or v_signature = '' then
    -- No key in this transaction: a bound login speaks for its account as
    -- a secret key would (no principal: no key or agent made the call).
    account_id := private.login_account();
    kind := case when account_id is not null then 'secret' end;
    return;
  end if;
  v_account_id := pg_catalog.current_setting('lic.account_id', true);
  v_kind := pg_catalog.current_setting('lic.key_kind', true);
  v_principal_id := pg_catalog.current_setting('lic.principal_id', true);
  if v_signature = private.context_signature(v_account_id, v_kind, v_principal_id) then
    account_id := nullif(v_account_id, '')::uuid;
    kind := nullif(v_kind, '');
    principal_id := nullif(v_principal_id, '')::uuid;
  end if;
end;
$$;
comment on function private.current_context() is
'The tenant context of the current transaction if private.set_context wrote it, else the account of a bound '
'login (kind secret), else nulls.';

-- A definer function because lic_reporting's tenant policy calls it: the
-- reporting role may execute it (functions/99_privileges.sql) without USAGE on
-- private or EXECUTE on the signature itself, and learns only its own account.
create or replace function private.current_account_id()
returns uuid
language sql
stable
parallel safe
security definer
set search_path = pg_catalog, pg_temp
as $$
  select (private.current_context()).account_id;
$$;
comment on function private.current_account_id() is
'The account of the current transaction, or null when none is set (or it was not set by private.set_context).';

-- The account the context names, NOT verified: the tenant predicate of
-- lic_definer's row level security. lic_definer reaches rows only inside api
-- functions, and each of them verified this same context on entry
-- (private.require_account), with no caller code running in between; checking
-- the signature again in every query would cost a hash per table reference.
-- Roles that read tables directly (lic_reporting) use the verified
-- private.current_account_id() instead.
create or replace function private.context_account_id()
returns uuid
language sql
stable
parallel safe
as $$
  select coalesce(nullif(pg_catalog.current_setting('lic.account_id', true), '')::uuid, private.login_account());
$$;
comment on function private.context_account_id() is
'The account named by the context (else the bound login''s), unverified: for lic_definer''s RLS only (api '
'functions verify on entry that it is the account they were proved).';

-- Every api function except api.authenticate starts with this call, so a call
-- without an authenticated account fails loudly instead of seeing nothing, and
-- a publishable key or an agent token reaches only the functions that admit
-- its kind: secret (default), publishable (client-safe), agent. A console
-- member (kind member, decision 65) may call what a secret key may, if its
-- role is at least member_role: viewer by default, and every function that
-- writes declares more (a catalog check in 000_structure.sql). The member
-- check runs only for that kind, so the other kinds' path is unchanged.
create or replace function private.require_account(
  kinds text[] default array['secret'],
  member_role text default 'viewer'
)
returns uuid
language plpgsql
stable
as $$
declare
  -- An assignment, not a query over the function: no executor start-up.
  v_context record := private.current_context();
  v_account_id uuid := v_context.account_id;
  v_kind text := v_context.kind;
begin
  if v_account_id is null then
    raise exception using
      errcode = 'LAUTH',
      message = 'no authenticated account: call api.authenticate(secret) first in this transaction';
  end if;
  if v_kind is null or not v_kind = any(kinds) then
    if v_kind = 'member' and 'secret' = any(kinds) then
      perform private.require_member_role(v_account_id, v_context.principal_id, member_role);
    else
      raise exception using
        errcode = 'LDNID',
        message = format('a %s key may not do this; it needs a %s key', v_kind, array_to_string(kinds, ' or '));
    end if;
  end if;
  -- lic_definer's RLS reads the unverified account (context_account_id): a
  -- bound login that wrote another account into lic.account_id would
  -- otherwise be verified as itself and read as the other.
  if private.context_account_id() is distinct from v_account_id then
    raise exception using errcode = 'LAUTH', message = 'the tenant context names another account than was proved';
  end if;
  return v_account_id;
end;
$$;
comment on function private.require_account(text[], text) is
'The current account; raises LAUTH without one and LDNID when the key''s kind is not among kinds (a member: '
'when kinds has secret and its role is below member_role).';
