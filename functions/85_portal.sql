-- The end-user self-service portal (DESIGN §8; reliability-security §3.2).
--
-- Three kinds of caller:
--   the tenant (secret key)       reads and sets its slug and branding;
--   a visitor (no key)            every call names the portal's slug, which
--                                 private.portal_begin turns into the account
--                                 (a 'portal' context: no other api function
--                                 admits it) before any tenant table is read,
--                                 so tokens and sessions are found under the
--                                 tenant policy like API keys are;
--   a signed-in customer          service.authenticate_portal (or the confirm that
--                                 made the session) sets a 'customer' context
--                                 whose principal is the session; the portal
--                                 functions admit only that kind, and every
--                                 other api function refuses it (LDNID).
--
-- A customer is the email address a magic link proved: every customer row of
-- the account with that address, case-insensitively (decision 45). They reach
-- the licenses those rows own (licenses.customer_id, or an owner seat) or hold
-- a member seat on; any other license is LNTFD, exactly like one that does not
-- exist. Owners manage the team; members see it.
--
-- Time enters as a parameter (at) of the private helpers, so tests fix it;
-- the api functions pass now().

-- ---------------------------------------------------------------------------
-- Settings: slug and branding

create or replace function private.portal_slug(slug text)
returns text
language plpgsql
immutable
parallel safe
as $$
declare
  v_slug text := lower(slug);
begin
  if v_slug is null or v_slug !~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$' then
    raise exception using errcode = 'LINVL', column = 'slug',
      message = 'slug must be 3-63 characters of a-z, 0-9 and "-", starting and ending with a letter or digit';
  end if;
  -- Names the web layer may route itself, and ones that invite phishing.
  if v_slug in ('admin', 'api', 'app', 'assets', 'health', 'login', 'logout', 'portal', 'static', 'www', 'licentric')
    then
    raise exception using errcode = 'LINVL', column = 'slug', message = format('the slug %L is reserved', v_slug);
  end if;
  return v_slug;
end;
$$;
comment on function private.portal_slug(text) is
'A portal slug as stored (lowercased), after checking its form and that it is not reserved. Errors: LINVL.';

create or replace function private.portal_settings_view(account_id uuid)
returns api.portal_settings
language sql
stable
as $$
  select row(
    d.slug, s.logo_url, s.primary_color, s.accent_color, s.product_name, p.custom_branding,
    least(s.created_at, d.created_at), greatest(s.updated_at, d.updated_at)
  )::api.portal_settings
  from lic.accounts as a
  inner join lic.tenant_plans as p on a.plan = p.code
  left join lic.portal_settings as s on a.account_id = s.account_id
  left join private.portal_slugs as d on a.account_id = d.account_id
  where a.account_id = portal_settings_view.account_id;
$$;
comment on function private.portal_settings_view(uuid) is
'The public shape of an account''s portal settings (slug null: no portal yet).';

create or replace function api.get_portal_settings()
returns api.portal_settings
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.portal_settings_view(private.require_account());
end;
$$;
comment on function api.get_portal_settings() is
'The account''s portal: its slug (null until set: no portal) and branding as stored, and whether the tenant plan '
'shows the branding (custom_branding).';

create or replace function api.update_portal_settings(
  slug text default null,
  logo_url text default null,
  primary_color text default null,
  accent_color text default null,
  product_name text default null,
  clear text[] default '{}'
)
returns api.portal_settings
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_clear text[] := coalesce(clear, '{}');
  v_branding boolean;
  v_slug text;
begin
  perform private.check_clear(
    v_clear,
    array['slug', 'logo_url', 'primary_color', 'accent_color', 'product_name'],
    array_remove(array[
      case when update_portal_settings.slug is not null then 'slug' end,
      case when update_portal_settings.logo_url is not null then 'logo_url' end,
      case when update_portal_settings.primary_color is not null then 'primary_color' end,
      case when update_portal_settings.accent_color is not null then 'accent_color' end,
      case when update_portal_settings.product_name is not null then 'product_name' end
    ], null)
  );
  if update_portal_settings.slug is not null then
    v_slug := private.portal_slug(update_portal_settings.slug);
  end if;
  -- No quotes, angle brackets, backslashes or spaces: the URL goes into HTML
  -- attributes and emails as it is.
  if update_portal_settings.logo_url !~ '^https://[^\s"''<>\\]+$' or length(update_portal_settings.logo_url) > 2000 then
    raise exception using errcode = 'LINVL', column = 'logo_url',
      message = 'logo_url must be an https:// URL of at most 2000 characters, without spaces, quotes or <>';
  end if;
  if update_portal_settings.primary_color !~ '^#[0-9A-Fa-f]{6}$' then
    raise exception using errcode = 'LINVL', column = 'primary_color', message = 'primary_color must be #rrggbb';
  end if;
  if update_portal_settings.accent_color !~ '^#[0-9A-Fa-f]{6}$' then
    raise exception using errcode = 'LINVL', column = 'accent_color', message = 'accent_color must be #rrggbb';
  end if;
  if length(update_portal_settings.product_name) not between 1 and 100
    or update_portal_settings.product_name ~ '[[:cntrl:]]' then
    raise exception using errcode = 'LINVL', column = 'product_name',
      message = 'product_name must be 1-100 characters, without control characters';
  end if;
  -- The plan gate: setting branding needs a plan with custom_branding; the
  -- slug and clearing are allowed on every plan.
  if num_nonnulls(
    update_portal_settings.logo_url, update_portal_settings.primary_color, update_portal_settings.accent_color,
    update_portal_settings.product_name
  ) > 0 then
    select p.custom_branding into v_branding
    from lic.accounts as a inner join lic.tenant_plans as p on a.plan = p.code
    where a.account_id = v_account_id;
    if not v_branding then
      raise exception using errcode = 'LPLAN', column = 'branding',
        message = 'custom branding needs the starter plan or above; the free plan shows the default look';
    end if;
  end if;
  if 'slug' = any(v_clear) then
    delete from private.portal_slugs as d where d.account_id = v_account_id;
  elsif v_slug is not null then
    -- Another account's slug fails on the primary key: 23505 (409 already_exists).
    insert into private.portal_slugs as d (slug, account_id) values (v_slug, v_account_id)
    on conflict (account_id) do update
      set slug = excluded.slug, updated_at = now()
      where d.slug is distinct from excluded.slug;
  end if;
  if cardinality(array_remove(v_clear, 'slug')) = 0 and num_nonnulls(
    update_portal_settings.logo_url, update_portal_settings.primary_color, update_portal_settings.accent_color,
    update_portal_settings.product_name
  ) = 0 then
    return private.portal_settings_view(v_account_id);
  end if;
  insert into lic.portal_settings as s (account_id) values (v_account_id)
  on conflict (account_id) do nothing;
  update lic.portal_settings as s
  set
    logo_url = case when 'logo_url' = any(v_clear) then null else coalesce(update_portal_settings.logo_url, s.logo_url) end,
    primary_color = case
      when 'primary_color' = any(v_clear) then null else coalesce(lower(update_portal_settings.primary_color), s.primary_color)
    end,
    accent_color = case
      when 'accent_color' = any(v_clear) then null else coalesce(lower(update_portal_settings.accent_color), s.accent_color)
    end,
    product_name = case
      when 'product_name' = any(v_clear) then null else coalesce(update_portal_settings.product_name, s.product_name)
    end,
    updated_at = now()
  where s.account_id = v_account_id;
  return private.portal_settings_view(v_account_id);
end;
$$;
comment on function api.update_portal_settings(text, text, text, text, text, text[]) is
'Set the account''s portal slug (3-63 of a-z 0-9 -, unique across accounts; /portal/{slug}) and branding: '
'logo_url (https), primary_color and accent_color (#rrggbb), product_name. A null argument leaves a field '
'unchanged; clear names fields to remove (clearing slug closes the portal). Branding needs a plan with custom '
'branding (starter and above); the slug does not. Errors: LINVL (422), LPLAN (402) branding on the free plan, '
'23505 (409) slug taken.';

-- ---------------------------------------------------------------------------
-- The visitor's side: slug, face, magic link, session

-- Every function a visitor calls starts here: the account comes from the
-- slug, and the context names it (kind 'portal', admitted by no api function)
-- so what follows runs under the tenant policy. A context already set for
-- that account (a signed-in customer) is kept.
create or replace function private.portal_begin(slug text)
returns uuid
language plpgsql
volatile
as $$
declare
  v_account_id uuid;
begin
  select d.account_id into v_account_id from private.portal_slugs as d where d.slug = lower(portal_begin.slug);
  if not found then
    raise exception using errcode = 'LNTFD', column = 'slug', message = 'portal not found';
  end if;
  if (private.current_context()).account_id is distinct from v_account_id then
    perform private.set_context(v_account_id, 'portal');
  end if;
  return v_account_id;
end;
$$;
comment on function private.portal_begin(text) is
'The account whose portal has this slug (case-insensitive), with a portal context set for it unless the '
'transaction already acts for that account. Errors: LNTFD.';

create or replace function private.portal_face(account_id uuid)
returns api.portal_face
language sql
stable
as $$
  select row(
    d.slug, a.name,
    case when p.custom_branding then s.product_name end,
    case when p.custom_branding then s.logo_url end,
    case when p.custom_branding then s.primary_color end,
    case when p.custom_branding then s.accent_color end,
    p.custom_branding
  )::api.portal_face
  from lic.accounts as a
  inner join lic.tenant_plans as p on a.plan = p.code
  left join lic.portal_settings as s on a.account_id = s.account_id
  left join private.portal_slugs as d on a.account_id = d.account_id
  where a.account_id = portal_face.account_id;
$$;
comment on function private.portal_face(uuid) is
'What a visitor may see of an account''s portal; branding only while the tenant plan allows it.';

create or replace function service.resolve_portal(slug text)
returns api.portal_face
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.portal_face(private.portal_begin(slug));
end;
$$;
comment on function service.resolve_portal(text) is
'The public face of the portal with this slug (needs no key): the account''s name and, when its plan allows '
'custom branding, its product name, logo and colours (else null: the default look). Errors: LNTFD (404) '
'unknown slug.';

create or replace function private.portal_request_login(
  account_id uuid,
  email text,
  token_hash bytea,
  ip_hash bytea,
  at timestamptz
)
returns api.portal_login_request
language plpgsql
volatile
as $$
declare
  c_lifetime constant interval := interval '15 minutes';
  v_email text := private.login_email(portal_request_login.email);
  v_email_minute integer;
  v_email_hour integer;
  v_ip_hour integer;
  v_account_minute integer;
  v_customer lic.customers;
  v_name text;
  v_reason text;
begin
  perform private.require_hash(token_hash, 'token_hash');
  perform private.require_hash(ip_hash, 'ip_hash');
  perform private.lock_login_request('portal:' || portal_request_login.account_id::text, v_email, ip_hash);
  -- Tokens older than a day count for no limit and sign nobody in; requests
  -- older than an hour count for none either.
  delete from lic.portal_login_tokens as t
  where t.account_id = portal_request_login.account_id and t.created_at < at - interval '1 day';
  delete from lic.portal_login_requests as r
  where r.account_id = portal_request_login.account_id and r.requested_at < at - interval '1 hour';
  -- The same statements run whether or not a customer has the address.
  select
    count(*) filter (where t.created_at > at - interval '1 minute'),
    count(*)
  into v_email_minute, v_email_hour
  from lic.portal_login_tokens as t
  where t.account_id = portal_request_login.account_id and t.email = v_email and t.created_at > at - interval '1 hour';
  -- Per client: every request counts, this one too, whatever it asked for.
  insert into lic.portal_login_requests (account_id, ip_hash, requested_at)
  values (portal_request_login.account_id, portal_request_login.ip_hash, at);
  select count(*) into v_ip_hour
  from lic.portal_login_requests as r
  where
    r.account_id = portal_request_login.account_id and r.ip_hash = portal_request_login.ip_hash
    and r.requested_at > at - interval '1 hour';
  select count(*) into v_account_minute
  from lic.portal_login_tokens as t
  where t.account_id = portal_request_login.account_id and t.created_at > at - interval '1 minute';
  -- The oldest customer with the address signs in (decision 45).
  select c.* into v_customer
  from lic.customers as c
  where c.account_id = portal_request_login.account_id and lower(c.email) = v_email
  order by c.id
  limit 1;
  if not found then
    return row(false, 'unknown_email', null, null, null, null)::api.portal_login_request;
  end if;
  v_reason := private.login_limit_reason(v_email_minute, v_email_hour, v_ip_hour, v_account_minute, 'account_rate_limited');
  if v_reason is not null then
    return row(false, v_reason, null, null, null, null)::api.portal_login_request;
  end if;
  -- A new link voids the address's earlier unused ones.
  update lic.portal_login_tokens as t
  set revoked_at = at
  where
    t.account_id = portal_request_login.account_id and t.email = v_email
    and t.used_at is null and t.revoked_at is null and t.expires_at > at;
  insert into lic.portal_login_tokens (account_id, token_hash, customer_id, email, ip_hash, created_at, expires_at)
  values (
    portal_request_login.account_id, portal_request_login.token_hash, v_customer.id, v_email,
    portal_request_login.ip_hash, at, at + c_lifetime
  );
  select c.name into v_name
  from lic.customers as c
  where c.account_id = portal_request_login.account_id and lower(c.email) = v_email and c.name is not null
  order by c.id
  limit 1;
  return row(
    true, 'ok', v_customer.email, v_name, at + c_lifetime,
    to_jsonb(private.portal_face(portal_request_login.account_id))
  )::api.portal_login_request;
end;
$$;
comment on function private.portal_request_login(uuid, text, bytea, bytea, timestamptz) is
'Issue a magic-link token (its sha256) for an address of an account at an instant, within the limits, voiding '
'the address''s earlier unused tokens; answers whether and to whom to send it. Errors: LINVL.';

create or replace function service.request_portal_login(slug text, email text, token_hash bytea, ip_hash bytea)
returns api.portal_login_request
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.portal_request_login(private.portal_begin(slug), email, token_hash, ip_hash, now());
end;
$$;
comment on function service.request_portal_login(text, text, bytea, bytea) is
'A visitor asks for a sign-in link (needs no key). token_hash is the sha256 of the 32 random bytes the web '
'layer put in the link; ip_hash the sha256 of the visitor''s IP (with a secret). Every request counts toward its '
'IP''s limit (20 an hour, whatever address it asks for). If a customer of the account has the address '
'(case-insensitively) and the limits allow (per address 1 link a minute and 5 an hour, per IP 20 requests an '
'hour, per account 100 links a minute), the token is stored (15 minutes, single use), the address''s earlier unused '
'tokens are voided and the answer says send, to whom, and with which branding; otherwise nothing is stored and '
'the answer says not to send. The answer is for the web layer only: the visitor always gets the same page. '
'Errors: LNTFD (404) unknown slug, LINVL (422) malformed email or hash.';

-- A token can still sign in: unused, not voided, not expired, and its
-- customer still has the address it was sent to.
create or replace function private.portal_peek_login(account_id uuid, token_hash bytea, at timestamptz)
returns api.portal_login_peek
language plpgsql
stable
as $$
declare
  v_token lic.portal_login_tokens;
  v_usable boolean;
begin
  perform private.require_hash(token_hash, 'token_hash');
  select t.* into v_token
  from lic.portal_login_tokens as t
  where t.account_id = portal_peek_login.account_id and t.token_hash = portal_peek_login.token_hash;
  if not found then
    return row(false, null, null)::api.portal_login_peek;
  end if;
  v_usable := v_token.used_at is null and v_token.revoked_at is null and v_token.expires_at > at and exists (
    select from lic.customers as c
    where c.account_id = v_token.account_id and c.id = v_token.customer_id and lower(c.email) = v_token.email
  );
  return row(v_usable, private.mask_email(v_token.email), v_token.expires_at)::api.portal_login_peek;
end;
$$;
comment on function private.portal_peek_login(uuid, bytea, timestamptz) is
'Whether a token can sign in at an instant, and its masked address, changing nothing. Errors: LINVL.';

create or replace function service.peek_portal_login(slug text, token_hash bytea)
returns api.portal_login_peek
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.portal_peek_login(private.portal_begin(slug), token_hash, now());
end;
$$;
comment on function service.peek_portal_login(text, bytea) is
'For the page a sign-in link opens (GET and HEAD; needs no key): whether the token can still sign in and the '
'masked address it was sent to (null for a token never issued). Changes nothing, so mail scanners cannot use a '
'link up. Errors: LNTFD (404) unknown slug, LINVL (422) malformed hash.';

create or replace function private.portal_session_view(s lic.portal_sessions, c lic.customers)
returns api.portal_session
language sql
immutable
as $$
  select row(
    s.id, s.customer_id, c.email, c.name, s.created_at, s.last_seen_at,
    least(s.last_seen_at + interval '30 minutes', s.expires_at), s.expires_at
  )::api.portal_session;
$$;
comment on function private.portal_session_view(lic.portal_sessions, lic.customers) is
'The public shape of a portal session (idle timeout 30 minutes, absolute at expires_at).';

create or replace function private.portal_confirm_login(
  account_id uuid,
  token_hash bytea,
  session_hash bytea,
  replaces_session_hash bytea,
  at timestamptz
)
returns api.portal_session
language plpgsql
volatile
as $$
declare
  v_token lic.portal_login_tokens;
  v_session lic.portal_sessions;
  v_customer lic.customers;
begin
  perform private.require_hash(token_hash, 'token_hash');
  perform private.require_hash(session_hash, 'session_hash');
  if replaces_session_hash is not null then
    perform private.require_hash(replaces_session_hash, 'replaces_session_hash');
  end if;
  -- Spent atomically: of two concurrent confirms, the second waits for the
  -- first's row lock, then finds used_at set and matches nothing.
  update lic.portal_login_tokens as t
  set used_at = at
  where
    t.account_id = portal_confirm_login.account_id and t.token_hash = portal_confirm_login.token_hash
    and t.used_at is null and t.revoked_at is null and t.expires_at > at
    and exists (
      select from lic.customers as c
      where c.account_id = t.account_id and c.id = t.customer_id and lower(c.email) = t.email
    )
  returning t.* into v_token;
  if not found then
    raise exception using errcode = 'LAUTH', column = 'token',
      message = 'this sign-in link is invalid, expired or already used; ask for a new one';
  end if;
  if replaces_session_hash is not null then
    delete from lic.portal_sessions as s
    where s.account_id = portal_confirm_login.account_id and s.session_hash = portal_confirm_login.replaces_session_hash;
  end if;
  -- Sessions idle past their timeout are gone for good.
  delete from lic.portal_sessions as s
  where s.account_id = portal_confirm_login.account_id and s.last_seen_at <= at - interval '30 minutes';
  insert into lic.portal_sessions as s (account_id, session_hash, customer_id, email, created_at, last_seen_at, expires_at)
  values (
    portal_confirm_login.account_id, portal_confirm_login.session_hash, v_token.customer_id, v_token.email, at, at,
    at + interval '12 hours'
  )
  returning s.* into v_session;
  select c.* into v_customer from lic.customers as c
  where c.account_id = v_session.account_id and c.id = v_session.customer_id;
  perform private.set_context(v_session.account_id, 'customer', v_session.id);
  return private.portal_session_view(v_session, v_customer);
end;
$$;
comment on function private.portal_confirm_login(uuid, bytea, bytea, bytea, timestamptz) is
'Spend a token at an instant and start a new session under session_hash (deleting the one under '
'replaces_session_hash); sets the customer context. Errors: LAUTH, LINVL.';

create or replace function service.confirm_portal_login(
  slug text,
  token_hash bytea,
  session_hash bytea,
  replaces_session_hash bytea default null
)
returns api.portal_session
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.portal_confirm_login(private.portal_begin(slug), token_hash, session_hash, replaces_session_hash, now());
end;
$$;
comment on function service.confirm_portal_login(text, bytea, bytea, bytea) is
'The confirm POST (needs no key): spend the sign-in token (single use, within 15 minutes, for a customer who '
'still has the address) and start a NEW server-side session whose id the web layer just generated: session_hash '
'is its sha256 (a session id from the request is never reused; pass the old cookie''s hash as '
'replaces_session_hash to end that session). Sessions end after 30 minutes idle or 12 hours. Sets the customer '
'context for the rest of the transaction. Errors: LNTFD (404) unknown slug, LAUTH (401) the token is unknown, '
'expired, voided or used, LINVL (422) malformed hash.';

create or replace function private.portal_authenticate(account_id uuid, session_hash bytea, at timestamptz)
returns api.portal_session
language plpgsql
volatile
as $$
declare
  v_session lic.portal_sessions;
  v_customer lic.customers;
begin
  -- A malformed id is no session either.
  if session_hash is null or octet_length(session_hash) <> 32 then
    raise exception using errcode = 'LAUTH', message = 'not signed in';
  end if;
  select s.* into v_session
  from lic.portal_sessions as s
  where s.account_id = portal_authenticate.account_id and s.session_hash = portal_authenticate.session_hash;
  if not found then
    raise exception using errcode = 'LAUTH', message = 'not signed in';
  end if;
  if v_session.expires_at <= at or v_session.last_seen_at <= at - interval '30 minutes' then
    raise exception using errcode = 'LAUTH', message = 'the session has expired; sign in again';
  end if;
  select c.* into v_customer
  from lic.customers as c
  where c.account_id = v_session.account_id and c.id = v_session.customer_id;
  -- A changed address ends the sessions it opened.
  if lower(v_customer.email) is distinct from v_session.email then
    raise exception using errcode = 'LAUTH', message = 'the session has ended; sign in again';
  end if;
  update lic.portal_sessions as s
  set last_seen_at = greatest(s.last_seen_at, at)
  where s.account_id = v_session.account_id and s.id = v_session.id
  returning s.* into v_session;
  perform private.set_context(v_session.account_id, 'customer', v_session.id);
  return private.portal_session_view(v_session, v_customer);
end;
$$;
comment on function private.portal_authenticate(uuid, bytea, timestamptz) is
'Check a session at an instant (timeouts, the customer''s address unchanged), mark it seen and set the customer '
'context. Errors: LAUTH.';

create or replace function service.authenticate_portal(slug text, session_hash bytea)
returns api.portal_session
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.portal_authenticate(private.portal_begin(slug), session_hash, now());
end;
$$;
comment on function service.authenticate_portal(text, bytea) is
'Resolve a portal session cookie (session_hash: the sha256 of its value) and set the customer context for the '
'rest of the transaction; call it first on every signed-in page. Enforces the idle (30 minutes since last seen) '
'and absolute (12 hours) timeouts, ends the session when its customer''s email changed, and marks it seen. '
'Errors: LNTFD (404) unknown slug, LAUTH (401) no such session, expired or ended.';

create or replace function service.logout_portal(slug text, session_hash bytea)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.portal_begin(slug);
begin
  -- Signed out in this transaction too.
  perform private.set_context(v_account_id, 'portal');
  delete from lic.portal_sessions as s where s.account_id = v_account_id and s.session_hash = logout_portal.session_hash;
  return found;
end;
$$;
comment on function service.logout_portal(text, bytea) is
'Sign out: delete the session with this hash (needs no key; expired or not) and drop the customer context. '
'Answers whether a session was deleted. Errors: LNTFD (404) unknown slug.';

-- ---------------------------------------------------------------------------
-- The signed-in customer's side

-- The customer rows the session's address proved (decision 45).
create or replace function private.portal_customer_ids()
returns uuid[]
language plpgsql
stable
as $$
declare
  v_context record := private.current_context();
  v_ids uuid[];
begin
  if v_context.kind is distinct from 'customer' then
    return '{}';
  end if;
  select coalesce(array_agg(c.id order by c.id), '{}') into v_ids
  from lic.customers as c
  where
    c.account_id = v_context.account_id
    and lower(c.email) = (
      select s.email from lic.portal_sessions as s
      where s.account_id = v_context.account_id and s.id = v_context.principal_id
    );
  return v_ids;
end;
$$;
comment on function private.portal_customer_ids() is
'The customers the signed-in session speaks for: every customer of the account with its address (none outside '
'a customer context).';

create or replace function private.portal_role(l lic.licenses, customer_ids uuid[])
returns text
language sql
stable
as $$
  select case
    when l.customer_id = any(customer_ids) or exists (
      select from lic.license_users as u
      where u.account_id = l.account_id and u.license_id = l.id and u.customer_id = any(customer_ids)
        and u.role = 'owner'
    ) then 'owner'
    when exists (
      select from lic.license_users as u
      where u.account_id = l.account_id and u.license_id = l.id and u.customer_id = any(customer_ids)
    ) then 'member'
  end;
$$;
comment on function private.portal_role(lic.licenses, uuid[]) is
'The role these customers have on a license: owner (its customer or an owner seat), member (a seat), or null '
'(none: the license does not exist for them).';

create or replace function private.portal_find_license(
  license_id uuid,
  customer_ids uuid[],
  lock boolean default false,
  param text default 'license_id'
)
returns lic.licenses
language plpgsql
volatile
as $$
declare
  v_license lic.licenses;
begin
  if lock then
    select l.* into v_license from lic.licenses as l
    where l.account_id = private.current_account_id() and l.id = portal_find_license.license_id
    for no key update;
  else
    select l.* into v_license from lic.licenses as l
    where l.account_id = private.current_account_id() and l.id = portal_find_license.license_id;
  end if;
  -- Another customer's license is as absent as a missing one.
  if not found or private.portal_role(v_license, customer_ids) is null then
    raise exception using errcode = 'LNTFD', column = param, message = 'license not found';
  end if;
  return v_license;
end;
$$;
comment on function private.portal_find_license(uuid, uuid[], boolean, text) is
'A license these customers reach, optionally locked FOR NO KEY UPDATE (as private.locked_license). Errors: LNTFD.';

create or replace function private.portal_license_view(l lic.licenses, role text, at timestamptz default now())
returns api.portal_license
language sql
stable
as $$
  select row(
    l.id, l.key, role, p.code, p.name, l.status,
    private.effective_status(l.status, l.expires_at, l.grace_ends_at, at),
    l.expires_at, l.grace_ends_at, l.paid_through,
    case when s.status in ('active', 'trialing', 'past_due') and s.ends_at is null then s.period_end end,
    case when s.status not in ('canceled', 'incomplete_expired') then s.ends_at end,
    p.max_machines,
    (
      select count(*) from lic.machines as m
      where
        m.account_id = l.account_id and m.license_id = l.id
        and private.machine_alive(m.last_heartbeat_at, p.heartbeat_interval, at)
    )::integer,
    coalesce(l.seats, p.max_users),
    (select count(*) from lic.license_users as u where u.account_id = l.account_id and u.license_id = l.id)::integer,
    l.entitlement_codes, l.created_at
  )::api.portal_license
  from lic.license_policies as p
  left join lateral (
    select ss.status, ss.period_end, ss.ends_at
    from lic.stripe_subscription_licenses as sl
    inner join lic.stripe_subscriptions as ss
      on sl.account_id = ss.account_id and sl.subscription_id = ss.subscription_id
    where sl.account_id = l.account_id and sl.license_id = l.id
    limit 1
  ) as s on true
  where p.account_id = l.account_id and p.id = l.policy_id;
$$;
comment on function private.portal_license_view(lic.licenses, text, timestamptz) is
'A license as the portal shows it to a customer with this role, at an instant.';

create or replace function service.list_portal_licenses(
  page_limit integer default 100, starting_after uuid default null
)
returns setof api.portal_license
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_ids uuid[] := private.portal_customer_ids();
begin
  return query
  select (private.portal_license_view(l, private.portal_role(l, v_ids))).*
  from lic.licenses as l
  where
    l.account_id = v_account_id
    and (
      l.customer_id = any(v_ids)
      or l.id in (
        select u.license_id from lic.license_users as u where u.account_id = v_account_id and u.customer_id = any(v_ids)
      )
    )
    and (starting_after is null or l.id < starting_after)
  order by l.id desc
  limit private.page_rows(page_limit, starting_after, null);
end;
$$;
comment on function service.list_portal_licenses(integer, uuid) is
'The portal overview: the signed-in customer''s licenses (owned or held as a member), newest first, each with '
'its role, plan, status (past_due with grace_ends_at, overdue after it), expiry, paid_through, Stripe renewal or '
'scheduled end, machines and seats against their limits and effective entitlement codes; a keyset page of up '
'to page_limit + 1 rows. Customer context only. Errors: LAUTH (401), LDNID (403) not a customer, LINVL (422).';

create or replace function service.get_portal_license(license_id uuid)
returns api.portal_license
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_ids uuid[];
  v_license lic.licenses;
begin
  perform private.require_account(kinds => array['customer']);
  v_ids := private.portal_customer_ids();
  v_license := private.portal_find_license(get_portal_license.license_id, v_ids);
  return private.portal_license_view(v_license, private.portal_role(v_license, v_ids));
end;
$$;
comment on function service.get_portal_license(uuid) is
'One license of the signed-in customer, as in the overview. Customer context only. Errors: LAUTH (401), '
'LDNID (403) not a customer, LNTFD (404) not one of theirs.';

create or replace function service.list_portal_entitlements(license_id uuid)
returns setof api.license_entitlement
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_license lic.licenses;
begin
  perform private.require_account(kinds => array['customer']);
  v_license := private.portal_find_license(list_portal_entitlements.license_id, private.portal_customer_ids());
  return query select * from private.license_entitlement_rows(v_license);
end;
$$;
comment on function service.list_portal_entitlements(uuid) is
'The effective entitlements of one of the signed-in customer''s licenses, sorted by code, with names and source '
'(policy or grant). Customer context only. Errors: LAUTH (401), LDNID (403) not a customer, LNTFD (404) not one '
'of theirs.';

create or replace function private.portal_budgets(l lic.licenses, at timestamptz)
returns setof api.portal_budget
language sql
stable
as $$
  select
    b.id, b.license_id, b.agent_id, a.name, m.code, m.name, m.unit, v.period, v."limit", v.hard, v.used,
    v.remaining, v.period_start, v.period_end
  from lic.budgets as b
  cross join lateral private.budget_view(b, at) as v
  inner join lic.meters as m on b.account_id = m.account_id and b.meter_id = m.id
  left join lic.agents as a on b.account_id = a.account_id and b.agent_id = a.id
  where
    b.account_id = l.account_id
    and (
      b.license_id = l.id
      or b.agent_id in (
        select ag.id from lic.agents as ag
        where ag.account_id = l.account_id and ag.license_id = l.id and ag.status = 'active'
      )
    )
  order by m.code collate "C", b.agent_id nulls first, b.id;
$$;
comment on function private.portal_budgets(lic.licenses, timestamptz) is
'The budgets of a license and of its active agents, with the use of the period containing at.';

create or replace function service.list_portal_budgets(license_id uuid)
returns setof api.portal_budget
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_license lic.licenses;
begin
  perform private.require_account(kinds => array['customer']);
  v_license := private.portal_find_license(list_portal_budgets.license_id, private.portal_customer_ids());
  return query select * from private.portal_budgets(v_license, now());
end;
$$;
comment on function service.list_portal_budgets(uuid) is
'Usage against budgets for the current period, for the portal''s chart: every budget of one of the signed-in '
'customer''s licenses and of its active agents, with the meter, period (UTC calendar), limit, used, remaining '
'and the period''s start and end. Customer context only. Errors: LAUTH (401), LDNID (403) not a customer, '
'LNTFD (404) not one of theirs.';

create or replace function service.list_portal_machines(
  license_id uuid,
  page_limit integer default 100,
  starting_after uuid default null
)
returns setof api.machine
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_license lic.licenses := private.portal_find_license(list_portal_machines.license_id, private.portal_customer_ids());
  v_rows integer := private.page_rows(page_limit, starting_after, null);
  v_interval interval;
begin
  select p.heartbeat_interval into v_interval
  from lic.license_policies as p
  where p.account_id = v_account_id and p.id = v_license.policy_id;
  return query
  select (private.machine_view(m, v_interval)).*
  from lic.machines as m
  where
    m.account_id = v_account_id and m.license_id = v_license.id
    and (starting_after is null or m.id < starting_after)
  order by m.id desc
  limit v_rows;
end;
$$;
comment on function service.list_portal_machines(uuid, integer, uuid) is
'The machines of one of the signed-in customer''s licenses, newest first (alive: heard from within the '
'heartbeat interval), a keyset page of up to page_limit + 1 rows. Customer context only. Errors: LAUTH (401), '
'LDNID (403) not a customer, LNTFD (404) not one of theirs, LINVL (422).';

-- The machine and the license it is on, if these customers reach it.
create or replace function private.portal_find_machine(machine_id uuid, customer_ids uuid[])
returns lic.machines
language plpgsql
volatile
as $$
declare
  v_machine lic.machines := private.find_machine(machine_id, lock => true);
  v_license lic.licenses;
begin
  select l.* into v_license from lic.licenses as l
  where l.account_id = v_machine.account_id and l.id = v_machine.license_id;
  if private.portal_role(v_license, customer_ids) is null then
    raise exception using errcode = 'LNTFD', column = 'machine_id', message = 'machine not found';
  end if;
  return v_machine;
end;
$$;
comment on function private.portal_find_machine(uuid, uuid[]) is
'A machine on a license these customers reach, locked FOR UPDATE. Errors: LNTFD.';

create or replace function service.deactivate_portal_machine(machine_id uuid)
returns api.machine
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_machine lic.machines := private.portal_find_machine(machine_id, private.portal_customer_ids());
  v_view api.machine := private.machine_view(v_machine);
begin
  delete from lic.machines as m where m.account_id = v_account_id and m.id = v_machine.id;
  perform private.emit_event(v_account_id, 'machine.deactivated', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function service.deactivate_portal_machine(uuid) is
'Deactivate (delete) a machine on one of the signed-in customer''s licenses, owner or member, freeing its place; '
'returns it as it was and emits machine.deactivated. Customer context only. Errors: LAUTH (401), LDNID (403) not '
'a customer, LNTFD (404) not one of theirs.';

create or replace function service.transfer_portal_machine(machine_id uuid, license_id uuid)
returns api.machine
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_ids uuid[] := private.portal_customer_ids();
  v_machine lic.machines := private.portal_find_machine(machine_id, v_ids);
  v_target lic.licenses;
begin
  if v_machine.license_id = transfer_portal_machine.license_id then
    return private.machine_view(v_machine);
  end if;
  v_target := private.portal_find_license(transfer_portal_machine.license_id, v_ids, lock => true);
  if private.portal_role(v_target, v_ids) <> 'owner' then
    raise exception using errcode = 'LDNID', column = 'license_id',
      message = 'a machine can only move to a license you own';
  end if;
  return private.move_machine(v_machine, v_target);
end;
$$;
comment on function service.transfer_portal_machine(uuid, uuid) is
'Move a machine of one of the signed-in customer''s licenses to another usable license they own, within its '
'max_machines (machines silent past the heartbeat interval make room); its current license is a no-op. Emits '
'machine.transferred. Customer context only. Errors: LAUTH (401), LDNID (403) not a customer, or the target is '
'not theirs as owner, LNTFD (404) machine or license not theirs, LSTAT (409) target not usable, full, or holding '
'the fingerprint.';

create or replace function private.portal_member_view(u lic.license_users, customer_ids uuid[])
returns api.portal_member
language sql
stable
as $$
  select row(u.license_id, u.customer_id, c.email, c.name, u.role, u.customer_id = any(customer_ids), u.created_at)
    ::api.portal_member
  from lic.customers as c
  where c.account_id = u.account_id and c.id = u.customer_id;
$$;
comment on function private.portal_member_view(lic.license_users, uuid[]) is
'A seat as the portal shows it, marked is_you when it is one of these customers''.';

create or replace function service.list_portal_members(
  license_id uuid,
  page_limit integer default 100,
  starting_after uuid default null
)
returns setof api.portal_member
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_ids uuid[] := private.portal_customer_ids();
  v_license lic.licenses := private.portal_find_license(list_portal_members.license_id, v_ids);
  v_rows integer := private.page_rows(page_limit, starting_after, null);
begin
  return query
  select (private.portal_member_view(u, v_ids)).*
  from lic.license_users as u
  where
    u.account_id = v_account_id and u.license_id = v_license.id
    and (starting_after is null or u.customer_id < starting_after)
  order by u.customer_id desc
  limit v_rows;
end;
$$;
comment on function service.list_portal_members(uuid, integer, uuid) is
'The team of one of the signed-in customer''s licenses (owners and members see it alike): its seats by customer '
'id, newest customer first, a keyset page of up to page_limit + 1 rows (the cursors are customer ids). Customer '
'context only. Errors: LAUTH (401), LDNID (403) not a customer, LNTFD (404) not one of theirs, LINVL (422).';

-- The license locked for a team change, which only an owner may make.
create or replace function private.portal_team_license(license_id uuid, customer_ids uuid[])
returns lic.licenses
language plpgsql
volatile
as $$
declare
  v_license lic.licenses := private.portal_find_license(license_id, customer_ids, lock => true);
begin
  if private.portal_role(v_license, customer_ids) <> 'owner' then
    raise exception using errcode = 'LDNID', column = 'license_id',
      message = 'only an owner of the license manages its team';
  end if;
  return v_license;
end;
$$;
comment on function private.portal_team_license(uuid, uuid[]) is
'A license these customers own, locked FOR NO KEY UPDATE for a team change. Errors: LNTFD, LDNID (a member).';

create or replace function service.invite_portal_member(license_id uuid, email text, name text default null)
returns api.portal_member
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_ids uuid[] := private.portal_customer_ids();
  v_license lic.licenses;
  v_policy lic.license_policies;
  v_customer lic.customers;
  v_seat lic.license_users;
  v_max_users integer;
  v_seats integer;
begin
  if invite_portal_member.email is null or invite_portal_member.email !~ '^[^@\s]+@[^@\s]+$'
    or length(invite_portal_member.email) > 320 then
    raise exception using errcode = 'LINVL', column = 'email', message = 'email is not a valid address';
  end if;
  if length(invite_portal_member.name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1-200 characters';
  end if;
  v_license := private.portal_team_license(invite_portal_member.license_id, v_ids);
  -- The oldest customer with this address, as api.add_license_user finds it.
  select c.* into v_customer
  from lic.customers as c
  where c.account_id = v_account_id and lower(c.email) = lower(invite_portal_member.email)
  order by c.id
  limit 1;
  if v_customer.id is not null then
    select u.* into v_seat
    from lic.license_users as u
    where u.account_id = v_account_id and u.license_id = v_license.id and u.customer_id = v_customer.id;
    if found then
      return private.portal_member_view(v_seat, v_ids);
    end if;
  end if;
  select p.* into v_policy
  from lic.license_policies as p
  where p.account_id = v_account_id and p.id = v_license.policy_id;
  -- Seats bought through Stripe replace the policy's max_users.
  v_max_users := coalesce(v_license.seats, v_policy.max_users);
  if v_max_users is not null then
    select count(*) into v_seats
    from lic.license_users as u
    where u.account_id = v_account_id and u.license_id = v_license.id;
    if v_seats >= v_max_users then
      raise exception using errcode = 'LSTAT', column = 'license_id',
        message = format('the license has %s seats and all are taken; remove a member first', v_max_users);
    end if;
  end if;
  if v_customer.id is null then
    insert into lic.customers as c (account_id, email, name)
    values (v_account_id, invite_portal_member.email, invite_portal_member.name)
    returning c.* into v_customer;
    perform private.emit_event(v_account_id, 'customer.created', to_jsonb(private.customer_view(v_customer)));
  end if;
  insert into lic.license_users as u (account_id, license_id, customer_id, role)
  values (v_account_id, v_license.id, v_customer.id, 'member')
  returning u.* into v_seat;
  perform private.emit_event(v_account_id, 'license.user_added', to_jsonb(private.license_user_view(v_seat)));
  return private.portal_member_view(v_seat, v_ids);
end;
$$;
comment on function service.invite_portal_member(uuid, text, text) is
'An owner gives a seat on their license to an address: the account''s customer with it (case-insensitively, the '
'oldest), else a new customer with that email and name (customer.created), as a member, within the license''s '
'seats (bought seats, else the policy''s max_users); the invitee signs in by magic link. Someone already seated '
'is returned unchanged. Emits license.user_added. Customer context only. Errors: LAUTH (401), LDNID (403) not a '
'customer or not an owner, LNTFD (404) not one of theirs, LSTAT (409) no seat left, LINVL (422).';

create or replace function service.remove_portal_member(license_id uuid, customer_id uuid)
returns api.portal_member
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_ids uuid[] := private.portal_customer_ids();
  v_license lic.licenses := private.portal_team_license(remove_portal_member.license_id, v_ids);
  v_seat lic.license_users;
  v_view api.portal_member;
begin
  select u.* into v_seat
  from lic.license_users as u
  where u.account_id = v_account_id and u.license_id = v_license.id and u.customer_id = remove_portal_member.customer_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'customer_id', message = 'this customer has no seat on the license';
  end if;
  if v_seat.role = 'owner' or v_seat.customer_id = v_license.customer_id then
    raise exception using errcode = 'LSTAT', column = 'customer_id',
      message = 'an owner''s seat cannot be removed from the portal';
  end if;
  v_view := private.portal_member_view(v_seat, v_ids);
  delete from lic.license_users as u
  where u.account_id = v_account_id and u.license_id = v_seat.license_id and u.customer_id = v_seat.customer_id;
  perform private.emit_event(v_account_id, 'license.user_removed', to_jsonb(private.license_user_view(v_seat)));
  return v_view;
end;
$$;
comment on function service.remove_portal_member(uuid, uuid) is
'An owner removes a member''s seat from their license; returns it as it was and emits license.user_removed. '
'Owner seats stay. Customer context only. Errors: LAUTH (401), LDNID (403) not a customer or not an owner, '
'LNTFD (404) license not theirs or no such seat, LSTAT (409) an owner''s seat.';

create or replace function service.get_portal_billing(return_url text default null)
returns api.portal_billing
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['customer']);
  v_ids uuid[] := private.portal_customer_ids();
  v_customer text;
  v_livemode boolean;
  v_connection lic.stripe_connections;
begin
  if get_portal_billing.return_url !~ '^https?://' or length(get_portal_billing.return_url) > 2000 then
    raise exception using errcode = 'LINVL', column = 'return_url',
      message = 'return_url must be an http(s) URL of at most 2000 characters';
  end if;
  -- The person's own Stripe customer (the oldest of their rows that has one),
  -- never the owner's of a license they are a member of.
  select c.stripe_customer_id into v_customer
  from lic.customers as c
  where c.account_id = v_account_id and c.id = any(v_ids) and c.stripe_customer_id is not null
  order by c.id
  limit 1;
  if v_customer is null then
    return row(null, null, null, null, v_account_id)::api.portal_billing;
  end if;
  -- Its mode: of a subscription or purchase of that customer, else the only
  -- mode connected.
  select s.livemode into v_livemode
  from lic.stripe_subscriptions as s
  where s.account_id = v_account_id and s.customer = v_customer and s.livemode is not null
  order by s.observed_at desc
  limit 1;
  if v_livemode is null then
    select ch.livemode into v_livemode
    from lic.stripe_checkouts as ch
    where ch.account_id = v_account_id and ch.customer = v_customer and ch.livemode is not null
    limit 1;
  end if;
  if v_livemode is null then
    select min(c.livemode::integer)::boolean into v_livemode
    from lic.stripe_connections as c
    where c.account_id = v_account_id
    having count(*) = 1;
  end if;
  select c.* into v_connection
  from lic.stripe_connections as c
  where c.account_id = v_account_id and c.livemode = v_livemode;
  return row(
    v_customer, v_livemode, coalesce(get_portal_billing.return_url, v_connection.portal_return_url),
    v_connection.api_key_ciphertext, v_account_id
  )::api.portal_billing;
end;
$$;
comment on function service.get_portal_billing(text) is
'For the billing button: the signed-in customer''s own Stripe customer id (null: no button), its mode (of its '
'subscriptions or purchases, else the only connected mode), where Stripe returns to (return_url, else the '
'connection''s portal_return_url), the encrypted API key of that mode (null: none connected, no button) and the '
'account it is bound to. '
'Customer context only. Errors: LAUTH (401), LDNID (403) not a customer, LINVL (422) return_url.';
