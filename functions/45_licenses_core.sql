-- The pieces of licensing every other file builds on: license keys, the
-- effective status (computed at read time, so validation never waits for a
-- sweep), the public shape of a license, and license creation.

create or replace function private.iso_interval(value interval)
returns text
language sql
immutable
parallel safe
set intervalstyle = 'iso_8601'
as $$
  select value::text;
$$;
comment on function private.iso_interval(interval) is
'An interval as ISO 8601 text (P1M, P1Y, PT1H), whatever the session''s IntervalStyle.';

-- License keys: 25 random characters of Crockford's base32 (125 bits), then
-- a 5-character checksum, in six groups of five: ABCDE-FGHJK-…-CHECK.
-- Input is forgiving: case, spaces and dashes do not matter, O reads as 0 and
-- I or L as 1; a typo fails the checksum without any lookup.
create or replace function private.license_key_checksum(body text)
returns text
language plpgsql
immutable
parallel safe
as $$
declare
  v_alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  v_hash bytea := pg_catalog.sha256(pg_catalog.convert_to(body, 'UTF8'));
begin
  -- One expression, no loop: this runs on every validation.
  return substr(v_alphabet, get_byte(v_hash, 0) % 32 + 1, 1) || substr(v_alphabet, get_byte(v_hash, 1) % 32 + 1, 1)
    || substr(v_alphabet, get_byte(v_hash, 2) % 32 + 1, 1) || substr(v_alphabet, get_byte(v_hash, 3) % 32 + 1, 1)
    || substr(v_alphabet, get_byte(v_hash, 4) % 32 + 1, 1);
end;
$$;
comment on function private.license_key_checksum(text) is
'The 5-character checksum of the 25 characters of a license key.';

create or replace function private.license_key_grouped(chars text)
returns text
language sql
immutable
parallel safe
as $$
  select pg_catalog.regexp_replace(chars, '(.{5})(?!$)', '\1-', 'g');
$$;
comment on function private.license_key_grouped(text) is 'Characters in groups of five joined by dashes.';

create or replace function private.new_license_key()
returns text
language plpgsql
volatile
as $$
declare
  v_alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  v_random bytea := pg_catalog.sha256(
    pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) || pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
  );
  v_body text := '';
begin
  -- 32 divides 256, so byte % 32 is uniform: 5 random bits per character.
  for i in 0..24 loop
    v_body := v_body || substr(v_alphabet, get_byte(v_random, i) % 32 + 1, 1);
  end loop;
  return private.license_key_grouped(v_body || private.license_key_checksum(v_body));
end;
$$;
comment on function private.new_license_key() is 'A new random license key with its checksum.';

create or replace function private.normalize_license_key(key text)
returns text
language plpgsql
immutable
parallel safe
as $$
declare
  -- translate, not regular expressions: this runs on every validation.
  v_chars text := pg_catalog.translate(pg_catalog.upper(pg_catalog.translate(key, E'- \t\r\n', '')), 'OIL', '011');
begin
  if length(v_chars) is distinct from 30
    or pg_catalog.translate(v_chars, '0123456789ABCDEFGHJKMNPQRSTVWXYZ', '') <> ''
    or private.license_key_checksum(left(v_chars, 25)) <> right(v_chars, 5) then
    return null;
  end if;
  return private.license_key_grouped(v_chars);
end;
$$;
comment on function private.normalize_license_key(text) is
'A license key as stored, from however it was typed; null when it is malformed or fails its checksum.';

create or replace function private.effective_status(
  status text,
  expires_at timestamptz,
  grace_ends_at timestamptz,
  at timestamptz default now()
)
returns text
language sql
immutable
parallel safe
as $$
  select case
    when status in ('canceled', 'suspended') then status
    when status = 'expired' or expires_at <= at then 'expired'
    when status = 'past_due' and grace_ends_at <= at then 'overdue'
    else status
  end;
$$;
comment on function private.effective_status(text, timestamptz, timestamptz, timestamptz) is
'A license''s status at an instant: expiry and the end of a payment grace period count even before any sweep.';

-- The other half of the same rule: the instant effective_status stops
-- answering active or past_due without a write (null: never).
create or replace function private.in_use_until(status text, expires_at timestamptz, grace_ends_at timestamptz)
returns timestamptz
language sql
immutable
parallel safe
as $$
  select least(expires_at, case when status = 'past_due' then grace_ends_at end);
$$;
comment on function private.in_use_until(text, timestamptz, timestamptz) is
'For a license in use (effective status active or past_due): when it stops being in use without a write, its '
'expiry or, past due, the end of its grace period, whichever comes first; null when neither will.';

create or replace function private.license_view(l lic.licenses, policy_code text default null)
returns api.license
language plpgsql
stable
as $$
declare
  v_policy_code text := policy_code;
begin
  if v_policy_code is null then
    select p.code into v_policy_code from lic.license_policies as p
    where p.account_id = l.account_id and p.id = l.policy_id;
  end if;
  return row(
    l.id, l.key, l.policy_id, v_policy_code, l.customer_id, l.status,
    private.effective_status(l.status, l.expires_at, l.grace_ends_at),
    l.expires_at, l.grace_ends_at, l.suspended_reason, l.metadata, l.created_at, l.updated_at, l.canceled_at,
    l.seats, l.paid_through, l.disputed_at, l.stripe_subscription_id
  )::api.license;
end;
$$;
comment on function private.license_view(lic.licenses, text) is
'The public shape of a license (pass its policy''s code when the caller has it, to save a lookup).';

create or replace function private.find_policy(policy_id uuid, policy_code text)
returns lic.license_policies
language plpgsql
stable
as $$
declare
  v_policy lic.license_policies;
begin
  perform private.require_exactly_one(
    array['policy_id', 'policy_code'], array[policy_id is not null, policy_code is not null]
  );
  select p.* into v_policy from lic.license_policies as p
  where p.id = find_policy.policy_id or p.code = find_policy.policy_code;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'policy', message = 'license policy not found';
  end if;
  return v_policy;
end;
$$;
comment on function private.find_policy(uuid, text) is
'The license policy with this id or code (exactly one given). Errors: LINVL, LNTFD.';

create or replace function api.create_license(
  policy_id uuid default null,
  policy_code text default null,
  customer_id uuid default null,
  expires_at timestamptz default null,
  metadata jsonb default '{}'
)
returns api.license
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_policy lic.license_policies := private.find_policy(policy_id, policy_code);
  v_license lic.licenses;
  v_view api.license;
begin
  if v_policy.archived_at is not null then
    raise exception using errcode = 'LSTAT', column = 'policy',
      message = 'this license policy is archived and takes no new licenses';
  end if;
  if customer_id is not null
    and not exists (select from lic.customers as c where c.id = create_license.customer_id) then
    raise exception using errcode = 'LNTFD', column = 'customer_id', message = 'customer not found';
  end if;
  if expires_at <= now() then
    raise exception using errcode = 'LINVL', column = 'expires_at', message = 'expires_at must be in the future';
  end if;
  -- The plan usage trigger raises LPLAN here when the tenant plan is full.
  insert into lic.licenses (account_id, key, policy_id, customer_id, expires_at, metadata)
  values (
    v_account_id, private.new_license_key(), v_policy.id, create_license.customer_id,
    coalesce(create_license.expires_at, now() + v_policy.duration), private.write_metadata('{}', create_license.metadata)
  )
  returning * into v_license;
  if customer_id is not null then
    insert into lic.license_users (account_id, license_id, customer_id, role)
    values (v_account_id, v_license.id, create_license.customer_id, 'owner');
  end if;
  v_view := private.license_view(v_license);
  perform private.emit_event(v_account_id, 'license.created', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.create_license(uuid, text, uuid, timestamptz, jsonb) is
'Create a license on a policy (by id or code), optionally for a customer (who becomes its owner seat); expiry '
'defaults to now + the policy''s duration. The answer carries the key. Errors: LINVL (422), LNTFD (404), '
'LSTAT (409) archived policy, LPLAN (402) tenant plan limit.';

create or replace function private.machine_alive(
  last_heartbeat_at timestamptz,
  heartbeat_interval interval,
  at timestamptz default now()
)
returns boolean
language sql
immutable
parallel safe
as $$
  select heartbeat_interval is null or last_heartbeat_at > at - heartbeat_interval;
$$;
comment on function private.machine_alive(timestamptz, interval, timestamptz) is
'Whether a machine counts: its policy needs no heartbeat, or it was heard from within the interval.';
