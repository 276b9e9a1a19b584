-- Accounts (tenants). Creating one is an operator action (`licentric accounts
-- create`), not an API call, so it lives in private where no login role reaches.

create or replace function private.create_account(name text, plan text default 'free')
returns table (account_id uuid, secret_key text)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.uuid_v7();
begin
  if not exists (select from lic.tenant_plans as p where p.code = create_account.plan) then
    raise exception using errcode = 'LINVL', column = 'plan',
      message = format('unknown plan %L; expected free, starter, growth or enterprise', create_account.plan);
  end if;
  -- The account is new, so this function sets its own context (RLS checks
  -- the insert against it) before writing.
  perform private.set_context(v_account_id, 'secret');
  insert into lic.accounts (account_id, name, plan)
  values (v_account_id, create_account.name, create_account.plan);
  return query
  select v_account_id, (private.issue_api_key(v_account_id, 'secret', 'default')).secret;
end;
$$;
comment on function private.create_account(text, text) is
'Create a tenant account and its first secret key. Operator only. Errors: LINVL (422).';

create or replace function private.set_account_status(account_id uuid, status text, reason text default null)
returns text
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_before text;
begin
  if set_account_status.status is null or set_account_status.status not in ('active', 'suspended') then
    raise exception using errcode = 'LINVL', column = 'status', message = 'status must be active or suspended';
  end if;
  if set_account_status.status = 'active' and reason is not null then
    raise exception using errcode = 'LINVL', column = 'reason', message = 'only a suspension takes a reason';
  end if;
  -- Its own context, as private.create_account does: RLS checks the update.
  perform private.set_context(set_account_status.account_id, 'secret');
  select a.status into v_before from lic.accounts as a where a.account_id = set_account_status.account_id for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'account_id', message = 'account not found';
  end if;
  update lic.accounts as a
  set
    status = set_account_status.status,
    status_reason = set_account_status.reason,
    status_changed_at = case when v_before = set_account_status.status then a.status_changed_at else now() end,
    updated_at = now()
  where a.account_id = set_account_status.account_id;
  return v_before;
end;
$$;
comment on function private.set_account_status(uuid, text, text) is
'Suspend (with an optional reason) or reactivate a tenant account; answers its status before. A suspended account '
'records no usage. Operator only. Errors: LINVL (422), LNTFD (404).';

create or replace function private.require_active_account(account_id uuid)
returns void
language plpgsql
stable
as $$
begin
  if exists (
    select from lic.accounts as a where a.account_id = require_active_account.account_id and a.status <> 'active'
  ) then
    raise exception using errcode = 'LACCT', message = 'this account is suspended: it cannot record usage';
  end if;
end;
$$;
comment on function private.require_active_account(uuid) is
'Raise LACCT when the account is not active (suspended by the operator).';

create or replace function api.get_account()
returns api.account
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_account api.account;
begin
  select
    a.account_id,
    a.name,
    a.plan,
    jsonb_build_object(
      'active_licenses', coalesce(a.max_active_licenses, p.max_active_licenses),
      'agents', coalesce(a.max_agents, p.max_agents),
      'webhook_endpoints', coalesce(a.max_webhook_endpoints, p.max_webhook_endpoints),
      'custom_branding', p.custom_branding,
      'embeddable_analytics', p.embeddable_analytics
    ),
    jsonb_build_object(
      'active_licenses', a.active_licenses,
      'agents', a.active_agents,
      'webhook_endpoints', a.webhook_endpoints,
      'api_keys', (
        select count(*) from lic.api_keys as k
        where k.revoked_at is null and (k.expires_at is null or k.expires_at > now())
      )
    ),
    a.created_at,
    a.status,
    a.status_reason
  into v_account
  from lic.accounts as a
  join lic.tenant_plans as p on p.code = a.plan
  where a.account_id = v_account_id;
  return v_account;
end;
$$;
comment on function api.get_account() is
'The current account: plan, its limits (null = unlimited), current usage counts, and its status (active, or '
'suspended by the operator, with a reason).';

create or replace function api.update_account(name text)
returns api.account
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_before text;
begin
  if update_account.name is null or length(btrim(update_account.name)) not between 1 and 200
    or update_account.name ~ '[[:cntrl:]]' then
    raise exception using errcode = 'LINVL', column = 'name',
      message = 'name must be 1-200 characters, without control characters';
  end if;
  select a.name into v_before from lic.accounts as a where a.account_id = v_account_id for no key update;
  if v_before is distinct from btrim(update_account.name) then
    update lic.accounts as a
    set name = btrim(update_account.name), updated_at = now()
    where a.account_id = v_account_id;
    perform private.emit_event(
      v_account_id, 'account.updated',
      jsonb_build_object('object', 'account', 'id', v_account_id, 'name', btrim(update_account.name)),
      jsonb_build_object('name', v_before)
    );
  end if;
  return api.get_account();
end;
$$;
comment on function api.update_account(text) is
'Rename the account (1-200 characters, trimmed; what the console and the portal''s mail show). Emits '
'account.updated (the outbox and audit log only) when the name changed. Members: admin or above. Errors: LINVL (422).';
