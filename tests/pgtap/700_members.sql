-- Console sign-in (functions/88_members.sql): links for an address, single
-- use and 15 minutes, limits per address, per IP and in all; the confirm that
-- picks one of the address's accounts and makes a session; session timeouts,
-- logout, and the member context a session sets.
begin;
select plan(62);

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

grant execute on function tests.h(text), tests.visit() to lic_app, lic_web, lic_definer;

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

-- ---------------------------------------------------------------------------
-- Members and invitations

-- lic_web acting for a member of A, as after service.authenticate_console.
create function tests.as_member(name text)
returns void
language plpgsql
volatile
as $$
begin
  perform tests.clear_context();
  perform private.set_context(tests.account_id('A'), 'member', tests.id(as_member.name));
  perform pg_catalog.set_config('role', 'lic_web', true);
end;
$$;
grant execute on function tests.as_member(text) to lic_app, lic_web, lic_definer;

select tests.act_as(tests.secret_key('A'));
select is(
  (select array_agg(m.email order by m.id) from api.list_members() as m),
  array['olga@example.com', 'ivan@example.com', 'ip@example.com'],
  'the account''s members, addresses lowercased'
);
select tests.remember_secret('new', (api.invite_member('New@Example.com', 'admin')).token);
select is(
  (
    select row(i.email, i.role, i.status, i.invited_by_kind, i.token)::text
    from api.list_member_invitations() as i
  ),
  '(new@example.com,admin,pending,secret,)',
  'an invitation is pending, names who invited, and its token is shown only once'
);
select ok(tests.secret('new') ~ '^lic_iv_[0-9a-f]{80}$', 'the token names its account, like an API key');
select throws_ok(
  $$select api.invite_member('ivan@example.com', 'viewer')$$,
  'LSTAT', null, 'a member cannot be invited again'
);
select throws_ok(
  $$select api.invite_member('x@example.com', 'root')$$,
  'LINVL', null, 'nor as a role that does not exist'
);
select tests.visit();
select is(
  (select row(p.usable, p.masked_email, p.role)::text from service.peek_member_invitation(tests.secret('new')) as p),
  '(t,n***@example.com,admin)',
  'the invitation page shows the masked address and the role'
);
select is(
  (
    select row(s.email, s.role, s.account_id)::text
    from service.accept_member_invitation(tests.secret('new'), tests.h('s new'), 'Nina') as s
  ),
  row('new@example.com', 'admin', tests.account_id('A'))::text,
  'accepting makes the member with the invited role and signs it in'
);
select tests.remember('new', (service.authenticate_console(tests.h('s new'))).member_id);
select tests.visit();
select throws_ok(
  format('select service.accept_member_invitation(%L, %L)', tests.secret('new'), tests.h('s new 2')),
  'LAUTH', null, 'an invitation is accepted once'
);
select throws_ok(
  $$select service.accept_member_invitation('lic_iv_junk', tests.h('s'))$$,
  'LAUTH', null, 'a malformed token accepts nothing'
);
select tests.act_as(tests.secret_key('A'));
select tests.remember_secret('late', (api.invite_member('late@example.com', 'viewer')).token);
select tests.remember_secret('rev', (api.invite_member('rev@example.com', 'viewer')).token);
select tests.clear_context();
select throws_ok(
  format(
    'select private.accept_member_invitation(%L, %L, null, null, now() + interval ''8 days'')',
    tests.secret('late'), tests.h('s late')
  ),
  'LAUTH', null, 'an invitation expires after 7 days'
);
select tests.act_as(tests.secret_key('A'));
select is(
  (
    select i.status from api.list_member_invitations() as i
    inner join api.revoke_member_invitation(i.id) as r on i.id = r.id
    where i.email = 'rev@example.com'
  ),
  'pending',
  'a pending invitation is revoked'
);
select throws_ok(
  format(
    'select api.revoke_member_invitation(%L)',
    (
      select i.id from api.list_member_invitations() as i
      where i.email = 'rev@example.com'
    )
  ),
  'LSTAT', null, 'but only once'
);
select tests.visit();
select throws_ok(
  format('select service.accept_member_invitation(%L, %L)', tests.secret('rev'), tests.h('s rev')),
  'LAUTH', null, 'and its link accepts nothing'
);

-- ---------------------------------------------------------------------------
-- Ownership: at least one owner always

select tests.as_member('olga');
select throws_ok(
  format('select api.update_member_role(%L, %L)', tests.id('olga'), 'admin'),
  'LSTAT', null, 'the last owner cannot be demoted'
);
select throws_ok(
  format('select api.remove_member(%L)', tests.id('olga')),
  'LSTAT', null, 'nor removed'
);
select is(
  (select role from api.transfer_ownership(tests.id('ivan'))),
  'owner',
  'ownership passes to another member'
);
select is(
  (
    select array_agg(row(m.email, m.role)::text order by m.id) from api.list_members() as m
    where m.role in ('owner', 'admin')
  ),
  array['(olga@example.com,admin)', '(ivan@example.com,owner)', '(new@example.com,admin)'],
  'and the owner who handed it over stays on as admin'
);
select throws_ok(
  format('select api.update_member_role(%L, %L)', tests.id('new'), 'viewer'),
  'LDNID', null, 'an admin cannot change roles'
);
select tests.as_member('ivan');
select is(
  (select role from api.update_member_role(tests.id('olga'), 'owner')),
  'owner',
  'an owner makes another owner'
);
select is(
  (select role from api.update_member_role(tests.id('ivan'), 'developer')),
  'developer',
  'so it may step down itself'
);
select is(
  (
    select e.data -> 'previous_attributes'
    from api.list_audit_events(member_id => tests.id('ivan'), type => 'member.role_changed') as e
    order by e.id desc
    limit 1
  ),
  '{"role": "owner"}'::jsonb,
  'a role change is an event naming the member who made it, with the role before'
);
select tests.as_member('olga');
select is(
  (select email from api.remove_member(tests.id('new'))),
  'new@example.com',
  'an owner removes a member'
);
select tests.visit();
select throws_ok(
  $$select service.authenticate_console(tests.h('s new'))$$,
  'LAUTH', null, 'whose sessions end with it'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from private.member_emails
    where email = 'new@example.com'
  ),
  0,
  'and whose address no longer signs in to the account'
);
select is(
  (
    select array_agg(e.type order by e.id)
    from lic.events as e
    where
      e.account_id = tests.account_id('A') and e.type like 'member.%' and e.type not like 'member.sign%'
      and e.type <> 'member.added'
  ),
  array[
    'member.invited', 'member.joined', 'member.invited', 'member.invited', 'member.invitation_revoked',
    'member.ownership_transferred', 'member.role_changed', 'member.role_changed', 'member.removed'
  ],
  'every member change is an event'
);

select * from finish();
rollback;
