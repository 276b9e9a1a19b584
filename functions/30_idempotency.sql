-- Idempotency-Key (Stripe's semantics, IETF draft): keys are per account and
-- kept 24 hours. The HTTP layer calls api.claim_idempotency_key before the
-- effect and api.save_idempotent_response after it, in the same transaction.

create or replace function api.claim_idempotency_key(key text, fingerprint text)
returns api.idempotent_response
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable', 'agent']);
  v_stored lic.idempotency_keys;
begin
  if key is null or length(key) not between 1 and 255 then
    raise exception using errcode = 'LINVL', column = 'Idempotency-Key',
      message = 'Idempotency-Key must be 1 to 255 characters';
  end if;
  -- Held until commit: a concurrent request with the same key fails at once.
  if not pg_try_advisory_xact_lock(hashtextextended(v_account_id::text || '/' || key, 0)) then
    raise exception using errcode = 'LIDEM', column = 'Idempotency-Key',
      message = 'a request with this Idempotency-Key is still in progress; retry later';
  end if;
  select i.* into v_stored
  from lic.idempotency_keys as i
  where i.key = claim_idempotency_key.key;
  if not found then
    return null;
  end if;
  if v_stored.created_at < now() - interval '24 hours' then
    delete from lic.idempotency_keys as i
    where i.account_id = v_account_id and i.key = claim_idempotency_key.key;
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
'Lock an Idempotency-Key for this transaction; returns the stored response of an earlier request with the same '
'key and fingerprint, or null to go ahead. Errors: LIDEM (409) in progress, LIDPL (422) different request, '
'LINVL (422).';

create or replace function api.save_idempotent_response(key text, fingerprint text, status integer, body jsonb)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'publishable', 'agent']);
begin
  if key is null or fingerprint is null or status is null then
    raise exception using errcode = 'LINVL', message = 'key, fingerprint and status are required';
  end if;
  -- A clear secret (a new API key) or token (a new agent token) is never
  -- stored: a replay answers without it.
  insert into lic.idempotency_keys (account_id, key, request_fingerprint, response_status, response_body)
  values (
    v_account_id, key, fingerprint, status,
    case when jsonb_typeof(body) = 'object' then body - 'secret' - 'token' else body end
  );
end;
$$;
comment on function api.save_idempotent_response(text, text, integer, jsonb) is
'Store the response of a request made with an Idempotency-Key claimed in this transaction; a top-level '
'"secret" (a new API key) or "token" (a new agent token) is left out, so a replay answers without it.';

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
  with gone as (
    select i.account_id, i.key
    from lic.idempotency_keys as i
    where i.created_at < purge_idempotency_keys.at - interval '24 hours'
    order by i.created_at
    limit batch_size
  )
  delete from lic.idempotency_keys as i
  using gone
  where i.account_id = gone.account_id and i.key = gone.key;
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
