-- The end-user portal (functions/85_portal.sql): the tenant's slug and
-- branding with its plan gate; magic-link tokens (hashed, single use,
-- 15 minutes, earlier ones voided, rate limits, unknown addresses store
-- nothing); the confirm that makes a new session; session timeouts, fixation
-- and logout; context kinds; and what a signed-in customer reaches: only the
-- licenses they own or are a member of, in one account (like tenant
-- isolation, one level down).
begin;
select plan(193);

\ir licensing_fixtures.sql

-- sha256 of a test token, session id or IP, as the web layer passes them.
create function tests.h(value text)
returns bytea
language sql
immutable
as $$
  select sha256(convert_to(value, 'UTF8'));
$$;

-- A visitor: the web process's role (lic_web) with no context.
create function tests.visit()
returns void
language plpgsql
volatile
as $$
begin
  perform tests.clear_context();
  perform pg_catalog.set_config('role', 'lic_web', true);
end;
$$;

-- Sign in as lic_web the way the web layer does: ask for a link, confirm it.
-- Leaves lic_web with the customer context; answers the session id.
create function tests.sign_in(slug text, email text, token text, session text)
returns uuid
language plpgsql
volatile
as $$
declare
  v_answer api.portal_login_request;
begin
  perform tests.visit();
  v_answer := service.request_portal_login(
    slug => sign_in.slug, email => sign_in.email, token_hash => tests.h(token), ip_hash => tests.h('ip ' || token)
  );
  if not v_answer.send then
    raise exception 'no link for % (%)', email, v_answer.reason using errcode = 'LSTAT';
  end if;
  return (service.confirm_portal_login(slug => sign_in.slug, token_hash => tests.h(token), session_hash => tests.h(session)))
    .session_id;
end;
$$;

-- A later request of a signed-in customer: lic_web with the session cookie.
create function tests.as_session(slug text, session text)
returns void
language plpgsql
volatile
as $$
begin
  perform tests.visit();
  perform service.authenticate_portal(slug => as_session.slug, session_hash => tests.h(session));
end;
$$;

grant execute on function
tests.h(text), tests.visit(), tests.sign_in(text, text, text, text), tests.as_session(text, text)
to lic_app, lic_web, lic_definer;

-- ---------------------------------------------------------------------------
-- Fixtures, as the superuser. Account A (starter):
--   alice: two customer rows with her address (the older one has a Stripe
--   customer); bob; carol; erin (for the rate limits).
--   LA1 (std: 2 machines, 3 users): alice owner, bob member; machines m1, m2.
--   LA2 (pro: 1 machine): owned by alice's second row.
--   LB  (std): bob owner, carol member; machine mb.
--   LC  (std): carol only; machine mc.
-- Account B (free): its own alice with license BL.
select from tests.create_account('A', 'starter');
select from tests.create_account('B', 'free');
select from tests.create_account('C', 'starter');
select tests.fx_policy('A', 'std', max_machines => 2, max_users => 3);
select tests.fx_policy('A', 'pro', max_machines => 1);
select tests.fx_policy('B', 'std');

with c as (
  insert into lic.customers (account_id, email, name, stripe_customer_id)
  values (tests.account_id('A'), 'Alice@Example.com', 'Alice', 'cus_alice')
  returning id
)

select tests.remember('alice', c.id) from c;
with c as (
  insert into lic.customers (account_id, email, name) values (tests.account_id('A'), 'alice@EXAMPLE.com', null)
  returning id
)

select tests.remember('alice2', c.id) from c;
with c as (
  insert into lic.customers (account_id, email, name) values (tests.account_id('A'), 'bob@example.com', 'Bob')
  returning id
)

select tests.remember('bob', c.id) from c;
with c as (
  insert into lic.customers (account_id, email, name) values (tests.account_id('A'), 'carol@example.com', 'Carol')
  returning id
)

select tests.remember('carol', c.id) from c;
with c as (
  insert into lic.customers (account_id, email, name) values (tests.account_id('A'), 'erin@example.com', 'Erin')
  returning id
)

select tests.remember('erin', c.id) from c;
with c as (
  insert into lic.customers (account_id, email, name) values (tests.account_id('B'), 'alice@example.com', 'Alice B')
  returning id
)

select tests.remember('b alice', c.id) from c;

select tests.fx_license('A', 'LA1', 'std', customer_id => tests.id('alice'));
select tests.fx_license('A', 'LA2', 'pro', customer_id => tests.id('alice2'));
select tests.fx_license('A', 'LB', 'std', customer_id => tests.id('bob'));
select tests.fx_license('A', 'LC', 'std', customer_id => tests.id('carol'));
select tests.fx_license('B', 'BL', 'std', customer_id => tests.id('b alice'));
select tests.fx_seat('LA1', tests.id('alice'), 'owner');
select tests.fx_seat('LA1', tests.id('bob'), 'member');
select tests.fx_seat('LA2', tests.id('alice2'), 'owner');
select tests.fx_seat('LB', tests.id('bob'), 'owner');
select tests.fx_seat('LB', tests.id('carol'), 'member');
select tests.fx_seat('LC', tests.id('carol'), 'owner');
select tests.fx_seat('BL', tests.id('b alice'), 'owner');
select tests.remember('m1', tests.fx_machine('LA1', 'fp-1'));
select tests.remember('m2', tests.fx_machine('LA1', 'fp-2'));
select tests.remember('mb', tests.fx_machine('LB', 'fp-b'));
select tests.remember('mc', tests.fx_machine('LC', 'fp-c'));
select tests.fx_entitlement('A', 'export', array['std']);
select tests.fx_entitlement('A', 'sso', array['pro']);

-- Usage: a monthly budget on LA1 with 40 of 100 used, a daily one on its
-- agent, and one on LC's agent (not LA1's business).
with m as (
  insert into lic.meters (account_id, code, name, unit, aggregation)
  values (tests.account_id('A'), 'tokens', 'Tokens', 'token', 'sum')
  returning id
)

select tests.remember('tokens', m.id) from m;
with a as (
  insert into lic.agents (account_id, name, license_id, token_hash, redacted)
  values (tests.account_id('A'), 'LA1 bot', tests.fx_id('LA1'), tests.h('agent 1'), 'lic_ak_…1')
  returning id
)

select tests.remember('LA1 bot', a.id) from a;
with a as (
  insert into lic.agents (account_id, name, license_id, token_hash, redacted)
  values (tests.account_id('A'), 'LC bot', tests.fx_id('LC'), tests.h('agent 2'), 'lic_ak_…2')
  returning id
)

select tests.remember('LC bot', a.id) from a;
with b as (
  insert into lic.budgets (account_id, meter_id, license_id, period, "limit")
  values (tests.account_id('A'), tests.id('tokens'), tests.fx_id('LA1'), 'month', 100)
  returning id
)

select tests.remember('LA1 budget', b.id) from b;
insert into lic.budget_usage (account_id, budget_id, period_start, used)
values (tests.account_id('A'), tests.id('LA1 budget'), private.budget_period_start('month', now()), 40);
with b as (
  insert into lic.budgets (account_id, meter_id, agent_id, period, "limit")
  values (tests.account_id('A'), tests.id('tokens'), tests.id('LA1 bot'), 'day', 10)
  returning id
)

select tests.remember('bot budget', b.id) from b;
insert into lic.budgets (account_id, meter_id, agent_id, period, "limit")
values (tests.account_id('A'), tests.id('tokens'), tests.id('LC bot'), 'day', 7);

-- Stripe: LA1 renews through a subscription; one test-mode connection.
insert into lic.stripe_connections (account_id, livemode, api_key_ciphertext, api_key_redacted, portal_return_url)
values (tests.account_id('A'), false, '\x0102', 'sk_test_…0102', 'https://tenant.example/account');
insert into lic.stripe_subscriptions (
  account_id, subscription_id, livemode, customer, status, items, period_end, observed_at
)
values (
  tests.account_id('A'), 'sub_1', false, 'cus_alice', 'active', '[]', now() + interval '20 days', now()
);
insert into lic.stripe_subscription_licenses (account_id, license_id, subscription_id, item_id, synced_status)
values (tests.account_id('A'), tests.fx_id('LA1'), 'sub_1', 'si_1', 'active');

-- ---------------------------------------------------------------------------
-- Settings: the slug on every plan, branding from starter up.
select from tests.act_as(tests.secret_key('A'));
select is(
  (select row(s.slug, s.logo_url, s.custom_branding)::text from api.get_portal_settings() as s),
  row(null::text, null::text, true)::text,
  'a new account has no portal slug yet, and a starter plan may brand it'
);
select is(
  (api.update_portal_settings(slug => 'Acme-Portal')).slug, 'acme-portal',
  'the tenant sets its slug (stored lowercased)'
);
select is(
  (
    select row(s.slug, s.logo_url, s.primary_color, s.accent_color, s.product_name)::text
    from api.update_portal_settings(
      logo_url => 'https://cdn.acme.example/logo.svg', primary_color => '#AA00FF', accent_color => '#00aa11',
      product_name => 'Acme Studio'
    ) as s
  ),
  row('acme-portal', 'https://cdn.acme.example/logo.svg', '#aa00ff', '#00aa11', 'Acme Studio')::text,
  'a starter account sets its branding (colours stored lowercased) and keeps its slug'
);
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', s.statement))
from unnest(array[
  $$select api.update_portal_settings(slug => 'ab')$$,
  $$select api.update_portal_settings(slug => '-acme')$$,
  $$select api.update_portal_settings(slug => 'acme-')$$,
  $$select api.update_portal_settings(slug => 'ac_me')$$,
  $$select api.update_portal_settings(slug => 'ac me')$$,
  $$select api.update_portal_settings(slug => repeat('a', 64))$$,
  $$select api.update_portal_settings(slug => 'admin')$$,
  $$select api.update_portal_settings(logo_url => 'http://cdn.acme.example/logo.svg')$$,
  $$select api.update_portal_settings(logo_url => 'https://x.example/"onerror="alert(1)')$$,
  $$select api.update_portal_settings(logo_url => 'https://x.example/<script>')$$,
  $$select api.update_portal_settings(logo_url => 'javascript:alert(1)')$$,
  $$select api.update_portal_settings(primary_color => '#abc')$$,
  $$select api.update_portal_settings(accent_color => 'red')$$,
  $$select api.update_portal_settings(product_name => '')$$,
  $$select api.update_portal_settings(product_name => repeat('x', 101))$$,
  $$select api.update_portal_settings(clear => '{name}')$$,
  $$select api.update_portal_settings(slug => 'other', clear => '{slug}')$$
]) as s (statement);
select is(
  (
    select row(s.product_name, s.logo_url)::text
    from api.update_portal_settings(clear => '{product_name}') as s
  ),
  row(null::text, 'https://cdn.acme.example/logo.svg')::text,
  'clear removes one branding field and leaves the others'
);
select from api.update_portal_settings(product_name => 'Acme Studio');
select tests.clear_context();

select from tests.act_as(tests.secret_key('B'));
select throws_ok(
  $$select api.update_portal_settings(slug => 'ACME-portal')$$, '23505', null,
  'a slug is unique across accounts (409), whatever its case'
);
select is(
  (api.update_portal_settings(slug => 'bee')).slug, 'bee', 'a free account may set its slug'
);
select throws_ok(s.statement, 'LPLAN', null, format('on the free plan %s raises LPLAN', s.statement))
from unnest(array[
  $$select api.update_portal_settings(logo_url => 'https://bee.example/logo.png')$$,
  $$select api.update_portal_settings(primary_color => '#123456')$$,
  $$select api.update_portal_settings(accent_color => '#123456')$$,
  $$select api.update_portal_settings(product_name => 'Bee')$$,
  $$select api.update_portal_settings(slug => 'bee-2', product_name => 'Bee')$$
]) as s (statement);
select is(
  (select row(s.slug, s.custom_branding)::text from api.get_portal_settings() as s),
  row('bee', false)::text,
  'a refused update changes nothing (slug kept) and the free plan shows no custom branding'
);
select lives_ok(
  $$select api.update_portal_settings(clear => '{logo_url, product_name}')$$,
  'clearing branding is allowed on the free plan'
);
select from tests.act_as(tests.key_secret('A'));
select from tests.remember_key('A web', api.create_api_key(kind => 'publishable'));
select from tests.act_as(tests.key_secret('A web'));
select throws_ok('select api.get_portal_settings()', 'LDNID', null, 'a publishable key cannot read portal settings');
select throws_ok(
  $$select api.update_portal_settings(slug => 'x-y-z')$$, 'LDNID', null,
  'a publishable key cannot change portal settings'
);
select tests.clear_context();
-- Branding stored while B was on a paid plan stays hidden on free.
update lic.portal_settings set product_name = 'Bee Pro', logo_url = 'https://bee.example/logo.png'
where account_id = tests.account_id('B');

-- ---------------------------------------------------------------------------
-- The public face of a portal (no key).
select tests.visit();
select is(
  (
    select row(f.slug, f.account_name, f.product_name, f.logo_url, f.primary_color, f.accent_color, f.branded)::text
    from service.resolve_portal(slug => 'acme-portal') as f
  ),
  row('acme-portal', 'A', 'Acme Studio', 'https://cdn.acme.example/logo.svg', '#aa00ff', '#00aa11', true)::text,
  'a visitor resolves a slug to the account''s name and branding'
);
select is((service.resolve_portal(slug => 'ACME-Portal')).account_name, 'A', 'slugs resolve case-insensitively');
select is(
  (
    select row(f.account_name, f.product_name, f.logo_url, f.branded)::text
    from service.resolve_portal(slug => 'bee') as f
  ),
  row('B', null::text, null::text, false)::text,
  'a free account''s portal shows no branding, even branding stored earlier'
);
select throws_ok(
  $$select service.resolve_portal(slug => 'nope')$$, 'LNTFD', null, 'an unknown slug raises LNTFD'
);
select throws_ok(
  $$select service.resolve_portal(slug => null)$$, 'LNTFD', null, 'no slug raises LNTFD'
);
select tests.clear_context();
update lic.accounts set plan = 'free'
where account_id = tests.account_id('A');
select tests.visit();
select is(
  (
    select row(f.product_name, f.primary_color, f.branded)::text from service.resolve_portal(slug => 'acme-portal') as f
  ),
  row(null::text, null::text, false)::text,
  'after a downgrade to free the portal falls back to the default look'
);
select tests.clear_context();
update lic.accounts set plan = 'starter'
where account_id = tests.account_id('A');
select tests.visit();
select from service.resolve_portal('acme-portal');
select throws_ok(
  'select api.get_portal_settings()', 'LDNID', null,
  'a visitor''s portal context reaches no tenant function'
);

-- ---------------------------------------------------------------------------
-- Asking for a link.
select tests.visit();
select is(
  (
    select row(r.send, r.reason, r.email, r.name, r.expires_at, r.portal ->> 'slug', r.portal ->> 'product_name')::text
    from service.request_portal_login(
      slug => 'acme-portal', email => 'ALICE@example.COM', token_hash => tests.h('T-alice'), ip_hash => tests.h('ip 1')
    ) as r
  ),
  row(
    true, 'ok', 'Alice@Example.com', 'Alice', now() + interval '15 minutes', 'acme-portal', 'Acme Studio'
  )::text,
  'a known address (any case) gets a link: send to the oldest customer''s email and name, with the branding'
);
select tests.clear_context();
select is(
  (
    select row(t.token_hash, t.customer_id, t.email, t.ip_hash, t.expires_at, t.used_at, t.revoked_at)::text
    from lic.portal_login_tokens as t
    where t.account_id = tests.account_id('A')
  ),
  row(
    tests.h('T-alice'), tests.id('alice'), 'alice@example.com', tests.h('ip 1'), now() + interval '15 minutes',
    null::timestamptz, null::timestamptz
  )::text,
  'only the token''s sha256 is stored, for the oldest customer with the address, expiring in 15 minutes'
);
select tests.visit();
select is(
  (
    select row(r.send, r.reason, r.email, r.name, r.expires_at, r.portal)::text
    from service.request_portal_login(
      slug => 'acme-portal', email => 'nobody@example.com', token_hash => tests.h('T-nobody'),
      ip_hash => tests.h('ip 1')
    ) as r
  ),
  row(false, 'unknown_email', null::text, null::text, null::timestamptz, null::jsonb)::text,
  'an unknown address is answered without error: do not send'
);
select is(
  (
    select row(r.send, r.email, r.name, r.expires_at, r.portal)::text
    from service.request_portal_login(
      slug => 'acme-portal', email => 'alice@example.com', token_hash => tests.h('T-alice-again'),
      ip_hash => tests.h('ip 1')
    ) as r
  ),
  row(false, null::text, null::text, null::timestamptz, null::jsonb)::text,
  'a rate-limited known address gets the same answer as an unknown one (only the logged reason differs)'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.portal_login_tokens as t
    where t.account_id = tests.account_id('A') and t.token_hash in (tests.h('T-nobody'), tests.h('T-alice-again'))
  ),
  0,
  'neither an unknown address nor a rate-limited request stores a token'
);
select is(
  (
    select count(*)::integer from lic.portal_login_tokens
    where email = 'nobody@example.com'
  ), 0,
  'nothing is stored about an unknown address'
);
select tests.visit();
select throws_ok(s.statement, s.code, null, format('%s raises %s', s.statement, s.code))
from (
  values
  ($$select service.request_portal_login('nope', 'alice@example.com', tests.h('x'), tests.h('ip'))$$, 'LNTFD'),
  ($$select service.request_portal_login('acme-portal', 'alice', tests.h('x'), tests.h('ip'))$$, 'LINVL'),
  ($$select service.request_portal_login('acme-portal', null, tests.h('x'), tests.h('ip'))$$, 'LINVL'),
  ($$select service.request_portal_login('acme-portal', 'a@b.c', '\x00', tests.h('ip'))$$, 'LINVL'),
  ($$select service.request_portal_login('acme-portal', 'a@b.c', tests.h('x'), null)$$, 'LINVL')
) as s (statement, code);


select tests.clear_context();
-- Rate limits, at fixed instants through the private helper (as the api
-- function's definer runs it). erin asks at these seconds from now:
-- 30 s after the first is inside the minute; the sixth within the hour is
-- over 5; an hour on, the window has moved.
create function tests.erin_requests()
returns table (secs integer, send boolean, reason text)
language plpgsql
volatile
as $$
declare
  v_secs integer;
  v_answer api.portal_login_request;
begin
  foreach v_secs in array array[0, 30, 61, 122, 183, 244, 305, 3700] loop
    v_answer := private.portal_request_login(
      tests.account_id('A'), 'Erin@example.com', tests.h('E' || v_secs), tests.h('ip erin'),
      now() + make_interval(secs => v_secs)
    );
    return query select v_secs, v_answer.send, v_answer.reason;
  end loop;
end;
$$;
grant execute on function tests.erin_requests() to lic_definer;
select tests.act_as_definer(tests.account_id('A'));
select results_eq(
  'select * from tests.erin_requests()',
  $$
    values
    (0, true, 'ok'), (30, false, 'email_rate_limited'), (61, true, 'ok'), (122, true, 'ok'), (183, true, 'ok'),
    (244, true, 'ok'), (305, false, 'email_rate_limited'), (3700, true, 'ok')
  $$,
  'per address: 1 link a minute and 5 an hour'
);
select tests.clear_context();
select results_eq(
  $$
    select t.token_hash, t.revoked_at is not null, t.expires_at <= now() + interval '3700 seconds'
    from lic.portal_login_tokens as t where t.email = 'erin@example.com' order by t.created_at
  $$,
  $$
    values
    (tests.h('E0'), true, true), (tests.h('E61'), true, true), (tests.h('E122'), true, true),
    (tests.h('E183'), true, true), (tests.h('E244'), false, true), (tests.h('E3700'), false, false)
  $$,
  'each new link voided the address''s earlier unused one (one already expired is left as it is)'
);

-- Per IP: 20 requests an hour, whatever they asked for (unknown addresses
-- too), counted in lic.portal_login_requests; older ones count for nothing.
select tests.visit();
select is(
  (
    select array_agg(distinct r.reason)
    from generate_series(1, 20) as n
    cross join lateral service.request_portal_login(
      'acme-portal', 'nobody' || n || '@example.com', tests.h('T-nobody ' || n), tests.h('ip busy')
    ) as r
  ),
  array['unknown_email'],
  'twenty requests for unknown addresses store no token'
);
select is(
  (
    select row(r.send, r.reason)::text
    from service.request_portal_login('acme-portal', 'bob@example.com', tests.h('T-bob-busy'), tests.h('ip busy')) as r
  ),
  row(false, 'ip_rate_limited')::text,
  'per IP: the 21st request within an hour gets no link, though the first twenty asked for unknown addresses'
);
select tests.clear_context();
update lic.portal_login_requests
set requested_at = requested_at - interval '61 minutes'
where ip_hash = tests.h('ip busy');
select tests.visit();
select is(
  (
    select count(*)::integer
    from service.request_portal_login('acme-portal', 'nobody@example.com', tests.h('T-later'), tests.h('ip busy'))
  ),
  1,
  'an hour later the IP may ask again'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer
    from lic.portal_login_requests
    where ip_hash = tests.h('ip busy')
  ),
  1,
  'requests older than an hour were deleted by the next request to the portal'
);
-- Per account: a circuit breaker of 100 links a minute.
insert into lic.portal_login_tokens (account_id, token_hash, customer_id, email, ip_hash, created_at, expires_at)
select
  tests.account_id('A') as account_id,
  tests.h('flood ' || n) as token_hash,
  tests.id('carol') as customer_id,
  'flood' || n || '@example.com' as email,
  tests.h('ip flood ' || n) as ip_hash,
  now() - interval '10 seconds' as created_at,
  now() + interval '14 minutes' as expires_at
from generate_series(1, 100) as n;
select tests.visit();
select is(
  (
    select row(r.send, r.reason)::text
    from service.request_portal_login('acme-portal', 'bob@example.com', tests.h('T-bob-flood'), tests.h('ip 2')) as r
  ),
  row(false, 'account_rate_limited')::text,
  'per account: past 100 links a minute none is sent'
);
select tests.clear_context();
delete from lic.portal_login_tokens
where email like 'flood%' or email like 'busy%';
-- Old tokens are purged as new ones are issued.
insert into lic.portal_login_tokens (account_id, token_hash, customer_id, email, ip_hash, created_at, expires_at)
values (
  tests.account_id('A'), tests.h('ancient'), tests.id('carol'), 'carol@example.com', tests.h('ip 3'),
  now() - interval '2 days', now() - interval '2 days' + interval '15 minutes'
);
select tests.visit();
select is(
  (service.request_portal_login('acme-portal', 'bob@example.com', tests.h('T-bob'), tests.h('ip 4'))).send, true,
  'bob gets a link'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.portal_login_tokens
    where token_hash = tests.h('ancient')
  ), 0,
  'a token older than a day is purged when the next one is issued'
);

-- ---------------------------------------------------------------------------
-- The confirm page (GET, HEAD): peek changes nothing.
create temporary table tokens_before as select * from lic.portal_login_tokens;
select tests.visit();
select is(
  (
    select row(p.usable, p.masked_email, p.expires_at)::text
    from service.peek_portal_login('acme-portal', tests.h('T-alice')) as p
  ),
  row(true, 'a***@example.com', now() + interval '15 minutes')::text,
  'peek shows the masked address of a usable link'
);
select is(
  (
    select row(p.usable, p.masked_email, p.expires_at)::text
    from service.peek_portal_login('acme-portal', tests.h('T-never')) as p
  ),
  row(false, null::text, null::timestamptz)::text,
  'peek of a token never issued: not usable, no address'
);
select is(
  (select row(p.usable, p.masked_email)::text from service.peek_portal_login('acme-portal', tests.h('E0')) as p),
  row(false, 'e***@example.com')::text,
  'peek of a voided token: not usable'
);
select throws_ok(
  $$select service.peek_portal_login('acme-portal', '\x0102')$$,
  'LINVL',
  null,
  'peek refuses a hash that is not a sha256'
);
select throws_ok(
  $$select service.peek_portal_login('nope', tests.h('T-alice'))$$,
  'LNTFD',
  null,
  'peek at an unknown slug raises LNTFD'
);
select tests.clear_context();
select set_eq(
  'select * from lic.portal_login_tokens', 'select * from tokens_before',
  'peeking changed no token'
);
select is((select count(*)::integer from lic.portal_sessions), 0, 'and started no session');

-- ---------------------------------------------------------------------------
-- The confirm POST: single use, a new session.
insert into lic.portal_sessions (account_id, session_hash, customer_id, email, created_at, last_seen_at, expires_at)
values (
  tests.account_id('A'), tests.h('S-stale'), tests.id('carol'), 'carol@example.com', now() - interval '2 hours',
  now() - interval '1 hour', now() + interval '10 hours'
);
select tests.visit();
select is(
  (
    select row(s.customer_id, s.email, s.name, s.created_at, s.last_seen_at, s.idle_expires_at, s.expires_at)::text
    from service.confirm_portal_login('acme-portal', tests.h('T-alice'), tests.h('S-alice')) as s
  ),
  row(
    tests.id('alice'), 'Alice@Example.com', 'Alice', now(), now(), now() + interval '30 minutes',
    now() + interval '12 hours'
  )::text,
  'confirming a link starts a session for the oldest customer with the address: 30 minutes idle, 12 hours at most'
);
select lives_ok('select * from service.list_portal_licenses()', 'the confirm leaves the customer signed in');
select tests.clear_context();
select is(
  (
    select row(s.customer_id, s.email, s.session_hash)::text
    from lic.portal_sessions as s
    where s.account_id = tests.account_id('A') and s.email = 'alice@example.com'
  ),
  row(tests.id('alice'), 'alice@example.com', tests.h('S-alice'))::text,
  'the session row holds only the session id''s sha256'
);
select is(
  (
    select used_at from lic.portal_login_tokens
    where token_hash = tests.h('T-alice')
  ), now(),
  'the token is spent'
);
select is(
  (
    select count(*)::integer from lic.portal_sessions
    where session_hash = tests.h('S-stale')
  ), 0,
  'sessions idle past their timeout are purged when a new one starts'
);
select tests.visit();
select throws_ok(
  $$select service.confirm_portal_login('acme-portal', tests.h('T-alice'), tests.h('S-alice-again'))$$, 'LAUTH', null,
  'a spent link cannot be confirmed again'
);
select throws_ok(s.statement, s.code, null, s.description)
from (
  values
  (
    $$select service.confirm_portal_login('acme-portal', tests.h('T-never'), tests.h('S-x'))$$, 'LAUTH',
    'a token never issued raises LAUTH'
  ),
  (
    $$select service.confirm_portal_login('acme-portal', tests.h('E0'), tests.h('S-x'))$$, 'LAUTH',
    'a voided token raises LAUTH'
  ),
  (
    $$select service.confirm_portal_login('bee', tests.h('T-bob'), tests.h('S-x'))$$, 'LAUTH',
    'a token of another account''s portal raises LAUTH'
  ),
  (
    $$select service.confirm_portal_login('nope', tests.h('T-bob'), tests.h('S-x'))$$, 'LNTFD',
    'an unknown slug raises LNTFD'
  ),
  (
    $$select service.confirm_portal_login('acme-portal', tests.h('T-bob'), '\x00')$$, 'LINVL',
    'a session hash that is not a sha256 raises LINVL'
  ),
  (
    $$select service.confirm_portal_login('acme-portal', null, tests.h('S-x'))$$, 'LINVL',
    'no token hash raises LINVL'
  )
) as s (statement, code, description);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.portal_sessions
    where email = 'alice@example.com'
  ), 1,
  'confirming twice made exactly one session'
);
-- Expiry, at fixed instants: a link works until 15 minutes after it was issued.
select tests.act_as_definer(tests.account_id('A'));
select throws_ok(
  $$select private.portal_confirm_login(
    tests.account_id('A'), tests.h('T-bob'), tests.h('S-x'), null, now() + interval '15 minutes'
  )$$,
  'LAUTH', null, 'an expired link raises LAUTH'
);
select is(
  (private.portal_peek_login(tests.account_id('A'), tests.h('T-bob'), now() + interval '15 minutes')).usable, false,
  'peek says an expired link is not usable'
);
select tests.clear_context();
update lic.portal_login_tokens set expires_at = now() - interval '1 second'
where token_hash = tests.h('T-bob');
select tests.visit();
select throws_ok(
  $$select service.confirm_portal_login('acme-portal', tests.h('T-bob'), tests.h('S-bob'))$$, 'LAUTH', null,
  'a link whose expiry passed raises LAUTH'
);
select tests.clear_context();
update lic.portal_login_tokens set expires_at = now() + interval '15 minutes'
where token_hash = tests.h('T-bob');
-- A session hash already in use is refused and the token stays unspent.
select tests.visit();
select throws_ok(
  $$select service.confirm_portal_login('acme-portal', tests.h('T-bob'), tests.h('S-alice'))$$, '23505', null,
  'a session hash already in use is refused'
);
select tests.clear_context();
select is(
  (
    select used_at from lic.portal_login_tokens
    where token_hash = tests.h('T-bob')
  ), null,
  'and the token is not spent'
);
select is(
  (tests.sign_in('acme-portal', 'carol@example.com', 'T-carol', 'S-carol') is not null), true,
  'carol signs in'
);
select tests.visit();
select is(
  (service.confirm_portal_login('acme-portal', tests.h('T-bob'), tests.h('S-bob'))).customer_id, tests.id('bob'),
  'bob signs in'
);
-- The customer's address changed after the link was sent: it no longer works.
select tests.clear_context();
update lic.customers set email = 'erin@elsewhere.example'
where id = tests.id('erin');
select tests.visit();
select is(
  (service.peek_portal_login('acme-portal', tests.h('E3700'))).usable, false,
  'peek: a link for an address the customer no longer has is not usable'
);
select throws_ok(
  $$select service.confirm_portal_login('acme-portal', tests.h('E3700'), tests.h('S-erin'))$$, 'LAUTH', null,
  'a link for an address the customer no longer has raises LAUTH'
);
select tests.clear_context();
update lic.customers set email = 'erin@example.com'
where id = tests.id('erin');
-- replaces_session_hash ends the session the browser came with.
insert into lic.portal_sessions (account_id, session_hash, customer_id, email, created_at, last_seen_at, expires_at)
values (
  tests.account_id('A'), tests.h('S-erin-old'), tests.id('erin'), 'erin@example.com', now(), now(),
  now() + interval '12 hours'
);
select tests.visit();
select lives_ok(
  $$select service.confirm_portal_login(
    'acme-portal', tests.h('E3700'), tests.h('S-erin'), replaces_session_hash => tests.h('S-erin-old')
  )$$,
  'erin confirms, replacing the session her browser came with'
);
select tests.clear_context();
select results_eq(
  $$select session_hash from lic.portal_sessions where customer_id = tests.id('erin')$$,
  $$values (tests.h('S-erin'))$$,
  'the replaced session is gone; the new one has the new id'
);

-- ---------------------------------------------------------------------------
-- Sessions: authentication, timeouts, fixation, logout.
update lic.portal_sessions set last_seen_at = now() - interval '10 minutes'
where session_hash = tests.h('S-alice');
select tests.visit();
select is(
  (
    select row(s.customer_id, s.last_seen_at, s.idle_expires_at)::text
    from service.authenticate_portal('acme-portal', tests.h('S-alice')) as s
  ),
  row(tests.id('alice'), now(), now() + interval '30 minutes')::text,
  'a session authenticates and is marked seen'
);
select throws_ok(s.statement, 'LAUTH', null, s.description)
from (
  values
  (
    $$select service.authenticate_portal('acme-portal', tests.h('S-planted'))$$,
    'a session id the server never issued authenticates nothing (fixation)'
  ),
  ($$select service.authenticate_portal('acme-portal', '\x00')$$, 'a malformed session id raises LAUTH'),
  ($$select service.authenticate_portal('acme-portal', null)$$, 'no session id raises LAUTH'),
  (
    $$select service.authenticate_portal('bee', tests.h('S-alice'))$$,
    'a session of one account authenticates nothing at another account''s portal'
  )
) as s (statement, description);
select tests.clear_context();
select tests.act_as_definer(tests.account_id('A'));
select throws_ok(
  $$select private.portal_authenticate(tests.account_id('A'), tests.h('S-alice'), now() + interval '30 minutes')$$,
  'LAUTH', null, 'a session idle for 30 minutes has expired'
);
select is(
  (private.portal_authenticate(tests.account_id('A'), tests.h('S-alice'), now() + interval '29 minutes')).last_seen_at,
  now() + interval '29 minutes',
  'a session used within 30 minutes lives on'
);
select lives_ok(
  $$select private.portal_authenticate(tests.account_id('A'), tests.h('S-alice'), now() + interval '58 minutes')$$,
  'and counts its idle time from its last use'
);
select tests.clear_context();
update lic.portal_sessions set last_seen_at = now() + interval '11 hours 59 minutes'
where session_hash = tests.h('S-alice');
select tests.act_as_definer(tests.account_id('A'));
select throws_ok(
  $$select private.portal_authenticate(tests.account_id('A'), tests.h('S-alice'), now() + interval '12 hours')$$,
  'LAUTH', null, 'a session ends 12 hours after sign-in however busy it is'
);
select tests.clear_context();
update lic.portal_sessions set last_seen_at = now()
where session_hash = tests.h('S-alice');
update lic.customers set email = 'alice@new.example'
where id = tests.id('alice');
select tests.visit();
select throws_ok(
  $$select service.authenticate_portal('acme-portal', tests.h('S-alice'))$$, 'LAUTH', null,
  'a changed address ends the customer''s sessions'
);
select tests.clear_context();
update lic.customers set email = 'Alice@Example.com'
where id = tests.id('alice');

-- ---------------------------------------------------------------------------
-- Kinds: portal functions admit only a customer; a customer reaches nothing else.
create temporary view customer_functions as
select p.oid::regprocedure as fn
from pg_catalog.pg_proc as p
inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
where n.nspname = 'service' and strpos(p.prosrc, 'kinds => array[''customer'']') > 0;
create temporary view other_functions as
select p.oid::regprocedure as fn
from pg_catalog.pg_proc as p
inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
where n.nspname = 'api' and p.proname <> 'authenticate';
grant select on customer_functions, other_functions to lic_app, lic_web;
select is((select count(*)::integer from customer_functions), 11, 'eleven functions serve a signed-in customer');
select from tests.as_session('acme-portal', 'S-alice');
select is_empty(
  $$select fn::text from other_functions where tests.sqlstate_of(tests.call_with_nulls(fn)) is distinct from 'LDNID'$$,
  'a customer context is refused (LDNID) by every api function that is not the portal''s'
);
select throws_ok('select * from api.list_api_keys()', 'LDNID', null, 'a customer cannot list API keys');
select throws_ok(
  $$select * from api.create_api_key(kind => 'secret')$$, 'LDNID', null, 'a customer cannot create API keys'
);
select throws_ok(
  format('select * from api.list_license_users(%L)', tests.fx_id('LA1')), 'LDNID', null,
  'a customer cannot use the tenant''s team functions, even on their own license'
);
select from tests.act_as(tests.secret_key('A'));
-- The web process (lic_web) may call them; with a key's context they refuse.
set local role lic_web;
select is_empty(
  $$
    select fn::text from customer_functions
    where tests.sqlstate_of(tests.call_with_nulls(fn)) is distinct from 'LDNID'
  $$,
  'a secret key is refused (LDNID) by every function of the signed-in portal'
);
select from tests.act_as(tests.key_secret('A web'));
set local role lic_web;
select throws_ok(
  'select * from service.list_portal_licenses()', 'LDNID', null, 'a publishable key cannot list a customer''s licenses'
);
select tests.visit();
select from service.resolve_portal('acme-portal');
select is_empty(
  $$
    select fn::text from customer_functions
    where tests.sqlstate_of(tests.call_with_nulls(fn)) is distinct from 'LDNID'
  $$,
  'a visitor (a portal context, not signed in) is refused by every function of the signed-in portal'
);
select is_empty(
  $$select fn::text from other_functions where tests.sqlstate_of(tests.call_with_nulls(fn)) is distinct from 'LDNID'$$,
  'and by every other api function'
);
select tests.visit();
select throws_ok(
  'select * from service.list_portal_licenses()', 'LAUTH', null, 'with no context at all a portal function raises LAUTH'
);

-- ---------------------------------------------------------------------------
-- The overview: a customer's licenses, owned or as a member.
select from tests.as_session('acme-portal', 'S-alice');
select results_eq(
  'select id, role from service.list_portal_licenses()',
  $$values (tests.fx_id('LA2'), 'owner'), (tests.fx_id('LA1'), 'owner')$$,
  'alice sees her license and the one her second customer row owns (decision 45), newest first'
);
select is(
  (
    select
      row(
        l.key, l.policy_code, l.policy_name, l.status, l.effective_status, l.renews_at, l.cancel_at, l.max_machines,
        l.machines, l.max_users, l.users, l.entitlements
      )::text
    from service.get_portal_license(tests.fx_id('LA1')) as l
  ),
  row(
    tests.fx_key('LA1'), 'std', 'std', 'active', 'active', now() + interval '20 days', null::timestamptz, 2, 2, 3, 2,
    '{export}'::text[]
  )::text,
  'a license shows its plan, status, Stripe renewal, machines and seats against their limits, and entitlements'
);
select tests.clear_context();
update lic.licenses set status = 'past_due', grace_ends_at = now() + interval '3 days'
where id = tests.fx_id('LA2');
update lic.stripe_subscriptions set ends_at = now() + interval '20 days'
where subscription_id = 'sub_1';
select from tests.as_session('acme-portal', 'S-alice');
select is(
  (
    select row(l.status, l.effective_status, l.grace_ends_at)::text
    from service.get_portal_license(tests.fx_id('LA2')) as l
  ),
  row('past_due', 'past_due', now() + interval '3 days')::text,
  'a past_due license shows when its payment grace ends'
);
select is(
  (select row(l.renews_at, l.cancel_at)::text from service.get_portal_license(tests.fx_id('LA1')) as l),
  row(null::timestamptz, now() + interval '20 days')::text,
  'a subscription set to cancel shows its end instead of a renewal'
);
select tests.clear_context();
update lic.licenses set grace_ends_at = now() - interval '1 second'
where id = tests.fx_id('LA2');
select from tests.as_session('acme-portal', 'S-alice');
select is(
  (service.get_portal_license(tests.fx_id('LA2'))).effective_status, 'overdue',
  'past the grace period it is overdue'
);
select tests.clear_context();
update lic.licenses set status = 'active', grace_ends_at = null
where id = tests.fx_id('LA2');
select from tests.as_session('acme-portal', 'S-bob');
select results_eq(
  'select id, role from service.list_portal_licenses()',
  $$values (tests.fx_id('LB'), 'owner'), (tests.fx_id('LA1'), 'member')$$,
  'bob sees his own license and the one he is a member of'
);
select results_eq(
  'select id from service.list_portal_licenses(page_limit => 1)',
  $$values (tests.fx_id('LB')), (tests.fx_id('LA1'))$$,
  'the overview is a keyset page (page_limit + 1 rows)'
);
select results_eq(
  format('select id from service.list_portal_licenses(starting_after => %L)', tests.fx_id('LB')),
  $$values (tests.fx_id('LA1'))$$,
  'and pages on from its cursor'
);
select from tests.as_session('acme-portal', 'S-carol');
select results_eq(
  'select id, role from service.list_portal_licenses()',
  $$values (tests.fx_id('LC'), 'owner'), (tests.fx_id('LB'), 'member')$$,
  'carol sees hers and bob''s, where she is a member, never alice''s'
);

-- ---------------------------------------------------------------------------
-- Isolation between customers: another customer's license is 404, whatever
-- the function; nothing of it changes.
select tests.clear_context();
create temporary table la1_before as
select
  (
    select count(*) from lic.machines
    where license_id = tests.fx_id('LA1')
  ) as machines,
  (
    select count(*) from lic.license_users
    where license_id = tests.fx_id('LA1')
  ) as seats;
select from tests.as_session('acme-portal', 'S-carol');
select throws_ok(s.statement, 'LNTFD', null, format('carol: %s raises LNTFD', s.label))
from (
  values
  (format('select service.get_portal_license(%L)', tests.fx_id('LA1')), 'get_portal_license of alice''s license'),
  (format('select * from service.list_portal_entitlements(%L)', tests.fx_id('LA1')), 'list_portal_entitlements'),
  (format('select * from service.list_portal_budgets(%L)', tests.fx_id('LA1')), 'list_portal_budgets'),
  (format('select * from service.list_portal_machines(%L)', tests.fx_id('LA1')), 'list_portal_machines'),
  (format('select service.deactivate_portal_machine(%L)', tests.id('m1')), 'deactivate_portal_machine of alice''s'),
  (
    format('select service.transfer_portal_machine(%L, %L)', tests.id('m1'), tests.fx_id('LC')),
    'transfer_portal_machine of alice''s machine to her own license'
  ),
  (format('select * from service.list_portal_members(%L)', tests.fx_id('LA1')), 'list_portal_members'),
  (
    format('select service.invite_portal_member(%L, %L)', tests.fx_id('LA1'), 'mallory@example.com'),
    'invite_portal_member'
  ),
  (format('select service.remove_portal_member(%L, %L)', tests.fx_id('LA1'), tests.id('bob')), 'remove_portal_member'),
  (format('select service.get_portal_license(%L)', tests.fx_id('BL')), 'get_portal_license of another account''s'),
  (format('select service.get_portal_license(%L)', gen_random_uuid()), 'get_portal_license of no license'),
  (format('select service.deactivate_portal_machine(%L)', gen_random_uuid()), 'deactivate_portal_machine of none')
) as s (statement, label);
select tests.clear_context();
select is(
  (
    select row(
      (
        select count(*) from lic.machines
        where license_id = tests.fx_id('LA1')
      ),
      (
        select count(*) from lic.license_users
        where license_id = tests.fx_id('LA1')
      )
    )::text
  ),
  (select row(b.machines, b.seats)::text from la1_before as b),
  'alice''s license kept its machines and team'
);
select is(
  (
    select count(*)::integer from lic.customers
    where lower(email) = 'mallory@example.com'
  ), 0,
  'carol''s refused invite made no customer'
);

-- Isolation between accounts: B's alice signs in at B's portal.
select is(
  (tests.sign_in('bee', 'alice@example.com', 'T-b-alice', 'S-b-alice') is not null), true,
  'an address known to two accounts signs in to each portal separately'
);
select results_eq(
  'select id from service.list_portal_licenses()',
  $$values (tests.fx_id('BL'))$$,
  'at B''s portal she sees only B''s license'
);
select throws_ok(
  format('select service.get_portal_license(%L)', tests.fx_id('LA1')), 'LNTFD', null,
  'and A''s licenses do not exist for her there'
);
select throws_ok(
  $$select service.authenticate_portal('acme-portal', tests.h('S-b-alice'))$$, 'LAUTH', null,
  'B''s session is no session at A''s portal'
);

-- ---------------------------------------------------------------------------
-- Entitlements and usage.
select from tests.as_session('acme-portal', 'S-alice');
select results_eq(
  format('select code, name, source from service.list_portal_entitlements(%L)', tests.fx_id('LA1')),
  $$values ('export', 'EXPORT', 'policy')$$,
  'a license''s effective entitlements'
);
select results_eq(
  format(
    $$
      select budget_id, agent_name, meter_code, meter_name, unit, period, "limit", used, remaining, period_start,
        period_end
      from service.list_portal_budgets(%L)
    $$,
    tests.fx_id('LA1')
  ),
  $$
    values
    (
      tests.id('LA1 budget'), null::text, 'tokens', 'Tokens', 'token', 'month', 100::numeric, 40::numeric,
      60::numeric, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC',
      (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC'
    ),
    (
      tests.id('bot budget'), 'LA1 bot', 'tokens', 'Tokens', 'token', 'day', 10::numeric, 0::numeric, 10::numeric,
      date_trunc('day', now() at time zone 'UTC') at time zone 'UTC',
      (date_trunc('day', now() at time zone 'UTC') + interval '1 day') at time zone 'UTC'
    )
  $$,
  'usage against the license''s budgets and its agents'', for the current period (another license''s agent''s '
  'budget is not shown)'
);

-- ---------------------------------------------------------------------------
-- Machines: list, deactivate (owner or member), transfer (to a license you own).
select results_eq(
  format('select id, fingerprint, alive from service.list_portal_machines(%L)', tests.fx_id('LA1')),
  $$values (tests.id('m2'), 'fp-2', true), (tests.id('m1'), 'fp-1', true)$$,
  'a license''s machines, newest first'
);
select results_eq(
  format('select id from service.list_portal_machines(%L, page_limit => 1)', tests.fx_id('LA1')),
  $$values (tests.id('m2')), (tests.id('m1'))$$,
  'a keyset page of machines'
);
select throws_ok(
  format('select * from service.list_portal_machines(%L, page_limit => 0)', tests.fx_id('LA1')), 'LINVL', null,
  'page_limit must be 1-100'
);
select is(
  (service.deactivate_portal_machine(tests.id('m2'))).fingerprint, 'fp-2', 'the owner deactivates a machine'
);
select is(tests.event_count('machine.deactivated', jsonb_build_object('id', tests.id('m2'))), 1, 'machine.deactivated');
select is(
  (service.transfer_portal_machine(tests.id('m1'), tests.fx_id('LA2'))).license_id, tests.fx_id('LA2'),
  'the owner moves a machine to another license she owns'
);
select is(
  tests.event_count('machine.transferred', jsonb_build_object('id', tests.id('m1'), 'license_id', tests.fx_id('LA2'))),
  1,
  'machine.transferred'
);
select tests.clear_context();
select tests.remember('m3', tests.fx_machine('LA1', 'fp-3'));
select from tests.as_session('acme-portal', 'S-alice');
select throws_ok(
  format('select service.transfer_portal_machine(%L, %L)', tests.id('m3'), tests.fx_id('LA2')), 'LSTAT', null,
  'a transfer to a license whose machines are all taken raises LSTAT'
);
select is(
  (service.transfer_portal_machine(tests.id('m3'), tests.fx_id('LA1'))).license_id, tests.fx_id('LA1'),
  'a transfer to the machine''s own license changes nothing'
);
select throws_ok(
  format('select service.transfer_portal_machine(%L, %L)', tests.id('m3'), tests.fx_id('LB')), 'LNTFD', null,
  'a transfer to another customer''s license raises LNTFD'
);
select tests.clear_context();
update lic.licenses set status = 'canceled', canceled_at = now()
where id = tests.fx_id('LA2');
delete from lic.machines
where id = tests.id('m1');
select from tests.as_session('acme-portal', 'S-alice');
select throws_ok(
  format('select service.transfer_portal_machine(%L, %L)', tests.id('m3'), tests.fx_id('LA2')), 'LSTAT', null,
  'a transfer to a license that is not usable raises LSTAT'
);
select tests.clear_context();
update lic.licenses set status = 'active', canceled_at = null
where id = tests.fx_id('LA2');
select from tests.as_session('acme-portal', 'S-bob');
select is(
  (service.transfer_portal_machine(tests.id('m3'), tests.fx_id('LB'))).license_id, tests.fx_id('LB'),
  'a member may move a machine off the shared license to one he owns'
);
select throws_ok(
  format('select service.transfer_portal_machine(%L, %L)', tests.id('mb'), tests.fx_id('LA1')), 'LDNID', null,
  'but not onto a license where he is only a member (LDNID)'
);
select tests.clear_context();
select tests.remember('m4', tests.fx_machine('LA1', 'fp-4'));
select from tests.as_session('acme-portal', 'S-bob');
select is(
  (service.deactivate_portal_machine(tests.id('m4'))).id, tests.id('m4'),
  'a member may deactivate a machine of the shared license'
);
select tests.clear_context();
select tests.remember('m5', tests.fx_machine('LA2', 'fp-5'));
select from tests.as_session('acme-portal', 'S-bob');
select throws_ok(
  format('select service.deactivate_portal_machine(%L)', tests.id('m5')), 'LNTFD', null,
  'a member reaches none of the owner''s other licenses'
);

-- ---------------------------------------------------------------------------
-- The team: members see it, owners change it, within the seats.
select results_eq(
  format('select customer_id, email, role, is_you from service.list_portal_members(%L)', tests.fx_id('LA1')),
  $$
    values (tests.id('bob'), 'bob@example.com', 'member', true), (tests.id('alice'), 'Alice@Example.com', 'owner', false)
  $$,
  'a member sees the team, himself marked'
);
select throws_ok(s.statement, 'LDNID', null, format('a member cannot %s (LDNID)', s.label))
from (
  values
  (format('select service.invite_portal_member(%L, %L)', tests.fx_id('LA1'), 'friend@example.com'), 'invite'),
  (format('select service.remove_portal_member(%L, %L)', tests.fx_id('LA1'), tests.id('bob')), 'remove, even himself')
) as s (statement, label);
select from tests.as_session('acme-portal', 'S-alice');
select is(
  (
    select row(m.license_id, m.email, m.name, m.role, m.is_you)::text
    from service.invite_portal_member(tests.fx_id('LA1'), 'Dave@Example.com', 'Dave') as m
  ),
  row(tests.fx_id('LA1'), 'Dave@Example.com', 'Dave', 'member', false)::text,
  'the owner invites a new address: a member seat'
);
select tests.clear_context();
select tests.remember('dave', (
  select id from lic.customers
  where email = 'Dave@Example.com'
));
select is(
  tests.event_count('customer.created', jsonb_build_object('id', tests.id('dave'), 'email', 'Dave@Example.com')), 1,
  'the invitee became a customer of the account (customer.created)'
);
select is(
  tests.event_count(
    'license.user_added', jsonb_build_object('license_id', tests.fx_id('LA1'), 'customer_id', tests.id('dave'))
  ),
  1,
  'license.user_added'
);
select from tests.as_session('acme-portal', 'S-alice');
select is(
  (service.invite_portal_member(tests.fx_id('LA1'), 'dave@example.com')).customer_id, tests.id('dave'),
  'inviting a seated address again returns the seat'
);
select is(
  tests.event_count('license.user_added', jsonb_build_object('customer_id', tests.id('dave'))), 1,
  'and emits nothing'
);
select throws_ok(
  format('select service.invite_portal_member(%L, %L)', tests.fx_id('LA1'), 'frank@example.com'), 'LSTAT', null,
  'with every seat taken (3 of 3) an invite raises LSTAT'
);
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', s.statement))
from (
  values
  (format('select service.invite_portal_member(%L, %L)', tests.fx_id('LA1'), 'not-an-address')),
  (format('select service.invite_portal_member(%L, null)', tests.fx_id('LA1'))),
  (format('select service.invite_portal_member(%L, %L, %L)', tests.fx_id('LA1'), 'x@example.com', ''))
) as s (statement);
select throws_ok(
  format('select service.invite_portal_member(%L, %L)', tests.fx_id('LC'), 'friend@example.com'), 'LNTFD', null,
  'an invite to another customer''s license raises LNTFD'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.customers
    where email = 'frank@example.com'
  ), 0,
  'a refused invite made no customer'
);
select is(
  (tests.sign_in('acme-portal', 'dave@example.com', 'T-dave', 'S-dave') is not null), true,
  'the invitee signs in by magic link'
);
select results_eq(
  'select id, role from service.list_portal_licenses()',
  $$values (tests.fx_id('LA1'), 'member')$$,
  'and sees the license as a member'
);
select from tests.as_session('acme-portal', 'S-alice');
select is(
  (service.remove_portal_member(tests.fx_id('LA1'), tests.id('dave'))).customer_id, tests.id('dave'),
  'the owner removes a member'
);
select is(
  tests.event_count(
    'license.user_removed', jsonb_build_object('license_id', tests.fx_id('LA1'), 'customer_id', tests.id('dave'))
  ),
  1,
  'license.user_removed'
);
select throws_ok(s.statement, s.code, null, s.description)
from (
  values
  (
    format('select service.remove_portal_member(%L, %L)', tests.fx_id('LA1'), tests.id('alice')), 'LSTAT',
    'an owner''s seat cannot be removed (LSTAT)'
  ),
  (
    format('select service.remove_portal_member(%L, %L)', tests.fx_id('LA1'), tests.id('dave')), 'LNTFD',
    'removing someone without a seat raises LNTFD'
  )
) as s (statement, code, description);
select from tests.as_session('acme-portal', 'S-dave');
select is_empty('select * from service.list_portal_licenses()', 'a removed member sees the license no more');
select throws_ok(
  format('select service.get_portal_license(%L)', tests.fx_id('LA1')), 'LNTFD', null, 'it is 404 to him now'
);
select tests.clear_context();
update lic.licenses set seats = 2
where id = tests.fx_id('LA1');
select from tests.as_session('acme-portal', 'S-alice');
select throws_ok(
  format('select service.invite_portal_member(%L, %L)', tests.fx_id('LA1'), 'dave@example.com'), 'LSTAT', null,
  'seats bought through Stripe replace the policy''s max_users (2 of 2 taken)'
);

-- ---------------------------------------------------------------------------
-- Billing: the customer's own Stripe customer, never the owner's.
select is(
  (
    select row(b.stripe_customer_id, b.livemode, b.session_return_url, b.api_key_ciphertext)::text
    from service.get_portal_billing() as b
  ),
  row('cus_alice', false, 'https://tenant.example/account', '\x0102'::bytea)::text,
  'alice''s billing: her Stripe customer, its mode, the connection''s return URL and encrypted key'
);
select is(
  (service.get_portal_billing()).account_id, tests.account_id('A'),
  'the answer names the account its encrypted key is bound to'
);
select is(
  (service.get_portal_billing(return_url => 'https://portal.example/portal/acme-portal')).session_return_url,
  'https://portal.example/portal/acme-portal',
  'a return_url given wins'
);
select throws_ok(
  $$select service.get_portal_billing(return_url => 'javascript:alert(1)')$$, 'LINVL', null,
  'a return_url that is not http(s) raises LINVL'
);
select from tests.as_session('acme-portal', 'S-bob');
select is(
  (select row(b.stripe_customer_id, b.livemode, b.api_key_ciphertext)::text from service.get_portal_billing() as b),
  row(null::text, null::boolean, null::bytea)::text,
  'a customer without a Stripe customer gets no billing button, even as a member of a paying license'
);

-- ---------------------------------------------------------------------------
-- One address, several customer rows (decision 45): the session follows the
-- address the link proved.
select tests.clear_context();
update lic.customers set email = 'someone.else@example.com'
where id = tests.id('alice2');
select from tests.as_session('acme-portal', 'S-alice');
select results_eq(
  'select id from service.list_portal_licenses()',
  $$values (tests.fx_id('LA1'))$$,
  'a customer row whose address changed is no longer reached by the session'
);

-- ---------------------------------------------------------------------------
-- Logout.
select tests.visit();
select is(service.logout_portal('acme-portal', tests.h('S-bob')), true, 'logout deletes the session');
select throws_ok(
  $$select service.authenticate_portal('acme-portal', tests.h('S-bob'))$$, 'LAUTH', null,
  'a logged-out session authenticates nothing'
);
select is(service.logout_portal('acme-portal', tests.h('S-bob')), false, 'logging out again deletes nothing');
select from tests.as_session('acme-portal', 'S-carol');
select from service.logout_portal('acme-portal', tests.h('S-carol'));
select throws_ok(
  'select * from service.list_portal_licenses()', 'LDNID', null,
  'after logout the transaction acts for the customer no more'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.portal_sessions
    where session_hash in (tests.h('S-bob'), tests.h('S-carol'))
  ), 0,
  'both sessions are gone'
);
select throws_ok(
  $$select service.logout_portal('nope', tests.h('S-alice'))$$, 'LNTFD', null, 'logout at an unknown slug raises LNTFD'
);


-- ---------------------------------------------------------------------------
-- A new slug moves the portal; clearing it closes the portal.
select from tests.act_as(tests.secret_key('A'));
select from api.update_portal_settings(slug => 'acme-2');
select tests.visit();
select throws_ok(
  $$select service.resolve_portal('acme-portal')$$, 'LNTFD', null, 'the old slug leads nowhere once the slug changed'
);
select is(
  (service.authenticate_portal('acme-2', tests.h('S-alice'))).customer_id, tests.id('alice'),
  'sessions belong to the account, so they go on under the new slug'
);
select from tests.act_as(tests.secret_key('B'));
select is((api.update_portal_settings(clear => '{slug}')).slug, null, 'the tenant clears its slug');
select tests.visit();
select throws_ok(
  $$select service.authenticate_portal('bee', tests.h('S-b-alice'))$$, 'LNTFD', null,
  'a cleared slug closes the portal: nothing resolves there'
);

select * from finish();
rollback;
