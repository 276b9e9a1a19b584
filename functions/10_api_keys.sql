-- Tokens: lic_sk_ (secret key), lic_pk_ (publishable key) or lic_ak_ (agent
-- token), then the account id (32 hex), 160 random bits (40 hex) and an 8-hex
-- checksum of all before it. The account id in the token lets
-- api.authenticate set the tenant context before its lookup, so even
-- authentication runs under RLS; the checksum rejects a mistyped token
-- without touching a table.

create or replace function private.token_checksum(body text)
returns text
language sql
stable
parallel safe
as $$
  select pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(body, 'UTF8')), 'hex'), 8);
$$;
comment on function private.token_checksum(text) is
'The 8-hex checksum that ends a token whose other characters are body.';

-- The one place tokens are minted: API keys and agent tokens.
create or replace function private.mint_token(prefix text, account_id uuid)
returns text
language plpgsql
volatile
as $$
declare
  v_body text;
begin
  v_body := prefix || pg_catalog.replace(account_id::text, '-', '')
    -- sha256 over two v4 UUIDs (244 random bits) extracts 160 uniform bits.
    || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(
      pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) || pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
    ), 'hex'), 40);
  return v_body || private.token_checksum(v_body);
end;
$$;
comment on function private.mint_token(text, uuid) is
'A new token with the given prefix (lic_sk_, lic_pk_, lic_ak_) for an account.';

create or replace function private.token_hash(secret text)
returns bytea
language sql
stable
parallel safe
as $$
  select pg_catalog.sha256(pg_catalog.convert_to(secret, 'UTF8'));
$$;
comment on function private.token_hash(text) is
'How tokens are stored and looked up: their sha256.';

create or replace function private.token_redacted(secret text)
returns text
language sql
immutable
parallel safe
as $$
  select pg_catalog.left(secret, 7) || '…' || pg_catalog.right(secret, 4);
$$;
comment on function private.token_redacted(text) is
'How a token is shown after its creation: prefix and last four characters.';

create or replace function private.token_account(secret text)
returns uuid
language plpgsql
immutable
parallel safe
as $$
begin
  -- Plain string tests, no regular expression: this runs on every request.
  -- The checksum covers the random part; the account part must be hex.
  if length(secret) is distinct from 87 or left(secret, 7) not in ('lic_sk_', 'lic_pk_', 'lic_ak_')
    or private.token_checksum(left(secret, 79)) <> right(secret, 8)
    or substr(secret, 8, 32) !~ '^[0-9a-f]+$' then
    raise exception using errcode = 'LAUTH', message = 'invalid API key: malformed or mistyped';
  end if;
  return substr(secret, 8, 32)::uuid;
end;
$$;
comment on function private.token_account(text) is
'The account a token names, after checking its format and checksum. Errors: LAUTH.';

create or replace function private.api_key_view(k lic.api_keys, secret text default null)
returns api.api_key
language sql
immutable
as $$
  select row(
    k.id, k.kind, k.name, k.redacted, k.expires_at, k.revoked_at, k.last_used_at, k.rolled_from,
    k.created_at, secret
  )::api.api_key;
$$;
comment on function private.api_key_view(lic.api_keys, text) is
'The public shape of a stored API key; secret is only passed when the key is new.';

-- The one place keys are minted: account creation, api.create_api_key and
-- api.roll_api_key all come here.
create or replace function private.issue_api_key(
  account_id uuid,
  kind text,
  name text default null,
  rolled_from uuid default null
)
returns api.api_key
language plpgsql
volatile
as $$
declare
  v_secret text;
  v_key lic.api_keys;
begin
  if kind is null or kind not in ('secret', 'publishable') then
    raise exception using errcode = 'LINVL', column = 'kind',
      message = 'kind must be "secret" or "publishable"';
  end if;
  v_secret := private.mint_token(case kind when 'secret' then 'lic_sk_' else 'lic_pk_' end, account_id);
  insert into lic.api_keys (account_id, kind, name, key_hash, redacted, rolled_from)
  values (
    issue_api_key.account_id, issue_api_key.kind, issue_api_key.name,
    private.token_hash(v_secret),
    private.token_redacted(v_secret),
    issue_api_key.rolled_from
  )
  returning * into v_key;
  return private.api_key_view(v_key, v_secret);
end;
$$;
comment on function private.issue_api_key(uuid, text, text, uuid) is
'Mint a key for an account and return it with its clear secret (the only time it is shown).';

create or replace function api.authenticate(secret text)
returns api.auth_context
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid;
  v_hash bytea := private.token_hash(secret);
  v_key lic.api_keys;
  v_agent lic.agents;
begin
  v_account_id := private.token_account(secret);
  -- A login bound to an account acts for that account only (decision 52).
  if private.login_account() <> v_account_id then
    raise exception using errcode = 'LAUTH', message = 'this database login is bound to another account';
  end if;
  -- Provisional, unsigned account (no kind: no api function accepts it) so
  -- the lookup itself runs under lic_definer's tenant policy.
  perform set_config('lic.account_id', v_account_id::text, true);
  if starts_with(secret, 'lic_ak_') then
    select a.* into v_agent from lic.agents as a where a.account_id = v_account_id and a.token_hash = v_hash;
    if not found then
      raise exception using errcode = 'LAUTH', message = 'invalid agent token';
    end if;
    if v_agent.status <> 'active' then
      raise exception using errcode = 'LAUTH', message = 'this agent has been revoked';
    end if;
    perform private.set_context(v_account_id, 'agent', v_agent.id);
    return row(v_account_id, null, 'agent', v_agent.id)::api.auth_context;
  end if;
  select k.* into v_key from lic.api_keys as k where k.account_id = v_account_id and k.key_hash = v_hash;
  if not found then
    raise exception using errcode = 'LAUTH', message = 'invalid API key';
  end if;
  if v_key.revoked_at is not null then
    raise exception using errcode = 'LAUTH', message = 'this API key has been revoked';
  end if;
  if v_key.expires_at <= now() then
    raise exception using errcode = 'LAUTH', message = 'this API key has expired';
  end if;
  perform private.set_context(v_account_id, v_key.kind, v_key.id);
  -- Minute resolution keeps a busy key from writing its row on every request.
  if v_key.last_used_at is null or v_key.last_used_at < now() - interval '1 minute' then
    update lic.api_keys as k
    set last_used_at = now()
    where k.account_id = v_account_id
      and k.id = v_key.id
      and (k.last_used_at is null or k.last_used_at < now() - interval '1 minute');
  end if;
  return row(v_account_id, v_key.id, v_key.kind, null)::api.auth_context;
end;
$$;
comment on function api.authenticate(text) is
'Resolve an API key or agent token and set the tenant context for the rest of the transaction; call it first. '
'Errors: LAUTH (401) for a malformed, unknown, revoked or expired key or token.';

create or replace function api.create_api_key(kind text, name text default null)
returns api.api_key
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.issue_api_key(private.require_account(member_role => 'developer'), kind, name);
end;
$$;
comment on function api.create_api_key(text, text) is
'Create a secret or publishable key; the answer carries the clear key, shown this once. Errors: LINVL (422).';

create or replace function api.list_api_keys(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.api_key
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.require_account();
  -- Keyset pagination, the pattern every list function follows: walk the
  -- primary key index away from the cursor, one row past the page.
  if ending_before is null then
    return query
    select (private.api_key_view(k)).*
    from lic.api_keys as k
    where starting_after is null or k.id < starting_after
    order by k.id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (p.key).*
    from (
      select private.api_key_view(k) as key, k.id
      from lic.api_keys as k
      where k.id > ending_before
      order by k.id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_api_keys(integer, uuid, uuid) is
'List the account''s keys newest first (never their secrets), as a keyset page of up to page_limit + 1 rows.';

create or replace function api.get_api_key(api_key_id uuid)
returns api.api_key
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_key lic.api_keys;
begin
  perform private.require_account();
  select k.* into v_key from lic.api_keys as k where k.id = api_key_id;
  if not found then
    raise exception using errcode = 'LNTFD', message = 'API key not found', column = 'id';
  end if;
  return private.api_key_view(v_key);
end;
$$;
comment on function api.get_api_key(uuid) is
'One key of the account, without its secret. Errors: LNTFD (404).';

create or replace function api.roll_api_key(api_key_id uuid, expires_at timestamptz default null)
returns api.api_key
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_old lic.api_keys;
  v_expires_at timestamptz := coalesce(roll_api_key.expires_at, now() + interval '24 hours');
begin
  perform private.require_account(member_role => 'developer');
  select k.* into v_old from lic.api_keys as k where k.id = api_key_id for update;
  if not found then
    raise exception using errcode = 'LNTFD', message = 'API key not found', column = 'id';
  end if;
  if v_old.revoked_at is not null or v_old.expires_at <= now() then
    raise exception using errcode = 'LSTAT', message = 'a revoked or expired key cannot be rolled';
  end if;
  if v_expires_at < now() or v_expires_at > now() + interval '7 days' then
    raise exception using errcode = 'LINVL', column = 'expires_at',
      message = 'expires_at must be between now and 7 days from now';
  end if;
  -- The old key keeps working until the overlap ends, never longer than before.
  update lic.api_keys as k
  set expires_at = least(k.expires_at, v_expires_at)
  where k.account_id = v_old.account_id and k.id = v_old.id;
  return private.issue_api_key(v_old.account_id, v_old.kind, v_old.name, v_old.id);
end;
$$;
comment on function api.roll_api_key(uuid, timestamptz) is
'Replace a key: a new key of the same kind is returned (secret shown once) and the old one stays valid '
'until expires_at (default 24 hours, at most 7 days; now ends it at once). Errors: LNTFD (404), LSTAT (409), '
'LINVL (422).';

create or replace function api.revoke_api_key(api_key_id uuid)
returns api.api_key
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_key lic.api_keys;
begin
  perform private.require_account(member_role => 'developer');
  -- Lock every secret key of the account so two concurrent revokes cannot
  -- both see another key left and together lock the tenant out.
  perform from lic.api_keys as k where k.kind = 'secret' for update;
  select k.* into v_key from lic.api_keys as k where k.id = api_key_id;
  if not found then
    raise exception using errcode = 'LNTFD', message = 'API key not found', column = 'id';
  end if;
  if v_key.revoked_at is not null then
    return private.api_key_view(v_key);
  end if;
  if v_key.kind = 'secret' and not exists (
    select from lic.api_keys as k
    where k.kind = 'secret' and k.id <> v_key.id and k.revoked_at is null
      and (k.expires_at is null or k.expires_at > now())
  ) then
    raise exception using errcode = 'LSTAT',
      message = 'the last active secret key cannot be revoked; create or roll another first';
  end if;
  update lic.api_keys as k
  set revoked_at = now()
  where k.account_id = v_key.account_id and k.id = v_key.id
  returning k.* into v_key;
  return private.api_key_view(v_key);
end;
$$;
comment on function api.revoke_api_key(uuid) is
'Revoke a key at once; revoking it again returns it unchanged. The last active secret key cannot be revoked. '
'Errors: LNTFD (404), LSTAT (409).';
