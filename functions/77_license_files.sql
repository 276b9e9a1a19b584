-- Offline license files (decisions 73-75, docs/license-files.md).
--
-- Each account signs its files with an Ed25519 key of its own. The web layer
-- makes key pairs and encrypts their private halves (SQL never sees one in
-- clear); SQL stores them, decides which key is current (at most one, by a
-- unique index), assembles the exact payload to sign and records the
-- issuance as an event. The web layer decrypts the key and signs the payload
-- bytes: a file is never re-serialised, so verifiers in any language check
-- the bytes that were signed.

-- ---------------------------------------------------------------------------
-- Signing keys

create or replace function private.signing_key_view(k lic.signing_keys)
returns api.signing_key
language sql
immutable
as $$
  -- base64url without padding (RFC 4648 §5): 32 bytes are 43 characters.
  select row(
    k.id, k.algorithm, pg_catalog.translate(pg_catalog.encode(k.public_key, 'base64'), '+/=', '-_'), k.created_at,
    k.retired_at
  )::api.signing_key;
$$;
comment on function private.signing_key_view(lic.signing_keys) is
'The public shape of a signing key (never its private half).';

create or replace function private.check_signing_key(public_key bytea, private_key_ciphertext bytea)
returns void
language plpgsql
immutable
as $$
begin
  if public_key is null or length(public_key) <> 32 then
    raise exception using errcode = 'LINVL', column = 'public_key', message = 'public_key must be 32 bytes (Ed25519)';
  end if;
  if private_key_ciphertext is null or length(private_key_ciphertext) not between 1 and 1024 then
    raise exception using errcode = 'LINVL', column = 'private_key_ciphertext',
      message = 'private_key_ciphertext must be 1 to 1024 bytes';
  end if;
end;
$$;
comment on function private.check_signing_key(bytea, bytea) is
'Refuse a key pair that cannot be stored: an Ed25519 public key is 32 bytes. Errors: LINVL.';

create or replace function api.ensure_signing_key(public_key bytea, private_key_ciphertext bytea)
returns api.signing_key
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable'], member_role => 'admin');
  v_key lic.signing_keys;
begin
  perform private.check_signing_key(public_key, private_key_ciphertext);
  -- Concurrent first uses: the unique index on the current key lets one
  -- insert; the others wait for it and keep its key.
  insert into lic.signing_keys (account_id, public_key, private_key_ciphertext)
  values (v_account_id, ensure_signing_key.public_key, ensure_signing_key.private_key_ciphertext)
  on conflict (account_id) where retired_at is null do nothing
  returning * into v_key;
  if found then
    perform private.emit_event(v_account_id, 'signing_key.created', to_jsonb(private.signing_key_view(v_key)));
  else
    select k.* into v_key from lic.signing_keys as k where k.account_id = v_account_id and k.retired_at is null;
  end if;
  return private.signing_key_view(v_key);
end;
$$;
comment on function api.ensure_signing_key(bytea, bytea) is
'The account''s current signing key; when it has none (first use), this key pair becomes it (public_key: 32 '
'bytes of Ed25519; private_key_ciphertext: the private half as the web layer encrypted it) and '
'signing_key.created is emitted. Secret or publishable key. Errors: LINVL (422).';

create or replace function api.rotate_signing_key(public_key bytea, private_key_ciphertext bytea)
returns api.signing_key
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_retired lic.signing_keys;
  v_key lic.signing_keys;
begin
  perform private.check_signing_key(public_key, private_key_ciphertext);
  -- One rotation at a time per account: the next one retires this one's key.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('lic.signing_keys ' || v_account_id, 0));
  update lic.signing_keys as k set retired_at = now()
  where k.account_id = v_account_id and k.retired_at is null
  returning * into v_retired;
  if found then
    perform private.emit_event(v_account_id, 'signing_key.retired', to_jsonb(private.signing_key_view(v_retired)));
  end if;
  insert into lic.signing_keys (account_id, public_key, private_key_ciphertext)
  values (v_account_id, rotate_signing_key.public_key, rotate_signing_key.private_key_ciphertext)
  returning * into v_key;
  perform private.emit_event(v_account_id, 'signing_key.created', to_jsonb(private.signing_key_view(v_key)));
  return private.signing_key_view(v_key);
end;
$$;
comment on function api.rotate_signing_key(bytea, bytea) is
'Make this key pair the account''s current signing key and retire the one before (which stays listed, so the '
'files it signed still verify). Emits signing_key.retired and signing_key.created. Errors: LINVL (422).';

create or replace function api.list_signing_keys(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.signing_key
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable']);
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
begin
  if ending_before is null then
    return query
    select (private.signing_key_view(k)).*
    from lic.signing_keys as k
    where k.account_id = v_account_id and (starting_after is null or k.id < starting_after)
    order by k.id desc
    limit v_rows;
  else
    return query
    select (p.signing_key).*
    from (
      select private.signing_key_view(k) as signing_key, k.id
      from lic.signing_keys as k
      where k.account_id = v_account_id and k.id > ending_before
      order by k.id
      limit v_rows
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_signing_keys(integer, uuid, uuid) is
'List the account''s public signing keys, current and retired, newest first, as a keyset page of up to '
'page_limit + 1 rows. Secret or publishable key. Errors: LINVL (422).';

-- ---------------------------------------------------------------------------
-- License files

-- The instants after which a valid file's answer changes by the clock alone,
-- with the answer from then on: the license's expiry (EXPIRED) and the end
-- of its payment grace period (OVERDUE), as private.effective_status decides
-- them. Verifiers compare a clock with these and copy no rule.
create or replace function private.license_file_transitions(
  license lic.licenses,
  issued_at timestamptz,
  expires_at timestamptz
)
returns jsonb
language sql
stable
as $$
  select coalesce(
    pg_catalog.jsonb_agg(
      pg_catalog.jsonb_build_object('at', t.at, 'valid', false, 'code', pg_catalog.upper(t.status)) order by t.at
    ),
    '[]'
  )
  from (
    select distinct
      c.at,
      private.effective_status((license).status, (license).expires_at, (license).grace_ends_at, c.at) as status
    from unnest(array[(license).expires_at, (license).grace_ends_at]) as c (at)
    where c.at > license_file_transitions.issued_at and c.at <= license_file_transitions.expires_at
  ) as t
  where t.status in ('expired', 'overdue');
$$;
comment on function private.license_file_transitions(lic.licenses, timestamptz, timestamptz) is
'For a license valid at issued_at: [{at, valid: false, code}] for each instant before the file''s expires_at '
'when its effective status turns expired or overdue, oldest first.';

create or replace function private.license_file_budgets(account_id uuid, license_id uuid, at timestamptz)
returns jsonb
language sql
stable
as $$
  select coalesce(
    pg_catalog.jsonb_agg(
      pg_catalog.jsonb_build_object(
        'id', v.id, 'meter', v.meter_code, 'period', v.period, 'limit', v."limit", 'hard', v.hard, 'used', v.used,
        'remaining', v.remaining, 'period_start', v.period_start, 'period_end', v.period_end
      ) order by v.id
    ),
    '[]'
  )
  from lic.budgets as b
  cross join lateral private.budget_view(b, license_file_budgets.at) as v
  where b.account_id = license_file_budgets.account_id and b.license_id = license_file_budgets.license_id;
$$;
comment on function private.license_file_budgets(uuid, uuid, timestamptz) is
'The budgets of a license as a license file carries them: what each allows and has left in the period '
'containing at.';

create or replace function api.issue_license_file(
  license_id uuid default null,
  key text default null,
  fingerprint text default null,
  ttl_seconds integer default null
)
returns api.license_file_content
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable'], member_role => 'admin');
  v_now timestamptz := now();
  v_fingerprint text := nullif(btrim(fingerprint), '');
  v_ttl integer := coalesce(ttl_seconds, 2592000);
  v_expires_at timestamptz;
  v_id uuid := private.uuid_v7();
  v_license lic.licenses;
  v_machine lic.machines;
  v_key lic.signing_keys;
  v_validation api.license_validation;
  v_payload jsonb;
begin
  perform private.require_exactly_one(array['license_id', 'key'], array[license_id is not null, key is not null]);
  -- A key that ships in an app issues only what validation would show it,
  -- and only for a machine the tenant activated: never a file that works on
  -- any machine (decision 75).
  if (private.current_context()).kind = 'publishable' and (license_id is not null or v_fingerprint is null) then
    raise exception using errcode = 'LDNID', column = 'fingerprint',
      message = 'a publishable key issues a license file only by license key and for an activated machine''s '
        'fingerprint';
  end if;
  if v_ttl not between 3600 and 31622400 then
    raise exception using errcode = 'LINVL', column = 'ttl_seconds',
      message = 'ttl_seconds must be between 3600 (1 hour) and 31622400 (366 days)';
  end if;
  v_expires_at := v_now + make_interval(secs => v_ttl);

  if license_id is not null then
    select l.* into v_license from lic.licenses as l
    where l.account_id = v_account_id and l.id = issue_license_file.license_id;
  else
    v_license := private.license_by_key(v_account_id, key);
  end if;
  if v_license.id is null then
    raise exception using errcode = 'LNTFD', column = case when key is not null then 'key' else 'license_id' end,
      message = 'license not found';
  end if;
  if v_fingerprint is not null then
    select m.* into v_machine from lic.machines as m
    where m.account_id = v_account_id and m.license_id = v_license.id and m.fingerprint = v_fingerprint;
    if not found then
      raise exception using errcode = 'LNTFD', column = 'fingerprint',
        message = 'no machine with this fingerprint is activated on the license';
    end if;
  end if;
  select k.* into v_key from lic.signing_keys as k where k.account_id = v_account_id and k.retired_at is null;
  if not found then
    raise exception using errcode = 'LSTAT',
      message = 'the account has no signing key yet: call api.ensure_signing_key first';
  end if;

  -- The answer validation gives now, for this machine: one pipeline, not a copy.
  v_validation := api.validate_license(key => v_license.key, fingerprint => v_fingerprint);
  v_payload := jsonb_build_object(
    'object', 'license_file_payload',
    'version', 1,
    'id', v_id,
    'kid', v_key.id,
    'account_id', v_account_id,
    'issued_at', v_now,
    'expires_at', v_expires_at,
    'license', v_validation.license,
    'validation', jsonb_build_object('valid', v_validation.valid, 'code', v_validation.code,
      'detail', v_validation.detail),
    'transitions', case
      when v_validation.valid then private.license_file_transitions(v_license, v_now, v_expires_at)
      else '[]'::jsonb
    end,
    'entitlements', to_jsonb(v_validation.entitlements),
    'machine', case
      when v_machine.id is not null then jsonb_build_object(
        'id', v_machine.id, 'fingerprint', v_machine.fingerprint, 'name', v_machine.name,
        'platform', v_machine.platform
      )
    end,
    'budgets', private.license_file_budgets(v_account_id, v_license.id, v_now)
  );
  perform private.emit_event(
    v_account_id, 'license.file_issued',
    jsonb_build_object(
      'id', v_id, 'license_id', v_license.id, 'machine_id', v_machine.id, 'kid', v_key.id, 'code', v_validation.code,
      'issued_at', v_now, 'expires_at', v_expires_at
    )
  );
  return row(v_id, v_key.id, v_key.private_key_ciphertext, v_payload::text)::api.license_file_content;
end;
$$;
comment on function api.issue_license_file(uuid, text, text, integer) is
'Assemble a license file for the web layer to sign with the current signing key (see '
'api.license_file_content): the license and the validation answer it gets now (for the machine, when a '
'fingerprint is given: it must be activated on the license), the instants a valid answer changes at, the '
'effective entitlements, the machine, its budgets'' remaining, the issue and expiry instants (ttl_seconds: '
'3600 to 31622400, default 30 days) and the key id. Identify the license by exactly one of license_id '
'(secret key) or key (a publishable key must also give a fingerprint). Emits license.file_issued. '
'Errors: LINVL (422), LDNID (403), LNTFD (404), LSTAT (409) when the account has no signing key.';
