-- The tenant's side of Stripe auto-sync (docs/stripe.md): its connection per
-- mode (an API key and the webhook signing secrets, both encrypted by the
-- application before they arrive here, so the database holds ciphertext and
-- a redacted form only), the price/product -> license policy map, the event
-- ledger as the tenant reads it, and what the web layer needs to open a
-- Stripe Customer Portal session. Applying events is functions/70.

-- The mode a Stripe secret or restricted API key belongs to, from its prefix;
-- null for anything else.
create or replace function private.stripe_key_livemode(redacted text)
returns boolean
language sql
immutable
parallel safe
as $$
  select case
    when redacted like 'sk\_live\_%' or redacted like 'rk\_live\_%' then true
    when redacted like 'sk\_test\_%' or redacted like 'rk\_test\_%' then false
  end;
$$;
comment on function private.stripe_key_livemode(text) is
'true for a live key (sk_live_, rk_live_), false for a test key (sk_test_, rk_test_), else null.';

create or replace function private.stripe_connection_view(c lic.stripe_connections)
returns api.stripe_connection
language sql
stable
as $$
  select row(
    c.livemode, c.api_key_redacted, c.webhook_endpoint_id, c.portal_return_url,
    coalesce(
      (
        select
          jsonb_agg(
            jsonb_build_object('id', s.id, 'redacted', s.redacted, 'expires_at', s.expires_at, 'created_at', s.created_at)
            order by s.created_at desc, s.id desc
          )
        from lic.stripe_webhook_secrets as s
        where
          s.account_id = c.account_id and s.livemode = c.livemode
          and coalesce(s.expires_at, 'infinity') > pg_catalog.now()
      ),
      '[]'
    ),
    c.created_at, c.updated_at
  )::api.stripe_connection;
$$;
comment on function private.stripe_connection_view(lic.stripe_connections) is
'The public shape of a Stripe connection: redacted key, endpoint, return URL and the signing secrets still valid.';

create or replace function api.put_stripe_connection(
  api_key_ciphertext bytea default null,
  api_key_redacted text default null,
  webhook_endpoint_id text default null,
  webhook_secret_ciphertext bytea default null,
  webhook_secret_redacted text default null,
  livemode boolean default null,
  portal_return_url text default null
)
returns api.stripe_connection
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_livemode boolean := livemode;
  v_connection lic.stripe_connections;
begin
  if (api_key_ciphertext is null) <> (api_key_redacted is null) then
    raise exception using errcode = 'LINVL', column = 'api_key',
      message = 'give api_key_ciphertext and api_key_redacted together';
  end if;
  if (webhook_secret_ciphertext is null) <> (webhook_secret_redacted is null) then
    raise exception using errcode = 'LINVL', column = 'webhook_secret',
      message = 'give webhook_secret_ciphertext and webhook_secret_redacted together';
  end if;
  if api_key_redacted is not null then
    v_livemode := private.stripe_key_livemode(api_key_redacted);
    if v_livemode is null then
      raise exception using errcode = 'LINVL', column = 'api_key',
        message = 'api_key must be a Stripe restricted or secret key (rk_live_, rk_test_, sk_live_ or sk_test_)';
    end if;
    if livemode is not null and livemode <> v_livemode then
      raise exception using errcode = 'LINVL', column = 'livemode',
        message = format(
          'the api_key is a %s-mode key but livemode is %s', case when v_livemode then 'live' else 'test' end, livemode
        );
    end if;
  elsif v_livemode is null then
    raise exception using errcode = 'LINVL', column = 'livemode',
      message = 'livemode is required without an api_key: say which mode (test or live) the secret belongs to';
  end if;
  if left(webhook_secret_redacted, 6) <> 'whsec_' then
    raise exception using errcode = 'LINVL', column = 'webhook_secret',
      message = 'webhook_secret must be a Stripe webhook signing secret (whsec_…)';
  end if;
  if webhook_endpoint_id !~ '^we_[A-Za-z0-9]+$' then
    raise exception using errcode = 'LINVL', column = 'webhook_endpoint_id',
      message = 'webhook_endpoint_id must be a Stripe webhook endpoint id (we_…)';
  end if;
  if portal_return_url !~ '^https?://' or length(portal_return_url) > 2000 then
    raise exception using errcode = 'LINVL', column = 'portal_return_url',
      message = 'portal_return_url must be an http(s) URL of at most 2000 characters';
  end if;
  -- Made first if missing, then locked, so concurrent first connections of
  -- one mode queue here instead of failing on the primary key.
  if api_key_ciphertext is not null or webhook_secret_ciphertext is not null then
    insert into lic.stripe_connections (account_id, livemode) values (v_account_id, v_livemode)
    on conflict on constraint stripe_connections_pkey do nothing;
  end if;
  select c.* into v_connection from lic.stripe_connections as c
  where c.account_id = v_account_id and c.livemode = v_livemode
  for update;
  if not found then
    raise exception using errcode = 'LINVL', column = 'api_key',
      message = format(
        'no %s-mode connection yet: give an api_key or a webhook_secret to connect',
        case when v_livemode then 'live' else 'test' end
      );
  end if;
  update lic.stripe_connections as c
  set
    api_key_ciphertext = coalesce(put_stripe_connection.api_key_ciphertext, c.api_key_ciphertext),
    api_key_redacted = coalesce(put_stripe_connection.api_key_redacted, c.api_key_redacted),
    webhook_endpoint_id = coalesce(put_stripe_connection.webhook_endpoint_id, c.webhook_endpoint_id),
    portal_return_url = coalesce(put_stripe_connection.portal_return_url, c.portal_return_url),
    updated_at = now()
  where c.account_id = v_account_id and c.livemode = v_livemode
  returning c.* into v_connection;
  if webhook_secret_ciphertext is not null then
    -- Rotation: every other secret of the mode stays valid for 24 hours at
    -- most (as Stripe keeps a rolled secret); long-expired ones go.
    delete from lic.stripe_webhook_secrets as s
    where s.account_id = v_account_id and s.livemode = v_livemode and s.expires_at <= now();
    update lic.stripe_webhook_secrets as s
    set expires_at = least(coalesce(s.expires_at, 'infinity'), now() + interval '24 hours')
    where s.account_id = v_account_id and s.livemode = v_livemode;
    insert into lic.stripe_webhook_secrets (account_id, livemode, secret_ciphertext, redacted)
    values (v_account_id, v_livemode, webhook_secret_ciphertext, webhook_secret_redacted);
  end if;
  return private.stripe_connection_view(v_connection);
end;
$$;
comment on function api.put_stripe_connection(bytea, text, text, bytea, text, boolean, text) is
'Connect Stripe in one mode, or change that connection. The mode is the API key''s (rk_/sk_ live_ or test_); '
'with only a signing secret, livemode says it. Key and secret come encrypted by the application, each with its '
'redacted form; arguments left null keep what is stored. A new signing secret is added and every other secret '
'of the mode expires within 24 hours (rotation). Never returns ciphertext. Errors: LINVL (422) bad key or '
'secret prefix, a key of the other mode, no livemode, nothing to connect with.';

create or replace function api.list_stripe_connections()
returns setof api.stripe_connection
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
begin
  return query
  select (private.stripe_connection_view(c)).*
  from lic.stripe_connections as c
  where c.account_id = v_account_id
  order by c.livemode;
end;
$$;
comment on function api.list_stripe_connections() is
'The account''s Stripe connections (test mode first, then live), with the signing secrets still valid.';

create or replace function api.delete_stripe_connection(livemode boolean)
returns api.stripe_connection
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_connection lic.stripe_connections;
  v_view api.stripe_connection;
begin
  select c.* into v_connection from lic.stripe_connections as c
  where c.account_id = v_account_id and c.livemode = delete_stripe_connection.livemode
  for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'livemode', message = 'no Stripe connection in this mode';
  end if;
  v_view := private.stripe_connection_view(v_connection);
  -- Its signing secrets go with it (on delete cascade); the ledger stays.
  delete from lic.stripe_connections as c where c.account_id = v_account_id and c.livemode = v_connection.livemode;
  return v_view;
end;
$$;
comment on function api.delete_stripe_connection(boolean) is
'Disconnect Stripe in one mode: its key and signing secrets are deleted (deliveries signed with them are refused '
'from now on); recorded events and licenses stay. Answers the connection as it was. Errors: LNTFD (404).';

create or replace function api.get_stripe_api_key(livemode boolean)
returns table (account_id uuid, api_key_ciphertext bytea, webhook_endpoint_id text)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
begin
  return query
  select c.account_id, c.api_key_ciphertext, c.webhook_endpoint_id
  from lic.stripe_connections as c
  where c.account_id = v_account_id and c.livemode = get_stripe_api_key.livemode;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'livemode', message = 'no Stripe connection in this mode';
  end if;
end;
$$;
comment on function api.get_stripe_api_key(boolean) is
'The encrypted API key of the connection in one mode (null when only a signing secret was pasted) and the '
'endpoint Licentric made with it, for the web layer''s calls to Stripe; ciphertext only, bound to the account. '
'Errors: LNTFD (404).';

-- Unauthenticated on purpose: Stripe's deliveries carry no API key, and the
-- web layer needs the account's secrets to verify one before it trusts
-- anything in it. Only ciphertext leaves, which only the application's key
-- opens, and only for that account (its id is bound into each ciphertext).
create or replace function service.stripe_credentials(account_id uuid)
returns table (livemode boolean, kind text, ciphertext bytea, webhook_endpoint_id text)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  begin
    perform private.stripe_begin(account_id);
  exception
    when sqlstate 'LNTFD' then
      -- An unknown account has no credentials (the context is undone with
      -- the subtransaction); no account at all is the caller's mistake.
      if account_id is null then
        raise;
      end if;
      return;
  end;
  return query
  select x.livemode, x.kind, x.ciphertext, x.webhook_endpoint_id
  from (
    select
      c.livemode, 'api_key' as kind, c.api_key_ciphertext as ciphertext, c.webhook_endpoint_id, c.updated_at as at,
      null::uuid as id
    from lic.stripe_connections as c
    where c.account_id = stripe_credentials.account_id and c.api_key_ciphertext is not null
    union all
    select s.livemode, 'webhook_secret', s.secret_ciphertext, c.webhook_endpoint_id, s.created_at, s.id
    from lic.stripe_webhook_secrets as s
    inner join lic.stripe_connections as c on s.account_id = c.account_id and s.livemode = c.livemode
    where s.account_id = stripe_credentials.account_id and coalesce(s.expires_at, 'infinity') > now()
  ) as x
  order by x.kind, x.livemode, x.at desc, x.id desc;
end;
$$;
comment on function service.stripe_credentials(uuid) is
'For the inbound Stripe webhook, before any key exists: the encrypted API keys (kind api_key) and still-valid '
'signing secrets (kind webhook_secret, newest first) of the account, per mode. Needs no API key; acts in a '
'stripe context for that account only. An unknown account has none (no rows). Errors: LNTFD (404) no '
'account_id.';

create or replace function private.stripe_mapping_view(
  m lic.stripe_mappings,
  policy_code text default null,
  reapplied integer default null
)
returns api.stripe_mapping
language plpgsql
stable
as $$
declare
  v_policy_code text := policy_code;
begin
  if v_policy_code is null then
    select p.code into v_policy_code from lic.license_policies as p
    where p.account_id = m.account_id and p.id = m.policy_id;
  end if;
  return row(
    m.id, m.stripe_price_id, m.stripe_product_id, m.policy_id, v_policy_code, reapplied, m.created_at
  )::api.stripe_mapping;
end;
$$;
comment on function private.stripe_mapping_view(lic.stripe_mappings, text, integer) is
'The public shape of a Stripe price/product mapping (pass its policy''s code when the caller has it).';

create or replace function api.create_stripe_mapping(
  stripe_price_id text default null,
  stripe_product_id text default null,
  policy_id uuid default null,
  policy_code text default null
)
returns api.stripe_mapping
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_policy lic.license_policies;
  v_mapping lic.stripe_mappings;
  v_reapplied integer;
begin
  perform private.require_exactly_one(
    array['stripe_price_id', 'stripe_product_id'], array[stripe_price_id is not null, stripe_product_id is not null]
  );
  if stripe_price_id !~ '^price_[A-Za-z0-9]+$' then
    raise exception using errcode = 'LINVL', column = 'stripe_price_id',
      message = 'stripe_price_id must be a Stripe price id (price_…)';
  end if;
  if stripe_product_id !~ '^[A-Za-z0-9_-]{1,200}$' then
    raise exception using errcode = 'LINVL', column = 'stripe_product_id',
      message = 'stripe_product_id must be 1-200 characters of A-Z, a-z, 0-9, "_" or "-"';
  end if;
  v_policy := private.find_policy(policy_id, policy_code);
  if v_policy.archived_at is not null then
    raise exception using errcode = 'LSTAT', column = 'policy_id',
      message = 'this license policy is archived and takes no licenses';
  end if;
  -- A price or product mapped before fails on the unique constraint: 23505
  -- (409 already_exists naming it).
  insert into lic.stripe_mappings as m (account_id, stripe_price_id, stripe_product_id, policy_id)
  values (v_account_id, stripe_price_id, stripe_product_id, v_policy.id)
  returning m.* into v_mapping;
  v_reapplied := private.stripe_sync_mapping(v_account_id, v_mapping.stripe_price_id, v_mapping.stripe_product_id);
  return private.stripe_mapping_view(v_mapping, v_policy.code, v_reapplied);
end;
$$;
comment on function api.create_stripe_mapping(text, text, uuid, text) is
'Map a Stripe price or product (exactly one) to a license policy (by id or code; not archived), then apply the '
'events parked for want of it; reapplied says how many. Errors: LINVL (422), LNTFD (404) policy, LSTAT (409) '
'archived policy, 23505 (409) already mapped.';

create or replace function api.list_stripe_mappings(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.stripe_mapping
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
begin
  if ending_before is null then
    return query
    select (private.stripe_mapping_view(m)).*
    from lic.stripe_mappings as m
    where m.account_id = v_account_id and (starting_after is null or m.id < starting_after)
    order by m.id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (l.mapping).*
    from (
      select private.stripe_mapping_view(m) as mapping, m.id
      from lic.stripe_mappings as m
      where m.account_id = v_account_id and m.id > ending_before
      order by m.id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as l
    order by l.id desc;
  end if;
end;
$$;
comment on function api.list_stripe_mappings(integer, uuid, uuid) is
'List the account''s Stripe price/product mappings newest first, as a keyset page of up to page_limit + 1 rows. '
'Errors: LINVL (422).';

create or replace function api.delete_stripe_mapping(mapping_id uuid)
returns api.stripe_mapping
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_mapping lic.stripe_mappings;
begin
  delete from lic.stripe_mappings as m
  where m.account_id = v_account_id and m.id = delete_stripe_mapping.mapping_id
  returning m.* into v_mapping;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'mapping_id', message = 'Stripe mapping not found';
  end if;
  return private.stripe_mapping_view(v_mapping);
end;
$$;
comment on function api.delete_stripe_mapping(uuid) is
'Delete a Stripe price/product mapping: licenses it gave keep their policy; events for that price or product '
'are parked again until it is mapped anew. Errors: LNTFD (404).';

create or replace function private.stripe_event_view(e lic.stripe_events, with_payload boolean default false)
returns api.stripe_event
language sql
immutable
as $$
  select row(
    e.id, e.stripe_event_id, e.type, e.livemode, e.stripe_created_at, e.api_version, e.object_id, e.subscription_id,
    e.outcome, e.detail, e.received_at, e.processed_at, e.refetched_at, case when with_payload then e.payload end
  )::api.stripe_event;
$$;
comment on function private.stripe_event_view(lic.stripe_events, boolean) is
'The public shape of a recorded Stripe event; its payload only when with_payload.';

create or replace function api.list_stripe_events(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  outcome text default null,
  type text default null
)
returns setof api.stripe_event
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
  v_where text := 'e.account_id = $1';
begin
  if outcome is not null
    and outcome not in ('applied', 'stale', 'ignored', 'parked', 'needs_refetch', 'failed', 'invalid') then
    raise exception using errcode = 'LINVL', column = 'outcome',
      message = 'outcome must be one of applied, stale, ignored, parked, needs_refetch, failed, invalid';
  end if;
  -- Only the filters given become predicates (fixed text, values as
  -- parameters), so each call is planned for stripe_events__account_id_
  -- {outcome,type}_id_idx or the primary key.
  if outcome is not null then
    v_where := v_where || ' and e.outcome = $2';
  end if;
  if list_stripe_events.type is not null then
    v_where := v_where || ' and e.type = $3';
  end if;
  if ending_before is null then
    if starting_after is not null then
      v_where := v_where || ' and e.id < $4';
    end if;
    return query execute
      'select (private.stripe_event_view(e)).* from lic.stripe_events as e where ' || v_where
      || ' order by e.id desc limit $6'
    using v_account_id, outcome, list_stripe_events.type, starting_after, ending_before, v_rows;
  else
    return query execute
      'select (p.event).* from (select private.stripe_event_view(e) as event, e.id from lic.stripe_events as e'
      || ' where ' || v_where || ' and e.id > $5 order by e.id limit $6) as p order by p.id desc'
    using v_account_id, outcome, list_stripe_events.type, starting_after, ending_before, v_rows;
  end if;
end;
$$;
comment on function api.list_stripe_events(integer, uuid, uuid, text, text) is
'List the Stripe events recorded for the account newest first (without payloads), optionally of one outcome '
'(applied, stale, ignored, parked, needs_refetch, failed, invalid) and one type, as a keyset page of up to '
'page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_stripe_event(stripe_event_id uuid)
returns api.stripe_event
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_event lic.stripe_events;
begin
  select e.* into v_event from lic.stripe_events as e
  where e.account_id = v_account_id and e.id = get_stripe_event.stripe_event_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'stripe_event_id', message = 'Stripe event not found';
  end if;
  return private.stripe_event_view(v_event, true);
end;
$$;
comment on function api.get_stripe_event(uuid) is
'One recorded Stripe event by its ledger id (Licentric''s, not Stripe''s evt_…), with the payload Stripe '
'signed. Errors: LNTFD (404).';

create or replace function api.stripe_billing_portal_target(license_id uuid, return_url text default null)
returns table (
  account_id uuid, stripe_customer_id text, livemode boolean, session_return_url text, api_key_ciphertext bytea
)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_license lic.licenses;
  v_customer text;
  v_livemode boolean;
  v_connection lic.stripe_connections;
begin
  if stripe_billing_portal_target.return_url !~ '^https?://'
    or length(stripe_billing_portal_target.return_url) > 2000 then
    raise exception using errcode = 'LINVL', column = 'return_url',
      message = 'return_url must be an http(s) URL of at most 2000 characters';
  end if;
  select l.* into v_license from lic.licenses as l
  where l.account_id = v_account_id and l.id = stripe_billing_portal_target.license_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  select c.stripe_customer_id into v_customer from lic.customers as c
  where c.account_id = v_account_id and c.id = v_license.customer_id;
  if v_customer is null then
    raise exception using errcode = 'LSTAT', column = 'license_id',
      message = 'the license''s customer has no Stripe customer id';
  end if;
  -- The mode of the subscription or purchase the license came from; else
  -- the only mode connected.
  select s.livemode into v_livemode
  from lic.stripe_subscription_licenses as sl
  inner join lic.stripe_subscriptions as s on sl.account_id = s.account_id and sl.subscription_id = s.subscription_id
  where sl.account_id = v_account_id and sl.license_id = v_license.id;
  if v_livemode is null then
    select ch.livemode into v_livemode from lic.stripe_checkouts as ch
    where ch.account_id = v_account_id and ch.license_id = v_license.id and ch.livemode is not null
    limit 1;
  end if;
  if v_livemode is null then
    select min(c.livemode::integer)::boolean into v_livemode from lic.stripe_connections as c
    where c.account_id = v_account_id
    having count(*) = 1;
  end if;
  if v_livemode is null then
    raise exception using errcode = 'LSTAT', column = 'license_id',
      message = 'cannot tell the license''s Stripe mode: it came from no subscription or purchase, and not exactly '
      'one mode is connected';
  end if;
  select c.* into v_connection from lic.stripe_connections as c
  where c.account_id = v_account_id and c.livemode = v_livemode;
  if v_connection.api_key_ciphertext is null then
    raise exception using errcode = 'LSTAT', column = 'license_id',
      message = format('no Stripe API key is connected in %s mode', case when v_livemode then 'live' else 'test' end);
  end if;
  return query
  select
    v_account_id, v_customer, v_livemode,
    coalesce(stripe_billing_portal_target.return_url, v_connection.portal_return_url),
    v_connection.api_key_ciphertext;
end;
$$;
comment on function api.stripe_billing_portal_target(uuid, text) is
'What the web layer needs to open a Stripe Customer Portal session for a license''s customer: its Stripe '
'customer id, the mode (of the subscription or purchase the license came from, else the only connected mode), '
'the session_return_url (return_url, else the connection''s portal_return_url, else null) and the encrypted API key of '
'that mode. Errors: LINVL (422), LNTFD (404), LSTAT (409) no Stripe customer, mode unknown, or no API key.';
