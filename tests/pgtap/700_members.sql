-- Console sign-in (functions/88_members.sql): links for an address, single
-- use and 15 minutes, limits per address, per IP and in all; the confirm that
-- picks one of the address's accounts and makes a session; session timeouts,
-- logout, and the member context a session sets.
begin;
select plan(37);

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

grant execute on function tests.h(text), tests.visit() to lic_web, lic_definer;

-- Fixtures, as the superuser: accounts A and B; olga owns A, and is a viewer
-- of B too; ivan is a developer of A.
select tests.create_account('A', 'starter');
select tests.create_account('B');
select private.set_context(tests.account_id('A'), 'secret');
select tests.remember('olga', (private.add_member(tests.account_id('A'), 'Olga@Example.com', 'owner', 'Olga')).id);
select tests.remember('ivan', (private.add_member(tests.account_id('A'), 'ivan@example.com', 'developer')).id);
select tests.remember('ip', (private.add_member(tests.account_id('A'), 'ip@example.com', 'viewer')).id);
select private.set_context(tests.account_id('B'), 'secret');
select tests.remember('olga B', (private.add_member(tests.account_id('B'), 'olga@example.com', 'viewer')).id);
select tests.clear_context();

-- ---------------------------------------------------------------------------
-- Asking for a link

select tests.visit();
select is(
  (
    select row(r.send, r.reason, r.email)::text
    from service.request_console_login('nobody@example.com', tests.h('t0'), tests.h('ip 1')) as r
  ),
  '(f,unknown_email,)',
  'an address that is no member gets no link'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from private.console_login_tokens
    where email = 'nobody@example.com'
  ),
  0,
  'and nothing is stored for it'
);
select tests.visit();
select is(
  (
    select row(r.send, r.reason, r.email, r.name, jsonb_array_length(r.accounts))::text
    from service.request_console_login('IVAN@example.com', tests.h('t1'), tests.h('ip 1')) as r
  ),
  '(t,ok,ivan@example.com,,1)',
  'a member''s address (any case) gets a link, with the accounts it opens'
);
select is(
  (select reason from service.request_console_login('ivan@example.com', tests.h('t1b'), tests.h('ip 1'))),
  'email_rate_limited',
  'a second link for the address within the minute is refused'
);
select tests.clear_context();
set local role lic_definer;
select is(
  (
    select reason
    from
      private.console_request_login('ivan@example.com', tests.h('t1c'), tests.h('ip 1'), now() + interval '2 minutes')
  ),
  'ok',
  'two minutes later it is issued'
);
select tests.clear_context();
select is(
  (
    select revoked_at is not null from private.console_login_tokens
    where token_hash = tests.h('t1')
  ),
  true,
  'a new link voids the address''s earlier unused one'
);
select throws_ok(
  $$select service.request_console_login('not an address', tests.h('t'), tests.h('ip'))$$,
  'LINVL', null, 'a malformed address is LINVL'
);
select throws_ok(
  $$select service.request_console_login('a@example.com', '\x00'::bytea, tests.h('ip'))$$,
  'LINVL', null, 'a hash that is not 32 bytes is LINVL'
);

-- Per IP: 20 requests an hour, whatever address they ask for.
select tests.visit();
select count(*) from generate_series(1, 20) as n,
  lateral service.request_console_login(format('x%s@example.com', n), tests.h(format('tx%s', n)), tests.h('ip 2'));
select is(
  (select reason from service.request_console_login('ip@example.com', tests.h('t ip'), tests.h('ip 2'))),
  'ip_rate_limited',
  'the 21st request of an IP in an hour is refused, unknown addresses counted'
);

-- ---------------------------------------------------------------------------
-- The confirm page and the confirm

select tests.visit();
select is(
  (select row(p.usable, p.masked_email)::text from service.peek_console_login(tests.h('t1')) as p),
  '(f,i***@example.com)',
  'a voided link is not usable'
);
select is(
  (select row(p.usable, p.masked_email)::text from service.peek_console_login(tests.h('t1c')) as p),
  '(t,i***@example.com)',
  'peek shows a usable link and its masked address'
);
select is(
  (select row(p.usable, p.masked_email)::text from service.peek_console_login(tests.h('never issued')) as p),
  '(f,)',
  'a token never issued is not usable and names no address'
);
select tests.clear_context();
select is(
  (
    select used_at from private.console_login_tokens
    where token_hash = tests.h('t1c')
  ),
  null,
  'peek changes nothing'
);
select tests.visit();
select is(
  (
    select row(s.account_id, s.member_id, s.email, s.role)::text
    from service.confirm_console_login(tests.h('t1c'), tests.h('session 1')) as s
  ),
  row(tests.account_id('A'), tests.id('ivan'), 'ivan@example.com', 'developer')::text,
  'the confirm signs the member in to its one account'
);
select is(
  (select count(*)::integer from api.list_members()),
  3,
  'and sets the member context: api functions answer for the account'
);
select tests.visit();
select throws_ok(
  $$select service.confirm_console_login(tests.h('t1c'), tests.h('session 2'))$$,
  'LAUTH', null, 'a link signs in once'
);
select is(
  (select usable from service.peek_console_login(tests.h('t1c'))),
  false,
  'and is no longer usable'
);

-- An expired link.
select tests.visit();
select is(
  (select send from service.request_console_login('ip@example.com', tests.h('t exp'), tests.h('ip 3'))),
  true,
  'a link for the viewer'
);
set local role lic_definer;
select throws_ok(
  $$
    select private.console_confirm_login(tests.h('t exp'), tests.h('s exp'), null, null, now() + interval '16 minutes')
  $$,
  'LAUTH', null, 'a link expires after 15 minutes'
);

-- Several accounts: the confirm page lists them and the confirm picks one.
select tests.visit();
select is(
  (select send from service.request_console_login('olga@example.com', tests.h('t olga'), tests.h('ip 4'))),
  true,
  'a link for an address of two accounts'
);
select is(
  (
    select jsonb_agg(a ->> 'role' order by a ->> 'role')
    from service.peek_console_login(tests.h('t olga')) as p, jsonb_array_elements(p.accounts) as a
  ),
  '["owner", "viewer"]'::jsonb,
  'peek lists the address''s accounts and roles'
);
select throws_ok(
  $$select service.confirm_console_login(tests.h('t olga'), tests.h('s olga'))$$,
  'LINVL', null, 'without a choice the confirm is refused, and spends nothing'
);
select throws_ok(
  $$select service.confirm_console_login(tests.h('t olga'), tests.h('s olga'), gen_random_uuid())$$,
  'LNTFD', null, 'nor can it pick an account the address is no member of'
);
select is(
  (
    select row(s.account_id, s.role)::text
    from service.confirm_console_login(tests.h('t olga'), tests.h('s olga'), tests.account_id('B')) as s
  ),
  row(tests.account_id('B'), 'viewer')::text,
  'the session is for the account chosen'
);

-- ---------------------------------------------------------------------------
-- Sessions

select tests.visit();
select is(
  (select row(s.account_id, s.member_id, s.role)::text from service.authenticate_console(tests.h('session 1')) as s),
  row(tests.account_id('A'), tests.id('ivan'), 'developer')::text,
  'a session cookie authenticates as its member'
);
select is(
  (select count(*)::integer from api.list_members()),
  3,
  'then api functions run as that member'
);
select tests.visit();
select throws_ok(
  $$select service.authenticate_console(tests.h('no such session'))$$,
  'LAUTH', null, 'an unknown session is not signed in'
);
select throws_ok(
  $$select service.authenticate_console('\x01'::bytea)$$,
  'LAUTH', null, 'nor is a malformed one'
);
set local role lic_definer;
select throws_ok(
  $$select private.console_authenticate(tests.h('session 1'), now() + interval '31 minutes')$$,
  'LAUTH', null, 'a session idle for 30 minutes has expired'
);
select lives_ok(
  $$select private.console_authenticate(tests.h('session 1'), now() + interval '29 minutes')$$,
  'within 30 minutes it is alive, and marked seen'
);
select tests.clear_context();
update private.console_sessions set last_seen_at = now() + interval '12 hours'
where session_hash = tests.h('session 1');
set local role lic_definer;
select throws_ok(
  $$select private.console_authenticate(tests.h('session 1'), now() + interval '12 hours 1 minute')$$,
  'LAUTH', null, 'a session ends 12 hours after sign-in however busy'
);

select tests.visit();
select is(service.logout_console(tests.h('s olga')), true, 'logout ends the session');
select throws_ok(
  $$select service.authenticate_console(tests.h('s olga'))$$,
  'LAUTH', null, 'which signs in no more'
);
select is(service.logout_console(tests.h('s olga')), false, 'a second logout finds nothing');
select throws_ok(
  $$select * from api.list_members()$$,
  'LAUTH', null, 'and the transaction holds no member context after logout'
);

-- ---------------------------------------------------------------------------
-- The record and the roles' reach

select tests.clear_context();
select is(
  (
    select row(e.actor_kind, e.actor_id)::text from lic.events as e
    where e.account_id = tests.account_id('A') and e.type = 'member.signed_in'
  ),
  row('member', tests.id('ivan'))::text,
  'a sign-in is an event naming the member'
);
select is(
  (
    select count(*)::integer from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where n.nspname = 'service' and p.proname like '%console%' and has_function_privilege('lic_app', p.oid, 'execute')
  ),
  0,
  'tenants'' backends (lic_app) cannot call the console sign-in'
);

select * from finish();
rollback;
