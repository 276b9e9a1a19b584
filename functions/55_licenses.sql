-- Licenses after creation (functions/45_licenses_core.sql): list, get,
-- update, and the state machine. Every state change locks the license row,
-- decides from the license's effective status (so whether the expiry sweep
-- has run changes nothing), and emits its event with the license as it is
-- now and the attributes that changed.
--
--   action   from (effective status)                      to
--   suspend  active, past_due, overdue                    suspended
--   reinstate suspended                                   active (expired if its expiry passed)
--   renew    active, past_due, overdue, expired, suspended  same, expired -> active; expiry extended
--   change_policy  any but canceled                       same (expired -> active if the new expiry is ahead)
--   cancel   any but canceled                             canceled (terminal)

create or replace function private.lock_license(license_id uuid)
returns lic.licenses
language plpgsql
volatile
as $$
declare
  v_license lic.licenses;
begin
  select l.* into v_license from lic.licenses as l where l.id = lock_license.license_id for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  return v_license;
end;
$$;
comment on function private.lock_license(uuid) is
'The license with this id in the current account, locked for update. Errors: LNTFD.';

create or replace function private.license_state(l lic.licenses, at timestamptz default now())
returns text
language sql
immutable
parallel safe
as $$
  -- The state the state machine reasons about: overdue is still past_due.
  select case s.status when 'overdue' then 'past_due' else s.status end
  from (select private.effective_status(l.status, l.expires_at, l.grace_ends_at, at) as status) as s;
$$;
comment on function private.license_state(lic.licenses, timestamptz) is
'A license''s effective status for state changes (overdue counts as past_due).';

create or replace function private.emit_license_event(
  type text,
  before lic.licenses,
  after lic.licenses
)
returns api.license
language plpgsql
volatile
as $$
declare
  v_after api.license := private.license_view(after);
begin
  perform private.emit_event(
    after.account_id, type, to_jsonb(v_after),
    private.previous_attributes(to_jsonb(private.license_view(before)), to_jsonb(v_after))
  );
  return v_after;
end;
$$;
comment on function private.emit_license_event(text, lic.licenses, lic.licenses) is
'Emit a license event (data.object: the license after, previous_attributes: what changed) and return the license.';

create or replace function api.list_licenses(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  status text default null,
  license_policy_id uuid default null,
  customer_id uuid default null,
  expiring_before timestamptz default null
)
returns setof api.license
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
  v_where text := 'l.account_id = $1';
begin
  if status is not null and status not in ('active', 'past_due', 'suspended', 'expired', 'canceled') then
    raise exception using errcode = 'LINVL', column = 'status',
      message = 'status must be one of active, past_due, suspended, expired, canceled';
  end if;
  -- Only the filters given become predicates (fixed text, values as
  -- parameters), so each call is planned for the index it can use:
  -- licenses__account_id_{status,policy_id,customer_id}_idx or
  -- licenses__account_id_expires_at_idx.
  if status is not null then
    v_where := v_where || ' and l.status = $2';
  end if;
  if license_policy_id is not null then
    v_where := v_where || ' and l.policy_id = $3';
  end if;
  if customer_id is not null then
    v_where := v_where || ' and l.customer_id = $4';
  end if;
  if expiring_before is not null then
    v_where := v_where || ' and l.expires_at < $5 and l.expires_at is not null'
      || ' and l.status in (''active'', ''past_due'')';
  end if;
  if ending_before is null then
    if starting_after is not null then
      v_where := v_where || ' and l.id < $6';
    end if;
    return query execute
      'select (private.license_view(l)).* from lic.licenses as l where ' || v_where
      || ' order by l.id desc limit $8'
    using v_account_id, status, license_policy_id, customer_id, expiring_before, starting_after,
      ending_before, v_rows;
  else
    return query execute
      'select (p.license).* from (select private.license_view(l) as license, l.id from lic.licenses as l where '
      || v_where || ' and l.id > $7 order by l.id limit $8) as p order by p.id desc'
    using v_account_id, status, license_policy_id, customer_id, expiring_before, starting_after,
      ending_before, v_rows;
  end if;
end;
$$;
comment on function api.list_licenses(integer, uuid, uuid, text, uuid, uuid, timestamptz) is
'List the account''s licenses newest first, as a keyset page of up to page_limit + 1 rows. Filters: status '
'(the stored status: active, past_due, suspended, expired, canceled; effective_status on each license tells '
'whether an active one has already run out), license_policy_id, customer_id, expiring_before (active or '
'past_due licenses whose expiry comes before that instant, including any already passed and not yet swept). '
'Errors: LINVL (422).';

create or replace function api.get_license(license_id uuid default null, key text default null)
returns api.license
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_license lic.licenses;
begin
  perform private.require_exactly_one(
    array['license_id', 'key'], array[license_id is not null, key is not null]
  );
  if license_id is not null then
    select l.* into v_license from lic.licenses as l
    where l.account_id = v_account_id and l.id = get_license.license_id;
  else
    select l.* into v_license from lic.licenses as l
    where l.account_id = v_account_id and l.key = private.normalize_license_key(get_license.key);
  end if;
  if not found then
    raise exception using errcode = 'LNTFD', column = case when key is null then 'license_id' else 'key' end,
      message = 'license not found';
  end if;
  return private.license_view(v_license);
end;
$$;
comment on function api.get_license(uuid, text) is
'One license of the account, by id or by key (typed in any case, with or without dashes; a malformed key is '
'not found). Errors: LINVL (422) neither or both given, LNTFD (404).';

create or replace function api.update_license(
  license_id uuid,
  metadata jsonb default null,
  expires_at timestamptz default null,
  clear_expiry boolean default false
)
returns api.license
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_before lic.licenses := private.lock_license(license_id);
  v_after lic.licenses;
  v_metadata jsonb := private.write_metadata(v_before.metadata, metadata, merge => true);
  v_expires_at timestamptz := v_before.expires_at;
  v_status text := v_before.status;
begin
  if expires_at is not null and coalesce(clear_expiry, false) then
    raise exception using errcode = 'LINVL', column = 'expires_at',
      message = 'give expires_at or clear_expiry, not both';
  end if;
  if expires_at is not null or coalesce(clear_expiry, false) then
    if v_before.status = 'canceled' then
      raise exception using errcode = 'LSTAT', column = 'expires_at',
        message = 'a canceled license cannot change its expiry';
    end if;
    if expires_at <= now() then
      raise exception using errcode = 'LINVL', column = 'expires_at', message = 'expires_at must be in the future';
    end if;
    -- Renewals add the policy's duration to it: far from the last timestamp PostgreSQL has (294276 AD).
    if expires_at > now() + interval '1000 years' then
      raise exception using errcode = 'LINVL', column = 'expires_at',
        message = 'expires_at must be within 1000 years (clear_expiry: no expiry)';
    end if;
    v_expires_at := update_license.expires_at;
    -- A later expiry brings an expired license back (the plan trigger may
    -- refuse with LPLAN).
    if v_before.status = 'expired' then
      v_status := 'active';
    end if;
  end if;
  update lic.licenses as l
  set
    metadata = v_metadata,
    expires_at = v_expires_at,
    status = v_status,
    updated_at = now()
  where l.account_id = v_account_id and l.id = v_before.id
  returning l.* into v_after;
  return private.emit_license_event('license.updated', v_before, v_after);
end;
$$;
comment on function api.update_license(uuid, jsonb, timestamptz, boolean) is
'Update a license: metadata is merged (a key set to null is removed); expires_at sets a new expiry, in the '
'future and within 1000 years, and '
'clear_expiry makes it perpetual, either bringing an expired license back to active. Emits license.updated. '
'Errors: LNTFD (404), LINVL (422), LSTAT (409) expiry of a canceled license, LPLAN (402) reactivation over the '
'tenant plan.';

create or replace function api.suspend_license(license_id uuid, reason text default null)
returns api.license
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_before lic.licenses := private.lock_license(license_id);
  v_state text := private.license_state(v_before);
  v_after lic.licenses;
begin
  if v_state not in ('active', 'past_due') then
    raise exception using errcode = 'LSTAT',
      message = format('a %s license cannot be suspended; only an active or past_due one can', v_state);
  end if;
  update lic.licenses as l
  set status = 'suspended', suspended_reason = reason, suspended_at = now(), updated_at = now()
  where l.account_id = v_account_id and l.id = v_before.id
  returning l.* into v_after;
  return private.emit_license_event('license.suspended', v_before, v_after);
end;
$$;
comment on function api.suspend_license(uuid, text) is
'Suspend an active or past_due license (it stops validating: SUSPENDED), with an optional reason. Emits '
'license.suspended. Errors: LNTFD (404), LSTAT (409), 23514 (422) reason over 500 characters.';

create or replace function api.reinstate_license(license_id uuid)
returns api.license
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_before lic.licenses := private.lock_license(license_id);
  v_after lic.licenses;
begin
  if v_before.status <> 'suspended' then
    raise exception using errcode = 'LSTAT',
      message = format('a %s license cannot be reinstated; only a suspended one can', v_before.status);
  end if;
  -- The plan usage trigger raises LPLAN when the tenant plan is full.
  update lic.licenses as l
  set
    status = case when l.expires_at <= now() then 'expired' else 'active' end,
    suspended_reason = null,
    suspended_at = null,
    grace_ends_at = null,
    updated_at = now()
  where l.account_id = v_account_id and l.id = v_before.id
  returning l.* into v_after;
  return private.emit_license_event('license.reinstated', v_before, v_after);
end;
$$;
comment on function api.reinstate_license(uuid) is
'Lift a suspension: the license is active again (expired if its expiry passed meanwhile; renew it then). Emits '
'license.reinstated. Errors: LNTFD (404), LSTAT (409) not suspended, LPLAN (402) tenant plan full.';

create or replace function api.renew_license(license_id uuid)
returns api.license
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_before lic.licenses := private.lock_license(license_id);
  v_duration interval;
  v_after lic.licenses;
begin
  if v_before.status = 'canceled' then
    raise exception using errcode = 'LSTAT', message = 'a canceled license cannot be renewed';
  end if;
  select p.duration into v_duration from lic.license_policies as p
  where p.account_id = v_account_id and p.id = v_before.policy_id;
  if v_duration is null then
    raise exception using errcode = 'LSTAT',
      message = 'the license''s policy is perpetual: there is no duration to renew by';
  end if;
  -- From the current expiry while it is ahead (no time is lost by renewing
  -- early), from now once it has passed.
  update lic.licenses as l
  set
    expires_at = greatest(now(), coalesce(l.expires_at, now())) + v_duration,
    status = case l.status when 'expired' then 'active' else l.status end,
    updated_at = now()
  where l.account_id = v_account_id and l.id = v_before.id
  returning l.* into v_after;
  return private.emit_license_event('license.renewed', v_before, v_after);
end;
$$;
comment on function api.renew_license(uuid) is
'Extend a license''s expiry by its policy''s duration, from the current expiry or from now if that has passed; '
'an expired license becomes active again (a suspended one stays suspended). Emits license.renewed. '
'Errors: LNTFD (404), LSTAT (409) canceled license or perpetual policy, LPLAN (402) reactivation over the '
'tenant plan.';

create or replace function api.change_license_policy(
  license_id uuid,
  license_policy_id uuid default null,
  license_policy_code text default null,
  reset_expiry boolean default false
)
returns api.license
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_before lic.licenses := private.lock_license(license_id);
  v_policy lic.license_policies := private.find_policy(license_policy_id, license_policy_code);
  v_expires_at timestamptz := v_before.expires_at;
  v_after lic.licenses;
begin
  if v_before.status = 'canceled' then
    raise exception using errcode = 'LSTAT', message = 'a canceled license cannot change its policy';
  end if;
  if v_policy.archived_at is not null then
    raise exception using errcode = 'LSTAT', column = 'license_policy_id',
      message = 'this license policy is archived and takes no licenses';
  end if;
  if v_policy.id = v_before.policy_id and not coalesce(reset_expiry, false) then
    return private.license_view(v_before);
  end if;
  if coalesce(reset_expiry, false) then
    v_expires_at := now() + v_policy.duration;
  end if;
  update lic.licenses as l
  set
    policy_id = v_policy.id,
    expires_at = v_expires_at,
    status = case
      when l.status = 'expired' and (v_expires_at is null or v_expires_at > now()) then 'active'
      else l.status
    end,
    updated_at = now()
  where l.account_id = v_account_id and l.id = v_before.id
  returning l.* into v_after;
  return private.emit_license_event('license.policy_changed', v_before, v_after);
end;
$$;
comment on function api.change_license_policy(uuid, uuid, text, boolean) is
'Move a license to another policy (by id or code). The expiry stays unless reset_expiry, which restarts it from '
'now with the new policy''s duration (none if perpetual) and so may bring an expired license back. Limits and '
'entitlements of the new policy apply at the next validation. Moving to its own policy without reset_expiry '
'changes nothing. Emits license.policy_changed (previous_attributes name the old policy). Errors: LNTFD (404), '
'LINVL (422), LSTAT (409) canceled license or archived policy, LPLAN (402).';

create or replace function api.cancel_license(license_id uuid, reason text default null)
returns api.license
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_before lic.licenses := private.lock_license(license_id);
  v_after lic.licenses;
begin
  if v_before.status = 'canceled' then
    raise exception using errcode = 'LSTAT', message = 'this license is already canceled';
  end if;
  update lic.licenses as l
  set
    status = 'canceled',
    canceled_at = now(),
    suspended_reason = coalesce(reason, l.suspended_reason),
    updated_at = now()
  where l.account_id = v_account_id and l.id = v_before.id
  returning l.* into v_after;
  return private.emit_license_event('license.canceled', v_before, v_after);
end;
$$;
comment on function api.cancel_license(uuid, text) is
'Cancel a license for good: it no longer validates and cannot be reinstated, renewed, changed or canceled '
'again; it stops counting against the tenant plan. The reason is kept in suspended_reason. Emits '
'license.canceled. Errors: LNTFD (404), LSTAT (409) already canceled.';
