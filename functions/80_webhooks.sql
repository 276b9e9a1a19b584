-- Outbound webhooks (decisions 34-35, 61-62).
--
-- Fan-out: every row inserted into lic.events of a subscribable type becomes,
-- in the same transaction, one pending delivery per enabled endpoint of its
-- account that subscribes to its type (the trigger below), whoever emits it:
-- an api function (lic_definer, tenant context) or a worker sweep (lic_maint,
-- no context, through the __maint policies). 'ping' goes only where
-- api.send_test_webhook sends it; an endpoint's creation, updates and
-- deletion go nowhere (decision 61). Any new delivery notifies the webhook
-- channel (private.webhook_channel: a name only Licentric's roles can learn,
-- decision 54), on which the worker listens.
--
-- Delivery: the worker claims due deliveries, a share per account
-- (worker.claim_webhook_deliveries, decision 62: FOR UPDATE SKIP LOCKED, a
-- lease that is also a visibility timeout), sends
-- outside any transaction, then records the outcome
-- (worker.record_webhook_attempt), which schedules the next attempt, finishes
-- the delivery or disables the endpoint. A disabled endpoint receives
-- nothing: disabling it fails its pending deliveries (Stripe drops the
-- remaining retries too); retry and replay bring them back once it is enabled.

-- ---------------------------------------------------------------------------
-- Helpers

-- The event types an endpoint may subscribe to, the only ones fanned out:
-- every type Licentric emits but ping and an endpoint's creation, updates and
-- deletion, which answer the account's own call and, sent to its other
-- endpoints, made managing n endpoints cost O(n²) deliveries (decision 61).
create or replace function private.webhook_event_types()
returns text[]
language sql
immutable
parallel safe
as $$
  select array[
    'agent.created', 'agent.revoked', 'agent.token_rolled', 'agent.updated',
    'budget.created', 'budget.deleted', 'budget.exceeded', 'budget.threshold_reached', 'budget.updated',
    'customer.created', 'customer.deleted', 'customer.updated',
    'entitlement.created', 'entitlement.updated',
    'license.canceled', 'license.created', 'license.entitlements_updated', 'license.expired', 'license.past_due',
    'license.policy_changed', 'license.reinstated', 'license.renewed', 'license.suspended', 'license.updated',
    'license.user_added', 'license.user_removed',
    'license_policy.archived', 'license_policy.created', 'license_policy.entitlement_attached',
    'license_policy.entitlement_detached', 'license_policy.updated',
    'machine.activated', 'machine.deactivated', 'machine.transferred',
    'member.added', 'member.invitation_revoked', 'member.invited', 'member.joined', 'member.ownership_transferred',
    'member.removed', 'member.role_changed',
    'meter.archived', 'meter.created', 'meter.updated',
    'webhook_endpoint.disabled'
  ]::text[];
$$;
comment on function private.webhook_event_types() is
'The event types a webhook endpoint may subscribe to, the only ones fanned out (every type Licentric emits but '
'ping, webhook_endpoint.created, webhook_endpoint.updated and webhook_endpoint.deleted, and a member''s sign-ins, '
'sign-outs and session revocations, which the audit log alone shows).';

create or replace function private.webhook_endpoint_view(e lic.webhook_endpoints)
returns api.webhook_endpoint
language sql
immutable
as $$
  select row(
    e.id, e.url, e.description, e.event_types, e.enabled, e.disabled_reason, e.disabled_at, e.secret_rotated_at,
    e.created_at, e.updated_at
  )::api.webhook_endpoint;
$$;
comment on function private.webhook_endpoint_view(lic.webhook_endpoints) is
'The public shape of a webhook endpoint (never its secrets).';

create or replace function private.webhook_delivery_view(d lic.webhook_deliveries)
returns api.webhook_delivery
language sql
immutable
as $$
  select row(
    d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at, d.last_attempt_at,
    d.last_status_code, d.succeeded_at, d.created_at
  )::api.webhook_delivery;
$$;
comment on function private.webhook_delivery_view(lic.webhook_deliveries) is
'The public shape of a webhook delivery.';

-- The body posted on every attempt, byte for byte the same each time (the
-- signatures cover it): Stripe's event envelope plus the account.
create or replace function private.webhook_payload(e lic.events)
returns text
language sql
stable
parallel safe
as $$
  select pg_catalog.jsonb_build_object(
    'id', e.id,
    'object', 'event',
    'type', e.type,
    'created', floor(extract(epoch from e.created_at))::bigint,
    'account', e.account_id,
    'data', pg_catalog.jsonb_build_object('object', e.object, 'previous_attributes', e.previous_attributes)
  )::text;
$$;
comment on function private.webhook_payload(lic.events) is
'The JSON text a webhook delivery of this event posts: {id, object: event, type, created (unix seconds), account, '
'data: {object, previous_attributes}}.';

-- A URL a customer supplies: the syntactic rules. The resolved addresses are
-- judged in Python, at registration and again at connect time (decision 36).
create or replace function private.check_webhook_url(url text)
returns text
language plpgsql
immutable
as $$
declare
  v_authority text;
begin
  if url is null or length(url) > 2048 then
    raise exception using errcode = 'LINVL', column = 'url', message = 'url must be given, at most 2,048 characters';
  end if;
  if url ~ '[[:space:][:cntrl:]]' then
    raise exception using errcode = 'LINVL', column = 'url',
      message = 'url must not contain spaces or control characters';
  end if;
  if url !~* '^https?://' then
    raise exception using errcode = 'LINVL', column = 'url', message = 'url must be an http or https URL';
  end if;
  v_authority := substring(url from '^[A-Za-z]+://([^/?#]*)');
  if strpos(v_authority, '@') > 0 then
    raise exception using errcode = 'LINVL', column = 'url', message = 'url must not contain credentials (user:pass@)';
  end if;
  if regexp_replace(v_authority, ':[0-9]*$', '') in ('', '[]') then
    raise exception using errcode = 'LINVL', column = 'url', message = 'url must name a host';
  end if;
  return url;
end;
$$;
comment on function private.check_webhook_url(text) is
'The url unchanged if it is an http(s) URL of at most 2,048 characters with a host and no credentials. '
'Errors: LINVL.';

create or replace function private.check_webhook_event_types(event_types text[])
returns text[]
language plpgsql
immutable
as $$
declare
  v_unknown text;
begin
  if event_types is null or array_position(event_types, null) is not null then
    raise exception using errcode = 'LINVL', column = 'event_types',
      message = 'event_types must be a list of event types (empty: every type)';
  end if;
  select string_agg(distinct t.type, ', ' order by t.type) into v_unknown
  from unnest(event_types) as t (type)
  where not t.type = any(private.webhook_event_types());
  if v_unknown is not null then
    raise exception using errcode = 'LINVL', column = 'event_types',
      message = format('unknown event types: %s', v_unknown);
  end if;
  return array(select distinct t.type from unnest(event_types) as t (type) order by t.type);
end;
$$;
comment on function private.check_webhook_event_types(text[]) is
'The event types sorted without duplicates, if each is known (private.webhook_event_types). Errors: LINVL.';

create or replace function private.check_webhook_description(description text)
returns text
language plpgsql
immutable
as $$
begin
  if length(description) > 500 then
    raise exception using errcode = 'LINVL', column = 'description',
      message = 'description must be at most 500 characters';
  end if;
  -- '' clears it.
  return nullif(description, '');
end;
$$;
comment on function private.check_webhook_description(text) is
'The description to store: null for '''' or null, refused past 500 characters. Errors: LINVL.';

create or replace function private.check_webhook_secret(secret_ciphertext bytea)
returns bytea
language plpgsql
immutable
as $$
begin
  if secret_ciphertext is null or length(secret_ciphertext) = 0 then
    raise exception using errcode = 'LINVL', column = 'secret_ciphertext', message = 'secret_ciphertext must be given';
  end if;
  return secret_ciphertext;
end;
$$;
comment on function private.check_webhook_secret(bytea) is
'The secret ciphertext unchanged unless it is null or empty. Errors: LINVL.';

create or replace function private.lock_webhook_endpoint(endpoint_id uuid)
returns lic.webhook_endpoints
language plpgsql
volatile
as $$
declare
  v_endpoint lic.webhook_endpoints;
begin
  select e.* into v_endpoint from lic.webhook_endpoints as e
  where e.account_id = private.context_account_id() and e.id = lock_webhook_endpoint.endpoint_id
  -- The key never changes: deliveries being made (whose foreign key takes
  -- KEY SHARE) need not wait.
  for no key update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'endpoint_id', message = 'webhook endpoint not found';
  end if;
  return v_endpoint;
end;
$$;
comment on function private.lock_webhook_endpoint(uuid) is
'The account''s webhook endpoint with this id, locked for a change (FOR NO KEY UPDATE). Errors: LNTFD.';

create or replace function private.find_webhook_endpoint(endpoint_id uuid)
returns lic.webhook_endpoints
language plpgsql
stable
as $$
declare
  v_endpoint lic.webhook_endpoints;
begin
  select e.* into v_endpoint from lic.webhook_endpoints as e
  where e.account_id = private.context_account_id() and e.id = find_webhook_endpoint.endpoint_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'endpoint_id', message = 'webhook endpoint not found';
  end if;
  return v_endpoint;
end;
$$;
comment on function private.find_webhook_endpoint(uuid) is
'The account''s webhook endpoint with this id. Errors: LNTFD.';

-- Disabling fails the endpoint's pending deliveries. Rows another
-- transaction holds are skipped, never waited for (no deadlock with an
-- attempt being recorded): that transaction sees the endpoint disabled once
-- this one commits (worker.record_webhook_attempt locks the endpoint before
-- it decides on a failure). A delivery in flight keeps its lease, so its
-- attempt is still recorded when it comes back.
create or replace function private.disable_webhook_endpoint(e lic.webhook_endpoints, reason text, at timestamptz)
returns lic.webhook_endpoints
language plpgsql
volatile
as $$
declare
  v_after lic.webhook_endpoints;
begin
  update lic.webhook_endpoints as w
  set enabled = false, disabled_reason = disable_webhook_endpoint.reason, disabled_at = disable_webhook_endpoint.at,
    updated_at = now()
  where w.account_id = e.account_id and w.id = e.id
  returning w.* into v_after;
  update lic.webhook_deliveries as d
  set status = 'failed', next_attempt_at = null
  where (d.account_id, d.id) in (
    select p.account_id, p.id
    from lic.webhook_deliveries as p
    where p.account_id = e.account_id and p.endpoint_id = e.id and p.status = 'pending'
    for update skip locked
  );
  return v_after;
end;
$$;
comment on function private.disable_webhook_endpoint(lic.webhook_endpoints, text, timestamptz) is
'Disable a (locked) webhook endpoint with a reason and fail its pending deliveries that no other transaction '
'holds; returns the endpoint after. Emits nothing (the caller does).';

create or replace function private.disable_webhook_endpoint_after_failure(
  e lic.webhook_endpoints,
  reason text,
  at timestamptz
)
returns void
language plpgsql
volatile
as $$
declare
  v_after lic.webhook_endpoints := private.disable_webhook_endpoint(e, reason, at);
  v_view api.webhook_endpoint := private.webhook_endpoint_view(v_after);
begin
  perform private.emit_event(
    e.account_id, 'webhook_endpoint.disabled', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(private.webhook_endpoint_view(e)), to_jsonb(v_view))
  );
end;
$$;
comment on function private.disable_webhook_endpoint_after_failure(lic.webhook_endpoints, text, timestamptz) is
'Disable a (locked) webhook endpoint its deliveries failed on, with the reason, and emit webhook_endpoint.disabled.';

-- Standard Webhooks' schedule stretched to about three days (75 h 35 min in
-- all, then the delivery fails): the delay after attempt n, without jitter.
create or replace function private.webhook_retry_delay(attempt integer)
returns interval
language sql
immutable
parallel safe
as $$
  select (
    array[
      '5 seconds', '5 minutes', '30 minutes', '2 hours', '5 hours', '10 hours', '10 hours', '24 hours', '24 hours'
    ]::interval[]
  )[attempt];
$$;
comment on function private.webhook_retry_delay(integer) is
'The delay before the attempt after attempt n (1-9: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 24 h, 24 h), '
'without jitter; null once the schedule is spent (attempt 10 is the last).';

create or replace function private.webhook_next_attempt_at(
  attempt integer,
  retry_after_seconds integer,
  at timestamptz
)
returns timestamptz
language plpgsql
volatile
as $$
declare
  -- ±20 % jitter, so endpoints that failed together do not retry together.
  v_delay interval := private.webhook_retry_delay(attempt) * (0.8 + 0.4 * pg_catalog.random());
begin
  if v_delay is null then
    return null;
  end if;
  -- Retry-After is honoured, up to a day.
  if retry_after_seconds > 0 then
    v_delay := greatest(v_delay, make_interval(secs => least(retry_after_seconds, 86400)));
  end if;
  return at + v_delay;
end;
$$;
comment on function private.webhook_next_attempt_at(integer, integer, timestamptz) is
'When the attempt after attempt n is due, counted from at: the schedule''s delay with ±20 % jitter, at least '
'retry_after_seconds (capped at 24 h) when given; null once the schedule is spent.';

-- Any role may LISTEN on, or NOTIFY, any channel: with a well-known name a
-- tenant's login could watch the service's delivery rate or wake the
-- dispatcher at will. The name is derived from the context signing key,
-- which only lic_definer reads (decision 54).
create or replace function private.webhook_channel()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select
    'licentric_webhooks_' || pg_catalog.left(
      pg_catalog.encode(pg_catalog.sha256(k.key || pg_catalog.convert_to('webhook channel', 'UTF8')), 'hex'), 32
    )
  from private.context_signing_keys as k;
$$;
comment on function private.webhook_channel() is
'The NOTIFY channel of the webhook dispatcher: a name no role outside Licentric''s own can learn.';

create or replace function worker.webhook_channel()
returns text
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.webhook_channel();
$$;
comment on function worker.webhook_channel() is
'The channel the webhook dispatcher LISTENs on (every new, retried or released delivery notifies it).';

create or replace function private.notify_webhooks()
returns void
language sql
volatile
as $$
  select pg_catalog.pg_notify(private.webhook_channel(), '');
$$;
comment on function private.notify_webhooks() is
'Wake the webhook workers (NOTIFY on private.webhook_channel()) when the transaction commits.';

-- ---------------------------------------------------------------------------
-- Fan-out

create or replace function private.tg_events__fan_out()
returns trigger
language plpgsql
volatile
as $$
begin
  if not new.type = any(private.webhook_event_types()) then
    return null;
  end if;
  -- webhook_endpoint.disabled reaches the account's other endpoints only: the
  -- one it is about is disabled already.
  insert into lic.webhook_deliveries (account_id, endpoint_id, event_id, event_type, next_attempt_at)
  select new.account_id, e.id, new.id, new.type, now()
  from lic.webhook_endpoints as e
  where
    e.account_id = new.account_id
    and e.enabled
    and (e.event_types = '{}' or new.type = any(e.event_types));
  if found then
    perform private.notify_webhooks();
  end if;
  return null;
end;
$$;
comment on function private.tg_events__fan_out() is
'Makes one pending delivery of a new event of a subscribable type (private.webhook_event_types) per enabled '
'endpoint of its account subscribed to its type, and notifies the webhook channel.';

create or replace trigger events__fan_out
after insert on lic.events
for each row execute function private.tg_events__fan_out();

-- ---------------------------------------------------------------------------
-- Endpoints

create or replace function api.create_webhook_endpoint(
  url text,
  secret_ciphertext bytea,
  event_types text[] default '{}',
  description text default null
)
returns api.webhook_endpoint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_endpoint lic.webhook_endpoints;
  v_view api.webhook_endpoint;
begin
  insert into lic.webhook_endpoints as e (account_id, url, description, event_types, secret_ciphertext)
  values (
    v_account_id,
    private.check_webhook_url(url),
    private.check_webhook_description(description),
    private.check_webhook_event_types(coalesce(event_types, '{}')),
    private.check_webhook_secret(secret_ciphertext)
  )
  returning e.* into v_endpoint;
  v_view := private.webhook_endpoint_view(v_endpoint);
  perform private.emit_event(v_account_id, 'webhook_endpoint.created', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.create_webhook_endpoint(text, bytea, text[], text) is
'Register a webhook endpoint: url (http or https, a host, no credentials, at most 2,048 characters), the signing '
'secret encrypted by the web layer (secret_ciphertext; SQL never sees it in clear), event_types (known types; '
'empty: every type), description (at most 500 characters). Enabled at once. Emits webhook_endpoint.created. '
'Errors: LINVL (422), LPLAN (402) the tenant plan''s endpoint limit is reached.';

create or replace function api.get_webhook_endpoint(endpoint_id uuid)
returns api.webhook_endpoint
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
begin
  return private.webhook_endpoint_view(private.find_webhook_endpoint(endpoint_id));
end;
$$;
comment on function api.get_webhook_endpoint(uuid) is
'One webhook endpoint of the account. Errors: LNTFD (404).';

create or replace function api.list_webhook_endpoints(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.webhook_endpoint
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
begin
  if ending_before is null then
    return query
    select (private.webhook_endpoint_view(e)).*
    from lic.webhook_endpoints as e
    where e.account_id = v_account_id and (starting_after is null or e.id < starting_after)
    order by e.id desc
    limit v_rows;
  else
    return query
    select (p.endpoint).*
    from (
      select private.webhook_endpoint_view(e) as endpoint, e.id
      from lic.webhook_endpoints as e
      where e.account_id = v_account_id and e.id > ending_before
      order by e.id
      limit v_rows
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_webhook_endpoints(integer, uuid, uuid) is
'List the account''s webhook endpoints newest first, as a keyset page of up to page_limit + 1 rows. '
'Errors: LINVL (422).';

create or replace function api.update_webhook_endpoint(
  endpoint_id uuid,
  url text default null,
  event_types text[] default null,
  description text default null,
  enabled boolean default null
)
returns api.webhook_endpoint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_old lic.webhook_endpoints := private.lock_webhook_endpoint(endpoint_id);
  v_new lic.webhook_endpoints := v_old;
  v_before api.webhook_endpoint := private.webhook_endpoint_view(v_old);
  v_disable boolean := v_old.enabled and not coalesce(enabled, true);
  v_view api.webhook_endpoint;
begin
  if url is not null then
    v_new.url := private.check_webhook_url(url);
  end if;
  if event_types is not null then
    v_new.event_types := private.check_webhook_event_types(event_types);
  end if;
  if description is not null then
    v_new.description := private.check_webhook_description(description);
  end if;
  if enabled and not v_old.enabled then
    v_new.enabled := true;
    v_new.disabled_reason := null;
    v_new.disabled_at := null;
    v_new.failing_since := null;
  end if;
  if to_jsonb(v_new) = to_jsonb(v_old) and not v_disable then
    return v_before;
  end if;
  update lic.webhook_endpoints as e
  set
    url = v_new.url, event_types = v_new.event_types, description = v_new.description, enabled = v_new.enabled,
    disabled_reason = v_new.disabled_reason, disabled_at = v_new.disabled_at, failing_since = v_new.failing_since,
    updated_at = now()
  where e.account_id = v_account_id and e.id = v_old.id
  returning e.* into v_new;
  if v_disable then
    v_new := private.disable_webhook_endpoint(v_new, 'disabled by the account', now());
  end if;
  v_view := private.webhook_endpoint_view(v_new);
  perform private.emit_event(
    v_account_id, 'webhook_endpoint.updated', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.update_webhook_endpoint(uuid, text, text[], text, boolean) is
'Change a webhook endpoint''s url, event_types (empty: every type) or description ('''' clears it), or enable or '
'disable it. A null argument leaves a field unchanged. enabled => false disables it (reason ''disabled by the '
'account'') and fails its pending deliveries; enabled => true clears the reason and the failure clock. Emits '
'webhook_endpoint.updated when something changed. Errors: LNTFD (404), LINVL (422).';

create or replace function api.delete_webhook_endpoint(endpoint_id uuid)
returns api.webhook_endpoint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_endpoint lic.webhook_endpoints := private.find_webhook_endpoint(endpoint_id);
  v_view api.webhook_endpoint;
begin
  -- The account row before anything: deleting the endpoint lowers the
  -- account's endpoint count (41_plan_limits.sql), and a request holding that
  -- row (it created a license) may yet make a delivery to this endpoint,
  -- whose foreign key would wait for this delete: a deadlock.
  perform from lic.accounts as a where a.account_id = v_account_id for no key update;
  -- The deliveries, then the endpoint: an attempt being recorded
  -- holds its delivery and may wait for the endpoint, so the endpoint is
  -- locked last.
  delete from lic.webhook_deliveries as d where d.account_id = v_account_id and d.endpoint_id = v_endpoint.id;
  delete from lic.webhook_endpoints as e
  where e.account_id = v_account_id and e.id = v_endpoint.id
  returning e.* into v_endpoint;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'endpoint_id', message = 'webhook endpoint not found';
  end if;
  v_view := private.webhook_endpoint_view(v_endpoint);
  perform private.emit_event(v_account_id, 'webhook_endpoint.deleted', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.delete_webhook_endpoint(uuid) is
'Delete a webhook endpoint with its deliveries and their attempts; returns it as it was. Emits '
'webhook_endpoint.deleted. Errors: LNTFD (404).';

create or replace function api.webhook_endpoint_secrets(endpoint_id uuid)
returns table (secret_ciphertext bytea, expires_at timestamptz)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_endpoint lic.webhook_endpoints := private.find_webhook_endpoint(endpoint_id);
begin
  return query select v_endpoint.secret_ciphertext, null::timestamptz;
  if v_endpoint.previous_secret_expires_at > now() then
    return query select v_endpoint.previous_secret_ciphertext, v_endpoint.previous_secret_expires_at;
  end if;
end;
$$;
comment on function api.webhook_endpoint_secrets(uuid) is
'The encrypted signing secrets of a webhook endpoint, for the reveal route: the current one (expires_at null) '
'first, then the previous one while its rotation overlap lasts. Errors: LNTFD (404).';

create or replace function api.rotate_webhook_endpoint_secret(
  endpoint_id uuid,
  secret_ciphertext bytea,
  overlap interval default '24 hours'
)
returns api.webhook_endpoint
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_endpoint lic.webhook_endpoints := private.lock_webhook_endpoint(endpoint_id);
  v_before api.webhook_endpoint := private.webhook_endpoint_view(v_endpoint);
  v_view api.webhook_endpoint;
begin
  perform private.check_webhook_secret(secret_ciphertext);
  if overlap is null or overlap < interval '0' or overlap > interval '7 days' then
    raise exception using errcode = 'LINVL', column = 'overlap', message = 'overlap must be between 0 and 7 days';
  end if;
  update lic.webhook_endpoints as e
  set
    secret_ciphertext = rotate_webhook_endpoint_secret.secret_ciphertext,
    previous_secret_ciphertext = case when overlap > interval '0' then v_endpoint.secret_ciphertext end,
    previous_secret_expires_at = case when overlap > interval '0' then now() + overlap end,
    secret_rotated_at = now(),
    updated_at = now()
  where e.account_id = v_account_id and e.id = v_endpoint.id
  returning e.* into v_endpoint;
  v_view := private.webhook_endpoint_view(v_endpoint);
  perform private.emit_event(
    v_account_id, 'webhook_endpoint.updated', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.rotate_webhook_endpoint_secret(uuid, bytea, interval) is
'Replace a webhook endpoint''s signing secret (encrypted by the web layer). The old one keeps signing too until '
'now() + overlap (0 to 7 days; default 24 hours; 0 drops it at once); an earlier previous secret is dropped. '
'Emits webhook_endpoint.updated. Errors: LNTFD (404), LINVL (422).';

create or replace function api.send_test_webhook(endpoint_id uuid)
returns api.webhook_delivery
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_endpoint lic.webhook_endpoints := private.find_webhook_endpoint(endpoint_id);
  v_event_id uuid;
  v_delivery lic.webhook_deliveries;
begin
  if not v_endpoint.enabled then
    raise exception using errcode = 'LSTAT', column = 'endpoint_id', message = 'the webhook endpoint is disabled';
  end if;
  v_event_id := private.emit_event(
    v_account_id, 'ping', jsonb_build_object('object', 'webhook_endpoint', 'id', v_endpoint.id)
  );
  insert into lic.webhook_deliveries as d (account_id, endpoint_id, event_id, event_type, next_attempt_at)
  values (v_account_id, v_endpoint.id, v_event_id, 'ping', now())
  returning d.* into v_delivery;
  perform private.notify_webhooks();
  return private.webhook_delivery_view(v_delivery);
end;
$$;
comment on function api.send_test_webhook(uuid) is
'Send a ping event ({"object": "webhook_endpoint", "id": ...}) to this endpoint only; returns its delivery. '
'Errors: LNTFD (404), LSTAT (409) the endpoint is disabled.';

-- ---------------------------------------------------------------------------
-- Deliveries

create or replace function api.list_webhook_deliveries(
  endpoint_id uuid default null,
  status text default null,
  event_type text default null,
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.webhook_delivery
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
begin
  if status not in ('pending', 'succeeded', 'failed') then
    raise exception using errcode = 'LINVL', column = 'status', message = 'status must be pending, succeeded or failed';
  end if;
  if ending_before is null then
    return query
    select (private.webhook_delivery_view(d)).*
    from lic.webhook_deliveries as d
    where
      d.account_id = v_account_id
      and (list_webhook_deliveries.endpoint_id is null or d.endpoint_id = list_webhook_deliveries.endpoint_id)
      and (list_webhook_deliveries.status is null or d.status = list_webhook_deliveries.status)
      and (list_webhook_deliveries.event_type is null or d.event_type = list_webhook_deliveries.event_type)
      and (starting_after is null or d.id < starting_after)
    order by d.id desc
    limit v_rows;
  else
    return query
    select (p.delivery).*
    from (
      select private.webhook_delivery_view(d) as delivery, d.id
      from lic.webhook_deliveries as d
      where
        d.account_id = v_account_id
        and (list_webhook_deliveries.endpoint_id is null or d.endpoint_id = list_webhook_deliveries.endpoint_id)
        and (list_webhook_deliveries.status is null or d.status = list_webhook_deliveries.status)
        and (list_webhook_deliveries.event_type is null or d.event_type = list_webhook_deliveries.event_type)
        and d.id > ending_before
      order by d.id
      limit v_rows
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_webhook_deliveries(uuid, text, text, integer, uuid, uuid) is
'List the account''s webhook deliveries newest first, optionally only one endpoint''s, one status''s (pending, '
'succeeded, failed) or one event type''s, as a keyset page of up to page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_webhook_delivery(delivery_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_delivery lic.webhook_deliveries;
begin
  select d.* into v_delivery
  from lic.webhook_deliveries as d
  where d.account_id = v_account_id and d.id = get_webhook_delivery.delivery_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'delivery_id', message = 'webhook delivery not found';
  end if;
  return to_jsonb(private.webhook_delivery_view(v_delivery)) || jsonb_build_object(
    'attempts', coalesce((
      select jsonb_agg(
        jsonb_build_object(
          'attempt', a.attempt, 'started_at', a.started_at, 'latency_ms', a.latency_ms, 'status_code', a.status_code,
          'error_class', a.error_class, 'response_body', a.response_body
        )
        order by a.attempt
      )
      from lic.webhook_attempts as a
      where a.account_id = v_account_id and a.delivery_id = v_delivery.id
    ), '[]'::jsonb)
  );
end;
$$;
comment on function api.get_webhook_delivery(uuid) is
'One webhook delivery of the account with its attempts, oldest first: the api.webhook_delivery fields plus '
'"attempts": [{attempt, started_at, latency_ms, status_code, error_class, response_body}]. Errors: LNTFD (404).';

create or replace function api.retry_webhook_delivery(delivery_id uuid)
returns api.webhook_delivery
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_delivery lic.webhook_deliveries;
begin
  select d.* into v_delivery
  from lic.webhook_deliveries as d
  where d.account_id = v_account_id and d.id = retry_webhook_delivery.delivery_id
  for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'delivery_id', message = 'webhook delivery not found';
  end if;
  if not (private.find_webhook_endpoint(v_delivery.endpoint_id)).enabled then
    raise exception using errcode = 'LSTAT', column = 'delivery_id', message = 'the webhook endpoint is disabled';
  end if;
  if v_delivery.status = 'pending' and v_delivery.leased_until > now() then
    raise exception using errcode = 'LSTAT', column = 'delivery_id', message = 'the delivery is being sent right now';
  end if;
  update lic.webhook_deliveries as d
  set status = 'pending', next_attempt_at = now(), succeeded_at = null, lease_id = null, leased_until = null
  where d.account_id = v_account_id and d.id = v_delivery.id
  returning d.* into v_delivery;
  perform private.notify_webhooks();
  return private.webhook_delivery_view(v_delivery);
end;
$$;
comment on function api.retry_webhook_delivery(uuid) is
'Send a webhook delivery again now (the same event id; its attempts go on counting): back to pending, due at '
'once. Errors: LNTFD (404), LSTAT (409) the endpoint is disabled or the delivery is being sent.';

create or replace function api.replay_webhook_endpoint(
  endpoint_id uuid,
  since timestamptz,
  status text default 'failed'
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_endpoint lic.webhook_endpoints := private.find_webhook_endpoint(endpoint_id);
  v_count integer;
begin
  if since is null then
    raise exception using errcode = 'LINVL', column = 'since', message = 'since must be given';
  end if;
  if status is null or status not in ('failed', 'succeeded', 'all') then
    raise exception using errcode = 'LINVL', column = 'status', message = 'status must be failed, succeeded or all';
  end if;
  if not v_endpoint.enabled then
    raise exception using errcode = 'LSTAT', column = 'endpoint_id', message = 'the webhook endpoint is disabled';
  end if;
  update lic.webhook_deliveries as d
  set status = 'pending', next_attempt_at = now(), succeeded_at = null, lease_id = null, leased_until = null
  where
    d.account_id = v_account_id
    and d.endpoint_id = v_endpoint.id
    and d.created_at >= replay_webhook_endpoint.since
    and d.status <> 'pending'
    and (replay_webhook_endpoint.status = 'all' or d.status = replay_webhook_endpoint.status);
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform private.notify_webhooks();
  end if;
  return jsonb_build_object('object', 'webhook_replay', 'replayed', v_count);
end;
$$;
comment on function api.replay_webhook_endpoint(uuid, timestamptz, text) is
'Send again, now, an endpoint''s deliveries created at or after since whose status is status (failed by default, '
'succeeded, or all: both); returns {"object": "webhook_replay", "replayed": n}. Errors: LNTFD (404), '
'LINVL (422), LSTAT (409) the endpoint is disabled.';

-- ---------------------------------------------------------------------------
-- The worker (lic_worker calls; these run as lic_maint across tenants through
-- the __maint policies in policies/40_webhooks.sql). The worker functions read
-- the clock; the private helpers that do the work take it (at), so tests fix
-- it as lic_maint and no caller can claim or decide at another instant.

-- Fair across tenants (decision 62): the accounts with due deliveries, the one
-- waiting longest first, each get an equal share of the claim, its deliveries
-- by due time. A tenant with a backlog gets what the others leave; one whose
-- deliveries came due later is in the next claim, not behind the backlog.
create or replace function private.claim_webhook_deliveries(batch_size integer, lease interval, at timestamptz)
returns table (
  delivery_id uuid,
  account_id uuid,
  endpoint_id uuid,
  lease_id uuid,
  url text,
  secrets bytea[],
  event_id uuid,
  event_type text,
  payload text,
  attempt integer
)
language plpgsql
volatile
as $$
begin
  if batch_size is null or batch_size < 1 then
    raise exception using errcode = 'LINVL', column = 'batch_size', message = 'batch_size must be at least 1';
  end if;
  if lease is null or lease <= interval '0' then
    raise exception using errcode = 'LINVL', column = 'lease', message = 'lease must be positive';
  end if;
  -- The lease moves next_attempt_at to its end (a visibility timeout): the
  -- claim's index then holds only deliveries that are due, and a delivery
  -- whose worker died is due again when its lease runs out.
  return query
  update lic.webhook_deliveries as d
  set
    lease_id = pg_catalog.gen_random_uuid(),
    leased_until = claim_webhook_deliveries.at + claim_webhook_deliveries.lease,
    next_attempt_at = claim_webhook_deliveries.at + claim_webhook_deliveries.lease
  from (
    with recursive pending (account_id, oldest) as (
      -- Each account with pending deliveries and the earliest next_attempt_at
      -- among them: one probe of webhook_deliveries__account_id_next_attempt_at_idx
      -- per account (a loose index scan: an account's first entry is its
      -- earliest).
      (
        select p.account_id, p.next_attempt_at from lic.webhook_deliveries as p
        where p.status = 'pending'
        order by p.account_id, p.next_attempt_at limit 1
      )
      union all
      select n.account_id, n.next_attempt_at
      from pending
      cross join lateral (
        select p.account_id, p.next_attempt_at from lic.webhook_deliveries as p
        where p.status = 'pending' and p.account_id > pending.account_id
        order by p.account_id, p.next_attempt_at limit 1
      ) as n
    )

    select q.account_id, q.id, q.endpoint_id, q.event_id
    from (
      -- Those with something due, longest waiting first: batch_size of them at
      -- most, batch_size / their number deliveries each (at least one).
      select pending.account_id, greatest(1, claim_webhook_deliveries.batch_size / count(*) over ()) as share
      from pending
      where pending.oldest <= claim_webhook_deliveries.at
      order by pending.oldest
      limit claim_webhook_deliveries.batch_size
    ) as a
    cross join lateral (
      select x.account_id, x.id, x.endpoint_id, x.event_id
      from lic.webhook_deliveries as x
      where
        x.account_id = a.account_id
        and x.status = 'pending'
        and x.next_attempt_at <= claim_webhook_deliveries.at
        and (x.leased_until is null or x.leased_until <= claim_webhook_deliveries.at)
        and exists (
          select from lic.webhook_endpoints as e
          where e.account_id = x.account_id and e.id = x.endpoint_id and e.enabled
        )
      order by x.next_attempt_at
      limit a.share
      for update of x skip locked
    ) as q
  ) as due
  inner join lic.webhook_endpoints as e on due.account_id = e.account_id and due.endpoint_id = e.id
  inner join lic.events as ev on due.account_id = ev.account_id and due.event_id = ev.id
  where d.account_id = due.account_id and d.id = due.id
  returning
    d.id,
    d.account_id,
    d.endpoint_id,
    d.lease_id,
    e.url,
    case
      when e.previous_secret_expires_at > claim_webhook_deliveries.at
        then array[e.secret_ciphertext, e.previous_secret_ciphertext]
      else array[e.secret_ciphertext]
    end,
    d.event_id,
    d.event_type,
    private.webhook_payload(ev),
    d.attempts + 1;
end;
$$;
comment on function private.claim_webhook_deliveries(integer, interval, timestamptz) is
'worker.claim_webhook_deliveries at the instant at (tests fix the clock with it).';

create or replace function worker.claim_webhook_deliveries(
  batch_size integer default 100,
  lease interval default '60 seconds'
)
returns table (
  delivery_id uuid,
  account_id uuid,
  endpoint_id uuid,
  lease_id uuid,
  url text,
  secrets bytea[],
  event_id uuid,
  event_type text,
  payload text,
  attempt integer
)
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select * from private.claim_webhook_deliveries(batch_size, lease, now());
$$;
comment on function worker.claim_webhook_deliveries(integer, interval) is
'Lease up to batch_size pending webhook deliveries that are due, of enabled endpoints, across tenants, skipping '
'rows other workers hold (FOR UPDATE SKIP LOCKED), fairly: the accounts with due deliveries, the one waiting '
'longest first and batch_size of them at most, each get batch_size / their number (at least one), oldest due '
'first. Each gets a fresh lease_id and is not claimed again until now() + lease, when it is due again if no attempt '
'was recorded. Returns what a send needs: url, secrets (ciphertexts, current first, then the previous one during '
'a rotation overlap), event, payload (the exact body) and the number of the attempt about to be made. Fewer than '
'batch_size does not mean nothing more is due: claim again until a claim returns nothing. Errors: LINVL '
'batch_size below 1, lease not positive.';

create or replace function private.record_webhook_attempt(
  delivery_id uuid,
  account_id uuid,
  lease_id uuid,
  started_at timestamptz,
  latency_ms integer,
  status_code integer,
  error_class text,
  response_body text,
  retry_after_seconds integer,
  at timestamptz
)
returns text
language plpgsql
volatile
as $$
declare
  v_delivery lic.webhook_deliveries;
  v_endpoint lic.webhook_endpoints;
  v_attempt integer;
  v_outcome text;
  v_next_attempt_at timestamptz;
begin
  select d.* into v_delivery
  from lic.webhook_deliveries as d
  where d.account_id = record_webhook_attempt.account_id and d.id = record_webhook_attempt.delivery_id
  for update;
  if not found or v_delivery.lease_id is null or v_delivery.lease_id is distinct from record_webhook_attempt.lease_id
  then
    return 'stale';
  end if;
  v_attempt := v_delivery.attempts + 1;
  insert into lic.webhook_attempts (
    account_id, delivery_id, attempt, started_at, latency_ms, status_code, error_class, response_body
  )
  values (
    v_delivery.account_id, v_delivery.id, v_attempt, record_webhook_attempt.started_at,
    greatest(record_webhook_attempt.latency_ms, 0), record_webhook_attempt.status_code,
    nullif(left(record_webhook_attempt.error_class, 100), ''), left(record_webhook_attempt.response_body, 1024)
  );

  if record_webhook_attempt.status_code between 200 and 299 then
    v_outcome := 'succeeded';
    update lic.webhook_endpoints as e
    set failing_since = null
    where e.account_id = v_delivery.account_id and e.id = v_delivery.endpoint_id and e.failing_since is not null;
  else
    -- A failure may disable the endpoint: lock it first (deliveries are
    -- locked before endpoints everywhere; disabling skips the deliveries
    -- others hold, so this never deadlocks), and see a disabling that
    -- committed meanwhile.
    select e.* into v_endpoint
    from lic.webhook_endpoints as e
    where e.account_id = v_delivery.account_id and e.id = v_delivery.endpoint_id
    for no key update;
    if v_delivery.status <> 'pending' or not v_endpoint.enabled then
      -- The endpoint was disabled while this attempt was in flight.
      v_outcome := 'failed';
    elsif record_webhook_attempt.status_code = 410 then
      v_outcome := 'endpoint_disabled';
      perform private.disable_webhook_endpoint_after_failure(
        v_endpoint, 'the endpoint answered 410 Gone', record_webhook_attempt.at
      );
    elsif coalesce(v_endpoint.failing_since, record_webhook_attempt.started_at)
      <= record_webhook_attempt.at - interval '5 days' then
      v_outcome := 'endpoint_disabled';
      perform private.disable_webhook_endpoint_after_failure(
        v_endpoint, 'every attempt failed for 5 days', record_webhook_attempt.at
      );
    else
      if v_endpoint.failing_since is null then
        update lic.webhook_endpoints as e
        set failing_since = record_webhook_attempt.started_at
        where e.account_id = v_endpoint.account_id and e.id = v_endpoint.id;
      end if;
      v_next_attempt_at := private.webhook_next_attempt_at(
        v_attempt, record_webhook_attempt.retry_after_seconds, record_webhook_attempt.at
      );
      v_outcome := case when v_next_attempt_at is null then 'failed' else 'retrying' end;
    end if;
  end if;

  update lic.webhook_deliveries as d
  set
    status = case v_outcome when 'succeeded' then 'succeeded' when 'retrying' then 'pending' else 'failed' end,
    attempts = v_attempt,
    next_attempt_at = v_next_attempt_at,
    lease_id = null,
    leased_until = null,
    last_attempt_at = record_webhook_attempt.started_at,
    last_status_code = record_webhook_attempt.status_code,
    succeeded_at = case when v_outcome = 'succeeded' then record_webhook_attempt.at end
  where d.account_id = v_delivery.account_id and d.id = v_delivery.id;
  return v_outcome;
end;
$$;
comment on function private.record_webhook_attempt(
  uuid, uuid, uuid, timestamptz, integer, integer, text, text, integer, timestamptz
) is
'worker.record_webhook_attempt deciding at the instant at (tests fix the clock with it).';

create or replace function worker.record_webhook_attempt(
  delivery_id uuid,
  account_id uuid,
  lease_id uuid,
  started_at timestamptz,
  latency_ms integer,
  status_code integer,
  error_class text,
  response_body text,
  retry_after_seconds integer default null
)
returns text
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.record_webhook_attempt(
    delivery_id, account_id, lease_id, started_at, latency_ms, status_code, error_class, response_body,
    retry_after_seconds, now()
  );
$$;
comment on function worker.record_webhook_attempt(
  uuid, uuid, uuid, timestamptz, integer, integer, text, text, integer
) is
'Record an attempt of a leased webhook delivery and decide what follows; returns the outcome: stale (the lease is '
'no longer this one: nothing changes), succeeded (2xx; the endpoint''s failure clock stops), endpoint_disabled '
'(410, or the endpoint has failed for 5 days: it is disabled, its pending deliveries fail, '
'webhook_endpoint.disabled is emitted), retrying (due again after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 24 h, '
'24 h for attempts 1-9, each ±20 %, at least retry_after_seconds capped at 24 h) or failed (the schedule is '
'spent, or the endpoint was disabled meanwhile). The attempt is logged (response_body cut to 1,024 characters) '
'and the lease cleared in every case but stale. The decision is made at now().';

create or replace function worker.release_webhook_deliveries(lease_ids uuid[])
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_count integer;
begin
  update lic.webhook_deliveries as d
  set lease_id = null, leased_until = null, next_attempt_at = now()
  where d.lease_id = any(release_webhook_deliveries.lease_ids) and d.status = 'pending';
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform private.notify_webhooks();
  end if;
  return v_count;
end;
$$;
comment on function worker.release_webhook_deliveries(uuid[]) is
'Give back the leases of deliveries a worker claimed but will not send (graceful shutdown): they are due now '
'for another worker. Returns how many were released.';

create or replace function worker.purge_webhook_deliveries(
  retain_days integer default 30,
  batch_size integer default 1000
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_count integer;
begin
  if retain_days is null or retain_days < 0 then
    raise exception using errcode = 'LINVL', column = 'retain_days', message = 'retain_days must be 0 or more';
  end if;
  if batch_size is null or batch_size < 1 then
    raise exception using errcode = 'LINVL', column = 'batch_size', message = 'batch_size must be at least 1';
  end if;
  -- webhook_deliveries__created_at_idx holds exactly the finished ones; their
  -- attempts go with them (on delete cascade).
  delete from lic.webhook_deliveries as d
  where (d.account_id, d.id) in (
    select f.account_id, f.id
    from lic.webhook_deliveries as f
    where f.status <> 'pending' and f.created_at < now() - make_interval(days => retain_days)
    order by f.created_at
    limit batch_size
    for update skip locked
  );
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
comment on function worker.purge_webhook_deliveries(integer, integer) is
'Delete up to batch_size finished (succeeded or failed) webhook deliveries created more than retain_days ago, '
'with their attempts, across tenants, oldest first. Returns how many (call again while it returns batch_size). '
'Errors: LINVL retain_days below 0, batch_size below 1.';
