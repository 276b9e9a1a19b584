-- Idempotency-Key (Stripe's semantics, IETF draft): keys are per account and
-- principal and kept 24 hours. The HTTP layer authenticates, then calls
-- api.claim_idempotency_key before the effect and api.save_idempotent_response
-- after it, in the same transaction.

-- Whose answers a transaction reaches: the principal of the signed context
-- (decision 57), the API key or the agent, so a stored answer is replayed
-- only to the key that passed the function's own checks when it was made. A
-- context without a principal id is one principal per kind (the nil uuid).
create or replace function private.idempotency_principal(out kind text, out principal_id uuid)
returns record
language plpgsql
stable
as $$
declare
  v_context record := private.current_context();
begin
  kind := v_context.kind;
  principal_id := coalesce(v_context.principal_id, '00000000-0000-0000-0000-000000000000');
end;
$$;
comment on function private.idempotency_principal() is
'The kind and id of the principal whose Idempotency-Key answers this transaction reaches (nil uuid for none).';

create or replace function api.claim_idempotency_key(key text, fingerprint text)
returns api.idempotent_response
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable', 'agent'], member_role => 'developer');
  v_principal record := private.idempotency_principal();
  v_stored lic.idempotency_keys;
begin
  if key is null or length(key) not between 1 and 255 then
    raise exception using errcode = 'LINVL', column = 'Idempotency-Key',
      message = 'Idempotency-Key must be 1 to 255 characters';
  end if;
  -- Held until commit: a concurrent request of the same principal with the
  -- same key fails at once; another principal's does not wait.
  if not pg_try_advisory_xact_lock(
    hashtextextended(format('%s/%s/%s/%s', v_account_id, v_principal.kind, v_principal.principal_id, key), 0)
  ) then
    raise exception using errcode = 'LIDEM', column = 'Idempotency-Key',
      message = 'a request with this Idempotency-Key is still in progress; retry later';
  end if;
  select i.* into v_stored
  from lic.idempotency_keys as i
  where
    i.account_id = v_account_id
    and i.principal_kind = v_principal.kind
    and i.principal_id = v_principal.principal_id
    and i.key = claim_idempotency_key.key;
  if not found then
    return null;
  end if;
  if v_stored.created_at < now() - interval '24 hours' then
    delete from lic.idempotency_keys as i
    where
      i.account_id = v_account_id
      and i.principal_kind = v_principal.kind
      and i.principal_id = v_principal.principal_id
      and i.key = claim_idempotency_key.key;
    return null;
  end if;
  if v_stored.request_fingerprint <> fingerprint then
    raise exception using errcode = 'LIDPL', column = 'Idempotency-Key',
      message = 'this Idempotency-Key was used with a different request';
  end if;
  return row(v_stored.response_status, v_stored.response_body)::api.idempotent_response;
end;
$$;
comment on function api.claim_idempotency_key(text, text) is
'Lock an Idempotency-Key of the current principal (API key or agent) for this transaction; returns the stored '
'response of an earlier request of the same principal with the same key and fingerprint, or null to go ahead. '
'Errors: LIDEM (409) in progress, LIDPL (422) different request, LINVL (422).';

create or replace function api.save_idempotent_response(key text, fingerprint text, status integer, body jsonb)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable', 'agent'], member_role => 'developer');
  v_principal record := private.idempotency_principal();
begin
  if key is null or fingerprint is null or status is null then
    raise exception using errcode = 'LINVL', message = 'key, fingerprint and status are required';
  end if;
  -- A clear secret (a new API key) or token (a new agent token) is never
  -- stored: a replay answers without it.
  insert into lic.idempotency_keys (
    account_id, principal_kind, principal_id, key, request_fingerprint, response_status, response_body
  )
  values (
    v_account_id, v_principal.kind, v_principal.principal_id, key, fingerprint, status,
    case when jsonb_typeof(body) = 'object' then body - 'secret' - 'token' else body end
  );
end;
$$;
comment on function api.save_idempotent_response(text, text, integer, jsonb) is
'Store the response of a request made with an Idempotency-Key claimed in this transaction, under the current '
'principal; a top-level "secret" (a new API key) or "token" (a new agent token) is left out, so a replay '
'answers without it.';

-- The purge at a given instant; worker.purge_idempotency_keys runs it at
-- now(), and tests that need another instant call it as lic_maint.
create or replace function private.purge_idempotency_keys(at timestamptz, batch_size integer)
returns integer
language plpgsql
volatile
as $$
declare
  v_count integer;
begin
  if batch_size is null or batch_size < 1 then
    raise exception using errcode = 'LINVL', column = 'batch_size', message = 'batch_size must be at least 1';
  end if;
  -- Oldest first. No row locks: a request that meets a stale key deletes it
  -- itself (api.claim_idempotency_key), and whichever delete comes second
  -- finds nothing to do.
  -- By the whole key: another principal's fresh answer under the same key
  -- string is another row (decision 57).
  with gone as (
    select i.account_id, i.principal_kind, i.principal_id, i.key
    from lic.idempotency_keys as i
    where i.created_at < purge_idempotency_keys.at - interval '24 hours'
    order by i.created_at
    limit batch_size
  )
  delete from lic.idempotency_keys as i
  using gone
  where
    i.account_id = gone.account_id and i.principal_kind = gone.principal_kind
    and i.principal_id = gone.principal_id and i.key = gone.key;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

-- The clock is read here, not taken from the caller: an instant from
-- lic_worker could purge every tenant's keys at once.
create or replace function worker.purge_idempotency_keys(batch_size integer default 1000)
returns integer
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.purge_idempotency_keys(at => pg_catalog.now(), batch_size => purge_idempotency_keys.batch_size);
$$;
comment on function worker.purge_idempotency_keys(integer) is
'Delete up to batch_size idempotency keys (with their stored responses) older than 24 hours, across tenants, '
'oldest first. Returns how many (call again while it returns batch_size). '
'Errors: LINVL batch_size below 1.';
