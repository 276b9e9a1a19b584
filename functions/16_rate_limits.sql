-- Rate limits (decision 59): counted here, so they hold across every API
-- process. Windows are calendar minutes; a bucket's count is the sum of its
-- rows for the minute, one row per server backend (sql/0032), so concurrent
-- requests never wait on each other's counter. Each backend's first request
-- of a bucket in a minute deletes past minutes' rows, skipping any row
-- another transaction holds, so cleaning never waits either and the tables
-- hold about two minutes of counts.

create or replace function private.count_request(account_id uuid, principal_id uuid, at timestamptz)
returns integer
language plpgsql
volatile
as $$
declare
  v_window timestamptz := pg_catalog.date_trunc('minute', at);
  v_total integer;
begin
  update lic.request_counts as c
  set requests = c.requests + 1
  where
    c.account_id = count_request.account_id
    and c.principal_id = count_request.principal_id
    and c.window_start = v_window
    and c.backend_pid = pg_catalog.pg_backend_pid();
  if not found then
    delete from lic.request_counts as c
    where
      c.account_id = count_request.account_id
      and (c.principal_id, c.window_start, c.backend_pid) in (
        select o.principal_id, o.window_start, o.backend_pid
        from lic.request_counts as o
        where o.account_id = count_request.account_id and o.window_start < v_window
        for update skip locked
      );
    insert into lic.request_counts (account_id, principal_id, window_start, backend_pid, requests)
    values (count_request.account_id, count_request.principal_id, v_window, pg_catalog.pg_backend_pid(), 1);
  end if;
  select sum(c.requests) into v_total
  from lic.request_counts as c
  where
    c.account_id = count_request.account_id
    and c.principal_id = count_request.principal_id
    and c.window_start = v_window;
  return v_total;
end;
$$;
comment on function private.count_request(uuid, uuid, timestamptz) is
'Count one request of an account''s principal (key, agent, or the account for Stripe) in at''s minute and '
'answer the minute''s count so far. Needs the account''s context (lic.request_counts is a tenant table).';

-- PL/pgSQL, not SQL: it runs on every request, and its plan is then cached.
create or replace function private.client_requests(client_hash bytea, at timestamptz)
returns integer
language plpgsql
stable
as $$
begin
  return (
    select coalesce(sum(c.requests), 0)::integer
    from private.client_request_counts as c
    where c.client_hash = client_requests.client_hash and c.window_start = pg_catalog.date_trunc('minute', at)
  );
end;
$$;
comment on function private.client_requests(bytea, timestamptz) is
'The requests a client address made in at''s minute that no key vouched for.';

create or replace function private.count_client_request(client_hash bytea, at timestamptz)
returns integer
language plpgsql
volatile
as $$
declare
  v_window timestamptz := pg_catalog.date_trunc('minute', at);
begin
  update private.client_request_counts as c
  set requests = c.requests + 1
  where
    c.client_hash = count_client_request.client_hash
    and c.window_start = v_window
    and c.backend_pid = pg_catalog.pg_backend_pid();
  if not found then
    -- Clients come and go: a hundred past rows per new one keeps the table
    -- to about the live minutes without one request paying for all of it.
    delete from private.client_request_counts as c
    where (c.client_hash, c.window_start, c.backend_pid) in (
      select o.client_hash, o.window_start, o.backend_pid
      from private.client_request_counts as o
      where o.window_start < v_window
      limit 100
      for update skip locked
    );
    insert into private.client_request_counts (client_hash, window_start, backend_pid, requests)
    values (count_client_request.client_hash, v_window, pg_catalog.pg_backend_pid(), 1);
  end if;
  return private.client_requests(client_hash, at);
end;
$$;
comment on function private.count_client_request(bytea, timestamptz) is
'Count one request of a client address in at''s minute and answer the minute''s count so far.';

create or replace function private.raise_rate_limited(per_minute integer, at timestamptz)
returns void
language plpgsql
stable
as $$
begin
  raise exception using
    errcode = 'LRATE',
    message = pg_catalog.format(
      'rate limit reached: %s requests a minute; retry in %s s', per_minute,
      pg_catalog.ceil(extract(epoch from pg_catalog.date_trunc('minute', at) + interval '1 minute' - at))
    );
end;
$$;
comment on function private.raise_rate_limited(integer, timestamptz) is
'Refuse a request over its limit. Errors: LRATE, always.';

create or replace function service.authenticate_request(secret text, client_hash bytea, per_minute integer)
returns api.auth_context
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_context api.auth_context;
begin
  -- Before authentication: an address whose keys failed too often gets no lookup.
  if private.client_requests(client_hash, now()) >= per_minute then
    perform private.raise_rate_limited(per_minute, now());
  end if;
  v_context := api.authenticate(secret);
  -- After: per key or agent, however the header around it varies. A refused
  -- request rolls its own count back: it cost nothing to serve.
  if private.count_request(v_context.account_id, coalesce(v_context.api_key_id, v_context.agent_id), now())
    > per_minute then
    perform private.raise_rate_limited(per_minute, now());
  end if;
  return v_context;
end;
$$;
comment on function service.authenticate_request(text, bytea, integer) is
'api.authenticate for an HTTP request, under the rate limits: per client address (its keyed hash) before, '
'per key or agent after, per_minute each. Counts the request in its own transaction: when that transaction '
'fails, the web process calls service.count_failed_request. Errors: LRATE (429), LAUTH (401).';

create or replace function service.count_failed_request(secret text, client_hash bytea)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_context api.auth_context;
begin
  begin
    v_context := api.authenticate(secret);
  exception when sqlstate 'LAUTH' then
    perform private.count_client_request(client_hash, now());
    return;
  end;
  perform private.count_request(v_context.account_id, coalesce(v_context.api_key_id, v_context.agent_id), now());
end;
$$;
comment on function service.count_failed_request(text, bytea) is
'Count a request whose transaction failed (its own count rolled back with it): per key or agent when the key '
'authenticates, else per client address. Call it in a transaction of its own.';

create or replace function service.limit_client(client_hash bytea, per_minute integer)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if private.count_client_request(client_hash, now()) > per_minute then
    perform private.raise_rate_limited(per_minute, now());
  end if;
end;
$$;
comment on function service.limit_client(bytea, integer) is
'Count a request of a client address (its keyed hash) that no key vouches for, such as a portal page, in a '
'transaction of its own. Errors: LRATE (429) past per_minute in the minute.';

create or replace function service.limit_stripe_deliveries(account_id uuid, per_minute integer)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.stripe_begin(account_id);
  if private.count_request(account_id, account_id, now()) > per_minute then
    perform private.raise_rate_limited(per_minute, now());
  end if;
end;
$$;
comment on function service.limit_stripe_deliveries(uuid, integer) is
'Count a delivery to an account''s Stripe webhook, in a transaction of its own, before its signature is '
'checked: Stripe sends every tenant''s events from shared addresses, so the account is the bucket. '
'Errors: LNTFD (404) for an unknown account, LRATE (429) past per_minute in the minute.';
