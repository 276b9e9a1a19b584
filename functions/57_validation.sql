-- Validation and entitlement checks: the hot path. PL/pgSQL (cached plans),
-- read-only (no event, no last-validated stamp), and every step is an index
-- lookup on one license, its policy, its machines or its seats, so the cost
-- does not grow with the number of licenses.
--
-- api.validate_license runs one ordered pipeline; the first failing step
-- answers (Keygen's order, extended):
--   MALFORMED_KEY  the key has the wrong shape or fails its checksum (no lookup)
--   NOT_FOUND      no such key in this account
--   CANCELED, SUSPENDED, EXPIRED, OVERDUE   the effective status (computed now)
--   DISPUTED       a dispute over its payment is open (Stripe)
--   FINGERPRINT_SCOPE_REQUIRED  the policy requires a fingerprint and none was given
--   HEARTBEAT_DEAD              the fingerprint's machine is activated but silent too long
--   NO_MACHINE                  a fingerprint was given and the license has no live machine
--   FINGERPRINT_SCOPE_MISMATCH  a fingerprint was given and no live machine has it
--   TOO_MANY_MACHINES           live machines exceed the policy's max_machines
--   TOO_MANY_USERS              seats taken exceed the seats bought or the policy's max_users
--   ENTITLEMENTS_MISSING        a requested entitlement is not effective
--   BUDGET_EXHAUSTED            a hard usage budget of the license is spent this period
--   PAYMENT_GRACE (valid)       past_due, within the grace period
--   VALID

create or replace function private.validation(
  valid boolean,
  code text,
  detail text,
  license api.license default null,
  entitlements text[] default null
)
returns api.license_validation
language plpgsql
immutable
as $$
begin
  return row(valid, code, detail, to_jsonb(license), entitlements)::api.license_validation;
end;
$$;
comment on function private.validation(boolean, text, text, api.license, text[]) is
'The shape of a validation answer.';

-- Keys nearly always arrive as issued: look the key up as given, and
-- normalise it (checking its checksum) only when that misses.
create or replace function private.license_by_key(account_id uuid, key text)
returns lic.licenses
language plpgsql
stable
as $$
declare
  v_license lic.licenses;
begin
  select l.* into v_license from lic.licenses as l where l.account_id = license_by_key.account_id and l.key = license_by_key.key;
  if not found then
    select l.* into v_license from lic.licenses as l
    where l.account_id = license_by_key.account_id and l.key = private.normalize_license_key(license_by_key.key);
  end if;
  return v_license;
end;
$$;
comment on function private.license_by_key(uuid, text) is
'The license of an account with this key, as given or normalised; a row of nulls when there is none.';

create or replace function api.validate_license(
  key text,
  fingerprint text default null,
  entitlements text[] default null
)
returns api.license_validation
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable']);
  v_now timestamptz := now();
  v_fingerprint text := nullif(btrim(fingerprint), '');
  v_license lic.licenses;
  v_policy lic.license_policies;
  v_view api.license;
  v_status text;
  v_codes text[];
  v_missing text[];
  v_alive boolean;
  v_count integer;
  v_max_users integer;
begin
  v_license := private.license_by_key(v_account_id, key);
  if v_license.id is null then
    if private.normalize_license_key(key) is null then
      return private.validation(false, 'MALFORMED_KEY',
        'the license key is malformed or mistyped: its format or checksum is wrong');
    end if;
    return private.validation(false, 'NOT_FOUND', 'no license has this key');
  end if;
  select p.* into v_policy from lic.license_policies as p
  where p.account_id = v_account_id and p.id = v_license.policy_id;
  v_view := private.license_view(v_license, v_policy.code);
  v_codes := v_license.entitlement_codes;
  v_status := private.effective_status(v_license.status, v_license.expires_at, v_license.grace_ends_at, v_now);

  case v_status
    when 'canceled' then
      return private.validation(false, 'CANCELED', 'the license has been canceled', v_view, v_codes);
    when 'suspended' then
      return private.validation(false, 'SUSPENDED', 'the license is suspended', v_view, v_codes);
    when 'expired' then
      return private.validation(false, 'EXPIRED',
        format('the license expired at %s', v_license.expires_at), v_view, v_codes);
    when 'overdue' then
      return private.validation(false, 'OVERDUE',
        format('the payment grace period ended at %s', v_license.grace_ends_at), v_view, v_codes);
    else
      null;
  end case;

  if v_license.disputed_at is not null then
    return private.validation(false, 'DISPUTED',
      format('a dispute over the license''s payment is open since %s', v_license.disputed_at), v_view, v_codes);
  end if;

  if v_fingerprint is null then
    if v_policy.require_fingerprint then
      return private.validation(false, 'FINGERPRINT_SCOPE_REQUIRED',
        'the license''s policy requires a machine fingerprint', v_view, v_codes);
    end if;
  else
    select private.machine_alive(m.last_heartbeat_at, v_policy.heartbeat_interval, v_now) into v_alive
    from lic.machines as m
    where m.account_id = v_account_id and m.license_id = v_license.id and m.fingerprint = v_fingerprint;
    if v_alive is null then
      if exists (
        select from lic.machines as m
        where
          m.account_id = v_account_id and m.license_id = v_license.id
          and private.machine_alive(m.last_heartbeat_at, v_policy.heartbeat_interval, v_now)
      ) then
        return private.validation(false, 'FINGERPRINT_SCOPE_MISMATCH',
          'no machine with this fingerprint is activated on the license', v_view, v_codes);
      end if;
      return private.validation(false, 'NO_MACHINE',
        'the license has no activated machine', v_view, v_codes);
    elsif not v_alive then
      return private.validation(false, 'HEARTBEAT_DEAD',
        format('the machine with this fingerprint sent no heartbeat within %s',
          private.iso_interval(v_policy.heartbeat_interval)), v_view, v_codes);
    end if;
  end if;

  if v_policy.max_machines is not null then
    -- Counts at most one past the limit: bounded by the policy, not the data.
    select count(*)::integer into v_count
    from (
      select from lic.machines as m
      where
        m.account_id = v_account_id and m.license_id = v_license.id
        and private.machine_alive(m.last_heartbeat_at, v_policy.heartbeat_interval, v_now)
      limit v_policy.max_machines + 1
    ) as live;
    if v_count > v_policy.max_machines then
      return private.validation(false, 'TOO_MANY_MACHINES',
        format('the license has more live machines than its policy allows (%s)', v_policy.max_machines),
        v_view, v_codes);
    end if;
  end if;

  -- Seats bought through Stripe replace the policy's max_users.
  v_max_users := coalesce(v_license.seats, v_policy.max_users);
  if v_max_users is not null then
    select count(*)::integer into v_count
    from (
      select from lic.license_users as u
      where u.account_id = v_account_id and u.license_id = v_license.id
      limit v_max_users + 1
    ) as seats;
    if v_count > v_max_users then
      return private.validation(false, 'TOO_MANY_USERS',
        format('the license has more users than it has seats (%s)', v_max_users), v_view, v_codes);
    end if;
  end if;

  if entitlements is not null then
    select coalesce(array_agg(distinct r.code order by r.code), '{}') into v_missing
    from unnest(entitlements) as r (code)
    where r.code is null or not r.code = any(v_codes);
    if cardinality(v_missing) > 0 then
      return private.validation(false, 'ENTITLEMENTS_MISSING',
        format('the license lacks %s', array_to_string(v_missing, ', ', 'null')), v_view, v_codes);
    end if;
  end if;

  if exists (
    select from lic.budgets as b
    left join lic.budget_usage as u
      on u.account_id = b.account_id and u.budget_id = b.id
      and u.period_start = private.budget_period_start(b.period, v_now)
    where b.account_id = v_account_id and b.license_id = v_license.id and b.hard and coalesce(u.used, 0) >= b."limit"
  ) then
    return private.validation(false, 'BUDGET_EXHAUSTED',
      'a hard usage budget of the license is spent for this period', v_view, v_codes);
  end if;

  if v_status = 'past_due' then
    return private.validation(true, 'PAYMENT_GRACE',
      format('the license is valid; its payment is past due and the grace period ends at %s',
        v_license.grace_ends_at), v_view, v_codes);
  end if;
  return private.validation(true, 'VALID', 'the license is valid', v_view, v_codes);
end;
$$;
comment on function api.validate_license(text, text, text[]) is
'Validate a license key (secret or publishable key): one ordered pipeline whose first failing step answers — '
'MALFORMED_KEY, NOT_FOUND, CANCELED, SUSPENDED, EXPIRED, OVERDUE, DISPUTED, FINGERPRINT_SCOPE_REQUIRED, '
'HEARTBEAT_DEAD, NO_MACHINE, FINGERPRINT_SCOPE_MISMATCH, TOO_MANY_MACHINES, TOO_MANY_USERS, '
'ENTITLEMENTS_MISSING, BUDGET_EXHAUSTED — else PAYMENT_GRACE (valid, past due within grace) or VALID. A '
'fingerprint, when given, '
'must belong to a live '
'machine of the license; entitlements, when given, must all be effective. The answer carries the license and '
'its effective entitlement codes (null when not found). Read-only. Errors: none of its own.';

create or replace function private.license_check(
  license lic.licenses,
  entitlement text,
  at timestamptz default now()
)
returns api.entitlement_check
language plpgsql
stable
as $$
declare
  v_status text := private.effective_status(license.status, license.expires_at, license.grace_ends_at, at);
begin
  if v_status not in ('active', 'past_due') then
    return row(false, upper(v_status), license.id)::api.entitlement_check;
  end if;
  if entitlement = any(license.entitlement_codes) then
    return row(true, 'ENTITLED', license.id)::api.entitlement_check;
  end if;
  return row(false, 'NOT_ENTITLED', license.id)::api.entitlement_check;
end;
$$;
comment on function private.license_check(lic.licenses, text, timestamptz) is
'Whether one license allows an entitlement now: ENTITLED, NOT_ENTITLED, or its status (CANCELED, SUSPENDED, '
'EXPIRED, OVERDUE) when it is not in use.';

create or replace function api.check_entitlement(
  entitlement text,
  license_id uuid default null,
  license_key text default null,
  customer_external_id text default null
)
returns api.entitlement_check
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_now timestamptz := now();
  v_license lic.licenses;
  v_licenses lic.customer_license[];
  v_decision lic.entitlement_decision;
begin
  if entitlement is null then
    raise exception using errcode = 'LINVL', column = 'entitlement', message = 'entitlement is required';
  end if;
  perform private.require_exactly_one(
    array['license_id', 'license_key', 'customer_external_id'],
    array[license_id is not null, license_key is not null, customer_external_id is not null]
  );

  if customer_external_id is null then
    if license_id is not null then
      select l.* into v_license from lic.licenses as l
      where l.account_id = v_account_id and l.id = check_entitlement.license_id;
    else
      v_license := private.license_by_key(v_account_id, license_key);
    end if;
    if v_license.id is null then
      return row(false, 'LICENSE_NOT_FOUND', null)::api.entitlement_check;
    end if;
    return private.license_check(v_license, entitlement, v_now);
  end if;

  -- One row: the customer's licenses as lic.customers.licenses keeps them
  -- (none found: null), judged by the rule the SDK's snapshots carry.
  select c.licenses into v_licenses
  from lic.customers as c
  where c.account_id = v_account_id and c.external_id = customer_external_id;
  v_decision := private.entitlement_decision(v_licenses, entitlement, v_now);
  return row(v_decision.allowed, v_decision.reason, v_decision.license_id)::api.entitlement_check;
end;
$$;
comment on function api.check_entitlement(text, uuid, text, text) is
'Whether a license, or any license of a customer, allows an entitlement now. Identify exactly one of '
'license_id, license_key, customer_external_id (the tenant''s own user id; the customer''s owner and member '
'seats count). Reasons: ENTITLED (allowed; license_id says which license), NOT_ENTITLED, LICENSE_NOT_FOUND, '
'CANCELED, SUSPENDED, EXPIRED, OVERDUE, CUSTOMER_NOT_FOUND, NO_VALID_LICENSE. A license in its payment grace '
'period still allows. Errors: LINVL (422).';
