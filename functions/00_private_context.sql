-- The tenant context: transaction-local settings written only by
-- api.authenticate and by definer functions that derive the account
-- themselves. An unset or empty setting reads as null, so RLS sees no rows.

create or replace function private.current_account_id()
returns uuid
language sql
stable
parallel safe
as $$
  select nullif(pg_catalog.current_setting('lic.account_id', true), '')::uuid;
$$;
comment on function private.current_account_id() is
'The account of the current transaction, or null when none is set.';

create or replace function private.set_context(account_id uuid, kind text, api_key_id uuid default null)
returns void
language sql
volatile
as $$
  select
    pg_catalog.set_config('lic.account_id', coalesce(account_id::text, ''), true),
    pg_catalog.set_config('lic.key_kind', coalesce(kind, ''), true),
    pg_catalog.set_config('lic.api_key_id', coalesce(api_key_id::text, ''), true);
$$;
comment on function private.set_context(uuid, text, uuid) is
'Set the tenant context for the rest of the current transaction only.';

-- Every api function except api.authenticate starts with this call, so a call
-- without an authenticated account fails loudly instead of seeing nothing, and
-- a publishable key reaches only the functions that say they are client-safe.
create or replace function private.require_account(client_safe boolean default false)
returns uuid
language plpgsql
stable
as $$
declare
  v_account_id uuid := private.current_account_id();
begin
  if v_account_id is null then
    raise exception using
      errcode = 'LAUTH',
      message = 'no authenticated account: call api.authenticate(secret) first in this transaction';
  end if;
  if not client_safe and pg_catalog.current_setting('lic.key_kind', true) is distinct from 'secret' then
    raise exception using
      errcode = 'LDNID',
      message = 'this operation needs a secret key; publishable keys may only validate licenses';
  end if;
  return v_account_id;
end;
$$;
comment on function private.require_account(boolean) is
'The current account; raises LAUTH without one and LDNID for a non-secret key unless client_safe.';
