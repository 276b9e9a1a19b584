-- License policies: the tenant's own plan tiers (code, duration, machine and
-- seat limits, heartbeat, payment grace, what a refund or dispute does) and
-- the entitlements each one grants. A policy is never deleted: archiving it
-- stops new licenses while existing ones keep working. Its code is fixed at
-- creation (integrations and Stripe price maps name it).
--
-- Updates follow one rule here and in 51/52: a null argument leaves the
-- field unchanged; a nullable field is set to null by naming it in `clear`.
-- An update that changes nothing writes nothing and emits no event.

create or replace function private.check_clear(clear text[], clearable text[], given text[])
returns void
language plpgsql
immutable
as $$
declare
  v_name text;
begin
  foreach v_name in array coalesce(clear, '{}') loop
    if v_name is null or not v_name = any(clearable) then
      raise exception using errcode = 'LINVL', column = 'clear',
        message = format('%s cannot be cleared; clearable fields: %s', coalesce(v_name, 'null'),
          array_to_string(clearable, ', '));
    end if;
    if v_name = any(given) then
      raise exception using errcode = 'LINVL', column = v_name,
        message = format('%s is both given and cleared', v_name);
    end if;
  end loop;
end;
$$;
comment on function private.check_clear(text[], text[], text[]) is
'Refuse a clear list naming a field that is not clearable or that is also given a value. Errors: LINVL.';

create or replace function private.license_policy_view(p lic.license_policies)
returns api.license_policy
language sql
stable
as $$
  select row(
    p.id, p.code, p.name, private.iso_interval(p.duration), p.max_machines, p.max_users, p.require_fingerprint,
    private.iso_interval(p.heartbeat_interval), private.iso_interval(p.grace_period), p.refund_action,
    p.dispute_action,
    array(
      select e.code
      from lic.policy_entitlements as pe
      inner join lic.entitlements as e on pe.account_id = e.account_id and pe.entitlement_id = e.id
      where pe.account_id = p.account_id and pe.policy_id = p.id
      order by e.code collate pg_catalog."C"
    ),
    p.metadata, p.archived_at, p.created_at, p.updated_at
  )::api.license_policy;
$$;
comment on function private.license_policy_view(lic.license_policies) is
'The public shape of a license policy: durations as ISO 8601, the codes of its entitlements sorted.';

-- The table's checks, made before writing so a bad value is a LINVL naming
-- its parameter rather than a constraint name.
create or replace function private.check_license_policy(p lic.license_policies)
returns void
language plpgsql
immutable
as $$
begin
  if p.code is null or p.code !~ '^[a-z0-9][a-z0-9._-]{0,63}$' then
    raise exception using errcode = 'LINVL', column = 'code',
      message = 'code must be 1-64 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit';
  end if;
  if p.name is null or length(p.name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1-200 characters';
  end if;
  if p.duration <= interval '0' or p.duration > interval '100 years' then
    raise exception using errcode = 'LINVL', column = 'duration',
      message = 'duration must be positive and at most 100 years (or null: perpetual)';
  end if;
  if p.max_machines < 1 then
    raise exception using errcode = 'LINVL', column = 'max_machines',
      message = 'max_machines must be at least 1 (or null: unlimited)';
  end if;
  if p.max_users < 1 then
    raise exception using errcode = 'LINVL', column = 'max_users',
      message = 'max_users must be at least 1 (or null: unlimited)';
  end if;
  if p.heartbeat_interval < interval '1 minute' or p.heartbeat_interval > interval '100 years' then
    raise exception using errcode = 'LINVL', column = 'heartbeat_interval',
      message = 'heartbeat_interval must be at least 1 minute and at most 100 years (or null: no heartbeat)';
  end if;
  if p.grace_period is null or p.grace_period < interval '0' or p.grace_period > interval '100 years' then
    raise exception using errcode = 'LINVL', column = 'grace_period',
      message = 'grace_period must be zero or positive and at most 100 years';
  end if;
  if p.refund_action is null or p.refund_action not in ('suspend', 'none') then
    raise exception using errcode = 'LINVL', column = 'refund_action',
      message = 'refund_action must be "suspend" or "none"';
  end if;
  if p.dispute_action is null or p.dispute_action not in ('suspend', 'none') then
    raise exception using errcode = 'LINVL', column = 'dispute_action',
      message = 'dispute_action must be "suspend" or "none"';
  end if;
end;
$$;
comment on function private.check_license_policy(lic.license_policies) is
'Refuse a license policy row with an invalid field, naming it. Errors: LINVL.';

-- The policy with this id, locked for a change; LNTFD (column id) if the
-- account has none.
create or replace function private.lock_license_policy(license_policy_id uuid)
returns lic.license_policies
language plpgsql
volatile
as $$
declare
  v_policy lic.license_policies;
begin
  select p.* into v_policy from lic.license_policies as p
  where p.id = lock_license_policy.license_policy_id
  for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'id', message = 'license policy not found';
  end if;
  return v_policy;
end;
$$;
comment on function private.lock_license_policy(uuid) is
'The account''s license policy with this id, locked for update. Errors: LNTFD.';

create or replace function api.create_license_policy(
  code text,
  name text,
  duration interval default null,
  max_machines integer default null,
  max_users integer default null,
  require_fingerprint boolean default false,
  heartbeat_interval interval default null,
  grace_period interval default interval '7 days',
  refund_action text default 'suspend',
  dispute_action text default 'suspend',
  metadata jsonb default '{}'
)
returns api.license_policy
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_policy lic.license_policies;
  v_view api.license_policy;
begin
  -- A null where the table has a default means that default.
  v_policy.code := code;
  v_policy.name := name;
  v_policy.duration := duration;
  v_policy.max_machines := max_machines;
  v_policy.max_users := max_users;
  v_policy.require_fingerprint := coalesce(require_fingerprint, false);
  v_policy.heartbeat_interval := heartbeat_interval;
  v_policy.grace_period := coalesce(grace_period, interval '7 days');
  v_policy.refund_action := coalesce(refund_action, 'suspend');
  v_policy.dispute_action := coalesce(dispute_action, 'suspend');
  v_policy.metadata := private.write_metadata('{}', metadata);
  perform private.check_license_policy(v_policy);
  -- A duplicate code fails on the unique constraint: 23505 (409 already_exists).
  insert into lic.license_policies as p (
    account_id, code, name, duration, max_machines, max_users, require_fingerprint, heartbeat_interval,
    grace_period, refund_action, dispute_action, metadata
  )
  values (
    v_account_id, v_policy.code, v_policy.name, v_policy.duration, v_policy.max_machines, v_policy.max_users,
    v_policy.require_fingerprint, v_policy.heartbeat_interval, v_policy.grace_period, v_policy.refund_action,
    v_policy.dispute_action, v_policy.metadata
  )
  returning p.* into v_policy;
  v_view := private.license_policy_view(v_policy);
  perform private.emit_event(v_account_id, 'license_policy.created', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.create_license_policy(
  text, text, interval, integer, integer, boolean, interval, interval, text, text, jsonb
) is
'Create a license policy (a plan tier): code (unique, a-z 0-9 . _ -), name, duration (null: perpetual, else at '
'most 100 years), max_machines and max_users (null: unlimited), require_fingerprint, heartbeat_interval (null: '
'none, else 1 minute to 100 years), grace_period after a failed payment (default 7 days, at most 100 years), '
'refund_action and dispute_action '
'(suspend or none), metadata. Emits license_policy.created. Errors: LINVL (422), 23505 (409) duplicate code.';

create or replace function api.list_license_policies(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  include_archived boolean default false
)
returns setof api.license_policy
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account();
  if ending_before is null then
    return query
    select (private.license_policy_view(p)).*
    from lic.license_policies as p
    where
      (starting_after is null or p.id < starting_after)
      and (coalesce(include_archived, false) or p.archived_at is null)
    order by p.id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (l.policy).*
    from (
      select private.license_policy_view(p) as policy, p.id
      from lic.license_policies as p
      where p.id > ending_before and (coalesce(include_archived, false) or p.archived_at is null)
      order by p.id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as l
    order by l.id desc;
  end if;
end;
$$;
comment on function api.list_license_policies(integer, uuid, uuid, boolean) is
'List the account''s license policies newest first, archived ones only with include_archived, as a keyset '
'page of up to page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_license_policy(license_policy_id uuid default null, code text default null)
returns api.license_policy
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_policy lic.license_policies;
begin
  perform private.require_account();
  perform private.require_exactly_one(
    array['license_policy_id', 'code'], array[license_policy_id is not null, code is not null]
  );
  select p.* into v_policy from lic.license_policies as p
  where p.id = get_license_policy.license_policy_id or p.code = get_license_policy.code;
  if not found then
    raise exception using errcode = 'LNTFD', column = case when code is null then 'id' else 'code' end,
      message = 'license policy not found';
  end if;
  return private.license_policy_view(v_policy);
end;
$$;
comment on function api.get_license_policy(uuid, text) is
'One license policy of the account, by id or by code (exactly one), archived or not. '
'Errors: LINVL (422), LNTFD (404).';

create or replace function api.update_license_policy(
  license_policy_id uuid,
  name text default null,
  duration interval default null,
  max_machines integer default null,
  max_users integer default null,
  require_fingerprint boolean default null,
  heartbeat_interval interval default null,
  grace_period interval default null,
  refund_action text default null,
  dispute_action text default null,
  metadata jsonb default null,
  clear text[] default '{}'
)
returns api.license_policy
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_old lic.license_policies := private.lock_license_policy(license_policy_id);
  v_new lic.license_policies := v_old;
  v_before api.license_policy;
  v_view api.license_policy;
begin
  perform private.check_clear(
    clear,
    array['duration', 'max_machines', 'max_users', 'heartbeat_interval'],
    array_remove(array[
      case when duration is not null then 'duration' end,
      case when max_machines is not null then 'max_machines' end,
      case when max_users is not null then 'max_users' end,
      case when heartbeat_interval is not null then 'heartbeat_interval' end
    ], null)
  );
  v_new.name := coalesce(name, v_old.name);
  v_new.duration := case when 'duration' = any(clear) then null else coalesce(duration, v_old.duration) end;
  v_new.max_machines := case
    when 'max_machines' = any(clear) then null else coalesce(max_machines, v_old.max_machines)
  end;
  v_new.max_users := case when 'max_users' = any(clear) then null else coalesce(max_users, v_old.max_users) end;
  v_new.require_fingerprint := coalesce(require_fingerprint, v_old.require_fingerprint);
  v_new.heartbeat_interval := case
    when 'heartbeat_interval' = any(clear) then null else coalesce(heartbeat_interval, v_old.heartbeat_interval)
  end;
  v_new.grace_period := coalesce(grace_period, v_old.grace_period);
  v_new.refund_action := coalesce(refund_action, v_old.refund_action);
  v_new.dispute_action := coalesce(dispute_action, v_old.dispute_action);
  v_new.metadata := private.write_metadata(v_old.metadata, metadata);
  perform private.check_license_policy(v_new);
  v_before := private.license_policy_view(v_old);
  -- Compared as JSON: interval equality would take P1M for P30D.
  if to_jsonb(v_new) = to_jsonb(v_old) then
    return v_before;
  end if;
  update lic.license_policies as p
  set
    name = v_new.name,
    duration = v_new.duration,
    max_machines = v_new.max_machines,
    max_users = v_new.max_users,
    require_fingerprint = v_new.require_fingerprint,
    heartbeat_interval = v_new.heartbeat_interval,
    grace_period = v_new.grace_period,
    refund_action = v_new.refund_action,
    dispute_action = v_new.dispute_action,
    metadata = v_new.metadata,
    updated_at = now()
  where p.account_id = v_account_id and p.id = v_old.id
  returning p.* into v_new;
  v_view := private.license_policy_view(v_new);
  perform private.emit_event(
    v_account_id, 'license_policy.updated', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.update_license_policy(
  uuid, text, interval, integer, integer, boolean, interval, interval, text, text, jsonb, text[]
) is
'Change a license policy (archived or not; its code is fixed). A null argument leaves a field unchanged; '
'clear names the nullable fields to set to null (duration, max_machines, max_users, heartbeat_interval). '
'metadata replaces the whole object. Changes apply to the policy''s existing licenses too. Emits '
'license_policy.updated when something changed. Errors: LNTFD (404), LINVL (422).';

create or replace function api.archive_license_policy(license_policy_id uuid)
returns api.license_policy
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_policy lic.license_policies := private.lock_license_policy(license_policy_id);
  v_before api.license_policy := private.license_policy_view(v_policy);
  v_view api.license_policy;
begin
  if v_policy.archived_at is not null then
    return v_before;
  end if;
  update lic.license_policies as p
  set archived_at = now(), updated_at = now()
  where p.account_id = v_account_id and p.id = v_policy.id
  returning p.* into v_policy;
  v_view := private.license_policy_view(v_policy);
  perform private.emit_event(
    v_account_id, 'license_policy.archived', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.archive_license_policy(uuid) is
'Archive a license policy: it takes no new licenses, while its existing licenses keep working. Archiving it '
'again returns it unchanged. Emits license_policy.archived. Errors: LNTFD (404).';

-- Attaching and detaching change the policy's view (its entitlements), so
-- they bump updated_at and emit an event with the old list in
-- previous_attributes; a call that changes nothing does neither.
create or replace function private.change_policy_entitlement(license_policy_id uuid, code text, attach boolean)
returns api.license_policy
language plpgsql
volatile
as $$
declare
  v_account_id uuid := private.current_account_id();
  v_policy lic.license_policies := private.lock_license_policy(license_policy_id);
  v_entitlement_id uuid;
  v_before api.license_policy := private.license_policy_view(v_policy);
  v_view api.license_policy;
begin
  select e.id into v_entitlement_id from lic.entitlements as e where e.code = change_policy_entitlement.code;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'code', message = 'entitlement not found';
  end if;
  if attach then
    insert into lic.policy_entitlements (account_id, policy_id, entitlement_id)
    values (v_account_id, v_policy.id, v_entitlement_id)
    on conflict do nothing;
  else
    delete from lic.policy_entitlements as pe
    where pe.account_id = v_account_id and pe.policy_id = v_policy.id and pe.entitlement_id = v_entitlement_id;
  end if;
  if not found then
    return v_before;
  end if;
  update lic.license_policies as p
  set updated_at = now()
  where p.account_id = v_account_id and p.id = v_policy.id
  returning p.* into v_policy;
  v_view := private.license_policy_view(v_policy);
  perform private.emit_event(
    v_account_id,
    case when attach then 'license_policy.entitlement_attached' else 'license_policy.entitlement_detached' end,
    to_jsonb(v_view),
    private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function private.change_policy_entitlement(uuid, text, boolean) is
'Attach (or detach) the entitlement with this code to (from) a license policy of the current account. '
'Errors: LNTFD.';

create or replace function api.attach_entitlement(license_policy_id uuid, code text)
returns api.license_policy
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account(member_role => 'admin');
  return private.change_policy_entitlement(license_policy_id, code, true);
end;
$$;
comment on function api.attach_entitlement(uuid, text) is
'Make a license policy grant the entitlement with this code (to its existing licenses too); attaching it '
'again changes nothing. Emits license_policy.entitlement_attached. Errors: LNTFD (404) unknown policy or '
'entitlement.';

create or replace function api.detach_entitlement(license_policy_id uuid, code text)
returns api.license_policy
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account(member_role => 'admin');
  return private.change_policy_entitlement(license_policy_id, code, false);
end;
$$;
comment on function api.detach_entitlement(uuid, text) is
'Stop a license policy granting the entitlement with this code; detaching one it does not grant changes '
'nothing. Emits license_policy.entitlement_detached. Errors: LNTFD (404) unknown policy or entitlement.';
