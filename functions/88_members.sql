-- Account members and the tenant console's sign-in (issue 13; decisions 65-67).
--
-- A member is a person of the account with a role: viewer (reads), developer
-- (also API keys, webhook endpoints, meters), admin (everything but members
-- and ownership), owner (everything). A signed-in member's context is kind
-- 'member' with the member as principal: every api function a secret key
-- may call admits a member whose role is at least the one the function
-- declares (private.require_account's member_role).
--
-- Sign-in arrives with an address and no account, so it reads the private
-- sign-in tables by what the visitor brings (address, token hash, session
-- hash); every read of a tenant table happens under that account's context.
-- A sign-in link proves an address; the session is for one of its
-- memberships, chosen on the confirm page when there are several.
--
-- Time enters as a parameter (at) of the private helpers, so tests fix it;
-- the service functions pass now().

-- ---------------------------------------------------------------------------
-- Roles

create or replace function private.member_role_rank(role text)
returns integer
language sql
immutable
parallel safe
as $$
  select case role when 'viewer' then 1 when 'developer' then 2 when 'admin' then 3 when 'owner' then 4 end;
$$;
comment on function private.member_role_rank(text) is
'The order of member roles: viewer 1, developer 2, admin 3, owner 4 (null: not a role).';

create or replace function private.member_role(role text, param text default 'role')
returns text
language plpgsql
immutable
parallel safe
as $$
begin
  if private.member_role_rank(role) is null then
    raise exception using errcode = 'LINVL', column = param,
      message = format('%s must be owner, admin, developer or viewer', param);
  end if;
  return role;
end;
$$;
comment on function private.member_role(text, text) is 'A member role after checking it is one. Errors: LINVL.';

-- Called by private.require_account for a member context only.
create or replace function private.require_member_role(account_id uuid, member_id uuid, member_role text)
returns void
language plpgsql
stable
as $$
declare
  v_role text;
begin
  select m.role into v_role
  from lic.members as m
  where m.account_id = require_member_role.account_id and m.id = require_member_role.member_id;
  if not found then
    raise exception using errcode = 'LAUTH', message = 'this member no longer belongs to the account';
  end if;
  if private.member_role_rank(v_role) < private.member_role_rank(member_role) then
    raise exception using
      errcode = 'LDNID',
      message = format('a member with the %s role may not do this; it needs %s or above', v_role, member_role);
  end if;
end;
$$;
comment on function private.require_member_role(uuid, uuid, text) is
'Refuse a member whose role is below member_role. Errors: LAUTH (no such member), LDNID.';

-- ---------------------------------------------------------------------------
-- Members

create or replace function private.member_view(m lic.members)
returns api.member
language sql
immutable
as $$
  select row(m.id, m.email, m.name, m.role, m.created_at, m.updated_at)::api.member;
$$;
comment on function private.member_view(lic.members) is 'The public shape of a member.';

-- The directory follows lic.members (an address never changes: a new address
-- is a new member).
create or replace function private.tg_members__directory()
returns trigger
language plpgsql
as $$
begin
  if tg_op = 'INSERT' then
    insert into private.member_emails (email, account_id, member_id) values (new.email, new.account_id, new.id);
    return new;
  end if;
  delete from private.member_emails as d where d.email = old.email and d.account_id = old.account_id;
  return old;
end;
$$;
comment on function private.tg_members__directory() is
'Keep private.member_emails, the sign-in directory, in step with lic.members.';

create or replace trigger members__directory
after insert or delete on lic.members
for each row execute function private.tg_members__directory();

create or replace function private.find_member(account_id uuid, member_id uuid, lock boolean default false)
returns lic.members
language plpgsql
volatile
as $$
declare
  v_member lic.members;
begin
  if lock then
    select m.* into v_member from lic.members as m
    where m.account_id = find_member.account_id and m.id = find_member.member_id
    for update;
  else
    select m.* into v_member from lic.members as m
    where m.account_id = find_member.account_id and m.id = find_member.member_id;
  end if;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'member_id', message = 'member not found';
  end if;
  return v_member;
end;
$$;
comment on function private.find_member(uuid, uuid, boolean) is
'A member of the account, optionally locked FOR UPDATE. Errors: LNTFD.';

-- Member changes of an account take turns on its account row, so the owner
-- count read after it is exact: of two concurrent demotions of the last two
-- owners, the second sees the first's and is refused.
create or replace function private.lock_members(account_id uuid)
returns void
language sql
volatile
as $$
  select from lic.accounts as a where a.account_id = lock_members.account_id for no key update;
$$;
comment on function private.lock_members(uuid) is
'Serialise changes to an account''s members (its account row, FOR NO KEY UPDATE).';

create or replace function private.require_other_owner(account_id uuid, member_id uuid)
returns void
language plpgsql
volatile
as $$
begin
  if not exists (
    select from lic.members as m
    where m.account_id = require_other_owner.account_id and m.role = 'owner' and m.id <> require_other_owner.member_id
  ) then
    raise exception using errcode = 'LSTAT', column = 'member_id',
      message = 'the account must keep an owner: make another member owner first';
  end if;
end;
$$;
comment on function private.require_other_owner(uuid, uuid) is
'Refuse a change that would leave the account without an owner. Errors: LSTAT.';

-- The operator's way in: `licentric accounts create --owner`, `up`.
create or replace function private.add_member(account_id uuid, email text, role text, name text default null)
returns api.member
language plpgsql
volatile
as $$
declare
  v_member lic.members;
begin
  insert into lic.members (account_id, email, name, role)
  values (
    add_member.account_id, private.login_email(add_member.email), add_member.name, private.member_role(add_member.role)
  )
  returning * into v_member;
  perform private.emit_event(v_member.account_id, 'member.added', to_jsonb(private.member_view(v_member)));
  return private.member_view(v_member);
end;
$$;
comment on function private.add_member(uuid, text, text, text) is
'Make an address a member of an account in its context (the operator''s owner, an accepted invitation). '
'Errors: LINVL, 23505 already a member.';

create or replace function api.list_members(
  page_limit integer default 100,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.member
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
begin
  return query
  select (p.member).*
  from (
    select private.member_view(m) as member, m.id
    from lic.members as m
    where
      m.account_id = v_account_id
      and (starting_after is null or m.id < starting_after)
      and (ending_before is null or m.id > ending_before)
    -- Walking back from ending_before takes the oldest rows after it.
    order by case when ending_before is null then m.id end desc, m.id
    limit v_rows
  ) as p
  order by p.id desc;
end;
$$;
comment on function api.list_members(integer, uuid, uuid) is
'The account''s members, newest first, as a keyset page of up to page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_member(member_id uuid)
returns api.member
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_member lic.members;
begin
  select m.* into v_member from lic.members as m where m.account_id = v_account_id and m.id = get_member.member_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'member_id', message = 'member not found';
  end if;
  return private.member_view(v_member);
end;
$$;
comment on function api.get_member(uuid) is 'One member of the account. Errors: LNTFD (404).';

create or replace function api.update_member_role(member_id uuid, role text)
returns api.member
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'owner');
  v_role text := private.member_role(update_member_role.role);
  v_before lic.members;
  v_member lic.members;
begin
  perform private.lock_members(v_account_id);
  v_before := private.find_member(v_account_id, update_member_role.member_id, lock => true);
  if v_before.role = v_role then
    return private.member_view(v_before);
  end if;
  if v_before.role = 'owner' then
    perform private.require_other_owner(v_account_id, v_before.id);
  end if;
  update lic.members as m set role = v_role, updated_at = now()
  where m.account_id = v_account_id and m.id = v_before.id
  returning m.* into v_member;
  perform private.emit_event(
    v_account_id, 'member.role_changed', to_jsonb(private.member_view(v_member)), jsonb_build_object('role', v_before.role)
  );
  return private.member_view(v_member);
end;
$$;
comment on function api.update_member_role(uuid, text) is
'Give a member another role (owner, admin, developer, viewer). The account always keeps an owner: demoting the '
'last one is refused. Members: owner only. Errors: LNTFD (404), LINVL (422), LSTAT (409) the last owner.';

create or replace function api.remove_member(member_id uuid)
returns api.member
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'owner');
  v_member lic.members;
begin
  perform private.lock_members(v_account_id);
  v_member := private.find_member(v_account_id, remove_member.member_id, lock => true);
  if v_member.role = 'owner' then
    perform private.require_other_owner(v_account_id, v_member.id);
  end if;
  -- Signed out everywhere, and pending invitations it accepted keep their id.
  delete from private.console_sessions as s where s.account_id = v_account_id and s.member_id = v_member.id;
  delete from lic.members as m where m.account_id = v_account_id and m.id = v_member.id;
  perform private.emit_event(v_account_id, 'member.removed', to_jsonb(private.member_view(v_member)));
  return private.member_view(v_member);
end;
$$;
comment on function api.remove_member(uuid) is
'Remove a member from the account and end its console sessions. The last owner cannot be removed. Members: owner '
'only (an owner may remove itself while another owner remains). Errors: LNTFD (404), LSTAT (409) the last owner.';

create or replace function api.transfer_ownership(member_id uuid)
returns api.member
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'owner');
  v_context record := private.current_context();
  v_before lic.members;
  v_member lic.members;
  v_me lic.members;
begin
  perform private.lock_members(v_account_id);
  v_before := private.find_member(v_account_id, transfer_ownership.member_id, lock => true);
  if v_context.kind = 'member' and v_context.principal_id = v_before.id then
    raise exception using errcode = 'LSTAT', column = 'member_id', message = 'you already own the account';
  end if;
  update lic.members as m set role = 'owner', updated_at = now()
  where m.account_id = v_account_id and m.id = v_before.id
  returning m.* into v_member;
  -- The owner who hands over stays on as admin; a key has no member to demote.
  if v_context.kind = 'member' then
    update lic.members as m set role = 'admin', updated_at = now()
    where m.account_id = v_account_id and m.id = v_context.principal_id
    returning m.* into v_me;
  end if;
  perform private.emit_event(
    v_account_id, 'member.ownership_transferred',
    jsonb_build_object('to', private.member_view(v_member), 'from', private.member_view(v_me)),
    jsonb_build_object('role', v_before.role)
  );
  return private.member_view(v_member);
end;
$$;
comment on function api.transfer_ownership(uuid) is
'Make a member an owner; a member calling it (an owner) becomes admin in the same step. Members: owner only. '
'Errors: LNTFD (404), LSTAT (409) to yourself.';

-- ---------------------------------------------------------------------------
-- Invitations

create or replace function private.invitation_view(
  i lic.member_invitations,
  at timestamptz default now(),
  token text default null
)
returns api.member_invitation
language sql
stable
as $$
  select row(
    i.id, i.email, i.role,
    case
      when i.accepted_at is not null then 'accepted'
      when i.revoked_at is not null then 'revoked'
      when i.expires_at <= at then 'expired'
      else 'pending'
    end,
    i.invited_by_kind, i.invited_by_id, i.created_at, i.expires_at, i.accepted_at, i.member_id, i.revoked_at, token
  )::api.member_invitation;
$$;
comment on function private.invitation_view(lic.member_invitations, timestamptz, text) is
'The public shape of an invitation at an instant (status pending, accepted, revoked or expired), with its token '
'when it was just made.';

-- An invitation token names its account as an API key does (decision 1), so
-- the link needs nothing else and the invitation is found under that
-- account's policy.
create or replace function private.invitation_token_account(token text)
returns uuid
language sql
immutable
parallel safe
as $$
  select case
    when pg_catalog.length(token) = 87 and pg_catalog.left(token, 7) = 'lic_iv_'
      and pg_catalog.substr(token, 8, 32) ~ '^[0-9a-f]{32}$'
      and private.token_checksum(pg_catalog.left(token, 79)) = pg_catalog.right(token, 8)
      then pg_catalog.substr(token, 8, 32)::uuid
  end;
$$;
comment on function private.invitation_token_account(text) is
'The account an invitation token (lic_iv_…) names after checking its form and checksum, or null.';

create or replace function private.invite_member(account_id uuid, email text, role text, at timestamptz)
returns api.member_invitation
language plpgsql
volatile
as $$
declare
  v_email text := private.login_email(invite_member.email);
  v_role text := private.member_role(invite_member.role);
  v_context record := private.current_context();
  v_token text := private.mint_token('lic_iv_', account_id);
  v_invitation lic.member_invitations;
begin
  perform private.lock_members(account_id);
  if exists (select from lic.members as m where m.account_id = invite_member.account_id and m.email = v_email) then
    raise exception using errcode = 'LSTAT', column = 'email', message = 'this address is already a member';
  end if;
  -- A new invitation replaces the address's pending one (a resend).
  update lic.member_invitations as i set revoked_at = at
  where
    i.account_id = invite_member.account_id and i.email = v_email and i.accepted_at is null and i.revoked_at is null;
  insert into lic.member_invitations (
    account_id, email, role, token_hash, invited_by_kind, invited_by_id, created_at, expires_at
  )
  values (
    invite_member.account_id, v_email, v_role, private.token_hash(v_token), v_context.kind, v_context.principal_id, at,
    at + interval '7 days'
  )
  returning * into v_invitation;
  perform private.emit_event(
    invite_member.account_id, 'member.invited', to_jsonb(private.invitation_view(v_invitation, at))
  );
  return private.invitation_view(v_invitation, at, v_token);
end;
$$;
comment on function private.invite_member(uuid, text, text, timestamptz) is
'Invite an address as a role at an instant (7 days), replacing its pending invitation. Errors: LINVL, LSTAT.';

create or replace function api.invite_member(email text, role text)
returns api.member_invitation
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return private.invite_member(private.require_account(member_role => 'owner'), email, role, now());
end;
$$;
comment on function api.invite_member(text, text) is
'Invite an address to join the account as a role (owner, admin, developer, viewer). The answer carries the '
'invitation''s token (lic_iv_…, shown once, stored as its sha256) for the link the web layer mails: '
'{base_url}/console/invitations/accept?token=<token>. Pending 7 days; replaces the address''s pending invitation. '
'Members: owner only. Errors: LINVL (422), LSTAT (409) already a member.';

create or replace function api.list_member_invitations(
  page_limit integer default 100,
  starting_after uuid default null,
  ending_before uuid default null
)
returns setof api.member_invitation
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
begin
  return query
  select (p.invitation).*
  from (
    select private.invitation_view(i) as invitation, i.id
    from lic.member_invitations as i
    where
      i.account_id = v_account_id
      and (starting_after is null or i.id < starting_after)
      and (ending_before is null or i.id > ending_before)
    order by case when ending_before is null then i.id end desc, i.id
    limit v_rows
  ) as p
  order by p.id desc;
end;
$$;
comment on function api.list_member_invitations(integer, uuid, uuid) is
'The account''s invitations, newest first, each with its status, as a keyset page of up to page_limit + 1 rows. '
'Errors: LINVL (422).';

create or replace function api.revoke_member_invitation(invitation_id uuid)
returns api.member_invitation
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'owner');
  v_invitation lic.member_invitations;
begin
  update lic.member_invitations as i set revoked_at = now()
  where
    i.account_id = v_account_id and i.id = revoke_member_invitation.invitation_id
    and i.accepted_at is null and i.revoked_at is null
  returning i.* into v_invitation;
  if not found then
    select i.* into v_invitation from lic.member_invitations as i
    where i.account_id = v_account_id and i.id = revoke_member_invitation.invitation_id;
    if not found then
      raise exception using errcode = 'LNTFD', column = 'invitation_id', message = 'invitation not found';
    end if;
    raise exception using errcode = 'LSTAT', column = 'invitation_id',
      message = 'this invitation was already accepted or revoked';
  end if;
  perform private.emit_event(v_account_id, 'member.invitation_revoked', to_jsonb(private.invitation_view(v_invitation)));
  return private.invitation_view(v_invitation);
end;
$$;
comment on function api.revoke_member_invitation(uuid) is
'Revoke a pending invitation: its link no longer works. Members: owner only. Errors: LNTFD (404), LSTAT (409) '
'accepted or revoked already.';

-- ---------------------------------------------------------------------------
-- Console sign-in

-- Every console service function starts here: no account yet, so any context
-- the transaction had is dropped (kind 'console' is admitted by no api
-- function) until a session or invitation proves one.
create or replace function private.console_begin()
returns void
language sql
volatile
as $$
  select private.set_context(null, 'console');
$$;
comment on function private.console_begin() is
'Drop the transaction''s context before a console sign-in step (kind console, no account).';

-- The memberships of an address: each read in its account's context, since
-- lic.members and lic.accounts are tenant tables; the context is dropped
-- again after.
create or replace function private.console_accounts(email text)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_directory record;
  v_accounts jsonb := '[]';
begin
  for v_directory in
    select d.account_id, d.member_id from private.member_emails as d where d.email = console_accounts.email
    order by d.account_id
  loop
    perform private.set_context(v_directory.account_id, 'console');
    v_accounts := v_accounts || coalesce((
      select jsonb_build_array(jsonb_build_object(
        'account_id', a.account_id, 'account_name', a.name, 'member_id', m.id, 'role', m.role, 'name', m.name
      ))
      from lic.members as m
      inner join lic.accounts as a on m.account_id = a.account_id
      where m.account_id = v_directory.account_id and m.id = v_directory.member_id
    ), '[]');
  end loop;
  perform private.console_begin();
  return v_accounts;
end;
$$;
comment on function private.console_accounts(text) is
'The accounts an address is a member of: [{account_id, account_name, member_id, role, name}].';

-- A link for an address: 15 minutes, single use; it voids the address's
-- earlier unused ones.
create or replace function private.console_issue_login(email text, token_hash bytea, ip_hash bytea, at timestamptz)
returns timestamptz
language plpgsql
volatile
as $$
begin
  update private.console_login_tokens as t set revoked_at = at
  where t.email = console_issue_login.email and t.used_at is null and t.revoked_at is null and t.expires_at > at;
  insert into private.console_login_tokens (token_hash, email, ip_hash, created_at, expires_at)
  values (console_issue_login.token_hash, console_issue_login.email, console_issue_login.ip_hash, at, at + interval '15 minutes');
  return at + interval '15 minutes';
end;
$$;
comment on function private.console_issue_login(text, bytea, bytea, timestamptz) is
'Store a console sign-in token for an address (lowercased) at an instant, voiding its earlier unused ones; answers '
'when it expires.';

-- The operator's link (`licentric up`, `licentric accounts sign-in-link`):
-- the same token as the web's, without the limits a visitor's request meets.
create or replace function private.console_operator_login(account_id uuid, email text, token_hash bytea)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_email text := private.login_email(console_operator_login.email);
begin
  perform private.require_hash(token_hash, 'token_hash');
  if not exists (
    select from private.member_emails as d where d.email = v_email and d.account_id = console_operator_login.account_id
  ) then
    raise exception using errcode = 'LNTFD', column = 'email', message = 'this address is no member of that account';
  end if;
  -- No client address: the operator's links count toward no visitor's limit.
  return private.console_issue_login(
    v_email, token_hash, pg_catalog.sha256(pg_catalog.convert_to('operator', 'UTF8')), now()
  );
end;
$$;
comment on function private.console_operator_login(uuid, text, bytea) is
'Issue a console sign-in token for a member of an account, for an operator to hand over (no limits). Operator '
'only. Errors: LINVL, LNTFD.';

-- The owner an operator makes with the account.
create or replace function private.create_account_owner(account_id uuid, email text)
returns api.member
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.set_context(account_id, 'secret');
  return private.add_member(account_id, email, 'owner');
end;
$$;
comment on function private.create_account_owner(uuid, text) is
'Make an address an owner of an account (`licentric accounts create --owner`, `up`). Operator only. Errors: '
'LINVL, 23505 already a member.';

create or replace function private.console_request_login(email text, token_hash bytea, ip_hash bytea, at timestamptz)
returns api.console_login_request
language plpgsql
volatile
as $$
declare
  v_email text := private.login_email(console_request_login.email);
  v_email_minute integer;
  v_email_hour integer;
  v_ip_hour integer;
  v_all_minute integer;
  v_accounts jsonb;
  v_reason text;
begin
  perform private.require_hash(token_hash, 'token_hash');
  perform private.require_hash(ip_hash, 'ip_hash');
  perform private.lock_login_request('console', v_email, ip_hash);
  delete from private.console_login_tokens as t where t.created_at < at - interval '1 day';
  delete from private.console_login_requests as r where r.requested_at < at - interval '1 hour';
  -- The same statements run whether or not the address is a member.
  select count(*) filter (where t.created_at > at - interval '1 minute'), count(*)
  into v_email_minute, v_email_hour
  from private.console_login_tokens as t
  where t.email = v_email and t.created_at > at - interval '1 hour';
  insert into private.console_login_requests (ip_hash, requested_at) values (console_request_login.ip_hash, at);
  select count(*) into v_ip_hour
  from private.console_login_requests as r
  where r.ip_hash = console_request_login.ip_hash and r.requested_at > at - interval '1 hour';
  select count(*) into v_all_minute from private.console_login_tokens as t where t.created_at > at - interval '1 minute';
  v_accounts := private.console_accounts(v_email);
  if jsonb_array_length(v_accounts) = 0 then
    return row(false, 'unknown_email', null, null, null, null)::api.console_login_request;
  end if;
  v_reason := private.login_limit_reason(v_email_minute, v_email_hour, v_ip_hour, v_all_minute, 'global_rate_limited');
  if v_reason is not null then
    return row(false, v_reason, null, null, null, null)::api.console_login_request;
  end if;
  perform private.console_issue_login(v_email, token_hash, ip_hash, at);
  return row(
    true, 'ok', v_email,
    (select a ->> 'name' from jsonb_array_elements(v_accounts) as a where a ->> 'name' is not null limit 1),
    at + interval '15 minutes',
    (
      select jsonb_agg(jsonb_build_object('account_id', a -> 'account_id', 'account_name', a -> 'account_name', 'role',
        a -> 'role'))
      from jsonb_array_elements(v_accounts) as a
    )
  )::api.console_login_request;
end;
$$;
comment on function private.console_request_login(text, bytea, bytea, timestamptz) is
'Issue a console sign-in token (its sha256) for an address at an instant, within the limits, voiding the '
'address''s earlier unused tokens; answers whether and to whom to send it. Errors: LINVL.';

create or replace function service.request_console_login(email text, token_hash bytea, ip_hash bytea)
returns api.console_login_request
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.console_begin();
  return private.console_request_login(email, token_hash, ip_hash, now());
end;
$$;
comment on function service.request_console_login(text, bytea, bytea) is
'A visitor asks for a console sign-in link (needs no key). token_hash is the sha256 of the 32 random bytes the '
'web layer puts in the link ({base_url}/console/login/confirm?token=<token>); ip_hash the keyed sha256 of the '
'visitor''s IP. Every request counts toward its IP''s limit (20 an hour, whatever address it asks for). If the '
'address is a member of any account and the limits allow (per address 1 link a minute and 5 an hour, 100 links a '
'minute in all), the token is stored (15 minutes, single use), the address''s earlier unused tokens are voided and '
'the answer says send, to whom and the accounts it opens; otherwise nothing is stored and the answer says not to '
'send. The answer is for the web layer only: the visitor always gets the same page. Errors: LINVL (422) malformed '
'email or hash.';

create or replace function private.console_peek_login(token_hash bytea, at timestamptz)
returns api.console_login_peek
language plpgsql
volatile
as $$
declare
  v_token private.console_login_tokens;
  v_accounts jsonb;
begin
  perform private.require_hash(token_hash, 'token_hash');
  select t.* into v_token from private.console_login_tokens as t where t.token_hash = console_peek_login.token_hash;
  if not found then
    return row(false, null, null, null)::api.console_login_peek;
  end if;
  if v_token.used_at is not null or v_token.revoked_at is not null or v_token.expires_at <= at then
    return row(false, private.mask_email(v_token.email), v_token.expires_at, null)::api.console_login_peek;
  end if;
  v_accounts := private.console_accounts(v_token.email);
  return row(
    jsonb_array_length(v_accounts) > 0, private.mask_email(v_token.email), v_token.expires_at,
    (
      select jsonb_agg(jsonb_build_object('account_id', a -> 'account_id', 'account_name', a -> 'account_name', 'role',
        a -> 'role'))
      from jsonb_array_elements(v_accounts) as a
    )
  )::api.console_login_peek;
end;
$$;
comment on function private.console_peek_login(bytea, timestamptz) is
'Whether a console token can sign in at an instant, its masked address and the accounts it opens, changing '
'nothing. Errors: LINVL.';

create or replace function service.peek_console_login(token_hash bytea)
returns api.console_login_peek
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.console_begin();
  return private.console_peek_login(token_hash, now());
end;
$$;
comment on function service.peek_console_login(bytea) is
'For the page a console sign-in link opens (GET and HEAD; needs no key): whether the token can still sign in, '
'the masked address, and the accounts to choose from (null unless usable). Changes nothing, so mail scanners '
'cannot use a link up. Errors: LINVL (422) malformed hash.';

create or replace function private.console_session_view(s private.console_sessions, m lic.members)
returns api.console_session
language sql
stable
as $$
  select row(
    s.id, s.account_id, (select a.name from lic.accounts as a where a.account_id = s.account_id),
    m.id, m.email, m.name, m.role, s.created_at, s.last_seen_at,
    least(s.last_seen_at + interval '30 minutes', s.expires_at), s.expires_at
  )::api.console_session;
$$;
comment on function private.console_session_view(private.console_sessions, lic.members) is
'The public shape of a console session (idle timeout 30 minutes, absolute at expires_at).';

-- A new session for a member (confirm, accepted invitation): the browser's
-- previous session ends, sessions past their timeouts go, and the member's
-- context is set.
create or replace function private.console_start_session(
  member lic.members,
  session_hash bytea,
  replaces_session_hash bytea,
  at timestamptz
)
returns api.console_session
language plpgsql
volatile
as $$
declare
  v_session private.console_sessions;
begin
  if replaces_session_hash is not null then
    delete from private.console_sessions as s where s.session_hash = console_start_session.replaces_session_hash;
  end if;
  delete from private.console_sessions as s
  where s.last_seen_at <= at - interval '30 minutes' or s.expires_at <= at;
  insert into private.console_sessions as s (session_hash, account_id, member_id, created_at, last_seen_at, expires_at)
  values (console_start_session.session_hash, member.account_id, member.id, at, at, at + interval '12 hours')
  returning s.* into v_session;
  perform private.set_context(member.account_id, 'member', member.id);
  perform private.emit_event(
    member.account_id, 'member.signed_in', jsonb_build_object('member_id', member.id, 'session_id', v_session.id)
  );
  return private.console_session_view(v_session, member);
end;
$$;
comment on function private.console_start_session(lic.members, bytea, bytea, timestamptz) is
'Start a console session for a member under session_hash (ending the one under replaces_session_hash) and set the '
'member context.';

create or replace function private.console_confirm_login(
  token_hash bytea,
  session_hash bytea,
  account_id uuid,
  replaces_session_hash bytea,
  at timestamptz
)
returns api.console_session
language plpgsql
volatile
as $$
declare
  v_email text;
  v_accounts jsonb;
  v_choice jsonb;
  v_member lic.members;
begin
  perform private.require_hash(token_hash, 'token_hash');
  perform private.require_hash(session_hash, 'session_hash');
  if replaces_session_hash is not null then
    perform private.require_hash(replaces_session_hash, 'replaces_session_hash');
  end if;
  -- Spent atomically: of two concurrent confirms, the second waits for the
  -- first's row lock, then finds used_at set and matches nothing. A refusal
  -- below rolls the spending back with everything else.
  update private.console_login_tokens as t set used_at = at
  where
    t.token_hash = console_confirm_login.token_hash and t.used_at is null and t.revoked_at is null
    and t.expires_at > at
  returning t.email into v_email;
  if not found then
    raise exception using errcode = 'LAUTH', column = 'token',
      message = 'this sign-in link is invalid, expired or already used; ask for a new one';
  end if;
  v_accounts := private.console_accounts(v_email);
  if jsonb_array_length(v_accounts) = 0 then
    raise exception using errcode = 'LAUTH', column = 'token',
      message = 'this address is no longer a member of any account';
  end if;
  if account_id is null and jsonb_array_length(v_accounts) > 1 then
    raise exception using errcode = 'LINVL', column = 'account_id',
      message = 'this address is a member of several accounts: choose one (account_id)';
  end if;
  select a into v_choice from jsonb_array_elements(v_accounts) as a
  where account_id is null or (a ->> 'account_id')::uuid = console_confirm_login.account_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'account_id', message = 'this address is not a member of that account';
  end if;
  perform private.set_context((v_choice ->> 'account_id')::uuid, 'console');
  select m.* into v_member from lic.members as m
  where m.account_id = (v_choice ->> 'account_id')::uuid and m.id = (v_choice ->> 'member_id')::uuid;
  return private.console_start_session(v_member, session_hash, replaces_session_hash, at);
end;
$$;
comment on function private.console_confirm_login(bytea, bytea, uuid, bytea, timestamptz) is
'Spend a console token at an instant and start a session for the chosen membership. Errors: LAUTH, LINVL, LNTFD.';

create or replace function service.confirm_console_login(
  token_hash bytea,
  session_hash bytea,
  account_id uuid default null,
  replaces_session_hash bytea default null
)
returns api.console_session
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.console_begin();
  return private.console_confirm_login(token_hash, session_hash, account_id, replaces_session_hash, now());
end;
$$;
comment on function service.confirm_console_login(bytea, bytea, uuid, bytea) is
'The confirm POST (needs no key): spend the console sign-in token (single use, within 15 minutes) and start a NEW '
'server-side session, for one account, whose id the web layer just generated (session_hash: its sha256; pass the '
'old cookie''s hash as replaces_session_hash to end that session). account_id picks the membership when the '
'address is a member of several accounts (service.peek_console_login lists them); with one it may be null. '
'Sessions end after 30 minutes idle or 12 hours. Sets the member context for the rest of the transaction. '
'Errors: LAUTH (401) the token is unknown, expired, voided or used, or its address is no member any more; LINVL '
'(422) malformed hash, or several accounts and no account_id; LNTFD (404) account_id is not one of them.';

create or replace function private.console_authenticate(session_hash bytea, at timestamptz)
returns api.console_session
language plpgsql
volatile
as $$
declare
  v_session private.console_sessions;
  v_member lic.members;
begin
  if session_hash is null or octet_length(session_hash) <> 32 then
    raise exception using errcode = 'LAUTH', message = 'not signed in';
  end if;
  select s.* into v_session from private.console_sessions as s where s.session_hash = console_authenticate.session_hash;
  if not found then
    raise exception using errcode = 'LAUTH', message = 'not signed in';
  end if;
  if v_session.expires_at <= at or v_session.last_seen_at <= at - interval '30 minutes' then
    raise exception using errcode = 'LAUTH', message = 'the session has expired; sign in again';
  end if;
  perform private.set_context(v_session.account_id, 'member', v_session.member_id);
  select m.* into v_member from lic.members as m
  where m.account_id = v_session.account_id and m.id = v_session.member_id;
  if not found then
    raise exception using errcode = 'LAUTH', message = 'the session has ended; sign in again';
  end if;
  update private.console_sessions as s set last_seen_at = greatest(s.last_seen_at, at)
  where s.session_hash = v_session.session_hash
  returning s.* into v_session;
  return private.console_session_view(v_session, v_member);
end;
$$;
comment on function private.console_authenticate(bytea, timestamptz) is
'Check a console session at an instant (timeouts, its member still there), mark it seen and set the member '
'context. Errors: LAUTH.';

create or replace function service.authenticate_console(session_hash bytea)
returns api.console_session
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.console_begin();
  return private.console_authenticate(session_hash, now());
end;
$$;
comment on function service.authenticate_console(bytea) is
'Resolve a console session cookie (session_hash: the sha256 of its value) and set the member context (kind '
'member, the member as principal) for the rest of the transaction, so the api functions that follow act as that '
'member within its role; call it first on every signed-in page. Enforces the idle (30 minutes since last seen) '
'and absolute (12 hours) timeouts, ends the session when its member was removed, and marks it seen. Errors: '
'LAUTH (401) no such session, expired or ended.';

create or replace function service.logout_console(session_hash bytea)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_session private.console_sessions;
begin
  perform private.console_begin();
  delete from private.console_sessions as s where s.session_hash = logout_console.session_hash
  returning s.* into v_session;
  if not found then
    return false;
  end if;
  perform private.set_context(v_session.account_id, 'member', v_session.member_id);
  perform private.emit_event(
    v_session.account_id, 'member.signed_out',
    jsonb_build_object('member_id', v_session.member_id, 'session_id', v_session.id)
  );
  -- Signed out in this transaction too.
  perform private.console_begin();
  return true;
end;
$$;
comment on function service.logout_console(bytea) is
'Sign out: delete the console session with this hash (expired or not) and drop the member context. Answers '
'whether a session was deleted.';

-- ---------------------------------------------------------------------------
-- A member's own sessions (kind member only: a key has none)

create or replace function private.member_session_view(s private.console_sessions)
returns api.member_session
language sql
immutable
as $$
  select row(
    s.id, s.created_at, s.last_seen_at, least(s.last_seen_at + interval '30 minutes', s.expires_at), s.expires_at
  )::api.member_session;
$$;
comment on function private.member_session_view(private.console_sessions) is
'The public shape of one of a member''s console sessions.';

create or replace function api.list_member_sessions()
returns setof api.member_session
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['member']);
begin
  return query
  select (private.member_session_view(s)).*
  from private.console_sessions as s
  where
    s.account_id = v_account_id and s.member_id = (private.current_context()).principal_id
    and s.expires_at > now() and s.last_seen_at > now() - interval '30 minutes'
  order by s.id desc;
end;
$$;
comment on function api.list_member_sessions() is
'The signed-in member''s live console sessions, newest first (a member only; a key has none). Errors: LDNID (403) '
'not a member.';

create or replace function api.revoke_member_session(session_id uuid)
returns api.member_session
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['member']);
  v_member_id uuid := (private.current_context()).principal_id;
  v_session private.console_sessions;
begin
  delete from private.console_sessions as s
  where s.account_id = v_account_id and s.member_id = v_member_id and s.id = revoke_member_session.session_id
  returning s.* into v_session;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'session_id', message = 'session not found';
  end if;
  perform private.emit_event(
    v_account_id, 'member.session_revoked', jsonb_build_object('member_id', v_member_id, 'session_id', v_session.id)
  );
  return private.member_session_view(v_session);
end;
$$;
comment on function api.revoke_member_session(uuid) is
'End one of the signed-in member''s own console sessions (any role may: it is its own). Errors: LDNID (403) not '
'a member, LNTFD (404) no such session of its own.';

-- ---------------------------------------------------------------------------
-- Accepting an invitation (the invitee has no session yet)

create or replace function private.member_invitation_by_token(token text, lock boolean default false)
returns lic.member_invitations
language plpgsql
volatile
as $$
declare
  v_account_id uuid := private.invitation_token_account(token);
  v_invitation lic.member_invitations;
begin
  if v_account_id is null then
    return null;
  end if;
  perform private.set_context(v_account_id, 'console');
  if lock then
    select i.* into v_invitation from lic.member_invitations as i
    where i.account_id = v_account_id and i.token_hash = private.token_hash(token)
    for update;
  else
    select i.* into v_invitation from lic.member_invitations as i
    where i.account_id = v_account_id and i.token_hash = private.token_hash(token);
  end if;
  return v_invitation;
end;
$$;
comment on function private.member_invitation_by_token(text, boolean) is
'The invitation with this token (all nulls if none), with its account''s console context set.';

create or replace function service.peek_member_invitation(token text)
returns api.member_invitation_peek
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_invitation lic.member_invitations;
begin
  perform private.console_begin();
  v_invitation := private.member_invitation_by_token(token);
  if v_invitation.id is null then
    return row(false, null, null, null, null)::api.member_invitation_peek;
  end if;
  return row(
    (private.invitation_view(v_invitation)).status = 'pending', private.mask_email(v_invitation.email),
    (select a.name from lic.accounts as a where a.account_id = v_invitation.account_id),
    v_invitation.role, v_invitation.expires_at
  )::api.member_invitation_peek;
end;
$$;
comment on function service.peek_member_invitation(text) is
'For the page an invitation link opens (GET; needs no key): whether its token can still be accepted, the invited '
'address masked, the account''s name and the role (all null for a token that names no invitation). Changes '
'nothing.';

create or replace function private.accept_member_invitation(
  token text,
  session_hash bytea,
  name text,
  replaces_session_hash bytea,
  at timestamptz
)
returns api.console_session
language plpgsql
volatile
as $$
declare
  v_invitation lic.member_invitations;
  v_member lic.members;
begin
  perform private.require_hash(session_hash, 'session_hash');
  if replaces_session_hash is not null then
    perform private.require_hash(replaces_session_hash, 'replaces_session_hash');
  end if;
  if accept_member_invitation.name is not null and length(accept_member_invitation.name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1-200 characters';
  end if;
  v_invitation := private.member_invitation_by_token(token, lock => true);
  if v_invitation.id is null or (private.invitation_view(v_invitation, at)).status <> 'pending' then
    raise exception using errcode = 'LAUTH', column = 'token',
      message = 'this invitation is invalid, expired, revoked or already accepted';
  end if;
  perform private.lock_members(v_invitation.account_id);
  select m.* into v_member from lic.members as m
  where m.account_id = v_invitation.account_id and m.email = v_invitation.email;
  if not found then
    insert into lic.members (account_id, email, name, role)
    values (v_invitation.account_id, v_invitation.email, accept_member_invitation.name, v_invitation.role)
    returning * into v_member;
  end if;
  update lic.member_invitations as i set accepted_at = at, member_id = v_member.id
  where i.account_id = v_invitation.account_id and i.id = v_invitation.id
  returning i.* into v_invitation;
  -- The new member is the actor of its joining.
  perform private.set_context(v_member.account_id, 'member', v_member.id);
  perform private.emit_event(
    v_member.account_id, 'member.joined',
    to_jsonb(private.member_view(v_member)) || jsonb_build_object('invitation_id', v_invitation.id)
  );
  return private.console_start_session(v_member, session_hash, replaces_session_hash, at);
end;
$$;
comment on function private.accept_member_invitation(text, bytea, text, bytea, timestamptz) is
'Accept an invitation at an instant: the address becomes a member with its role (an address that is a member '
'already keeps its role) and is signed in. Errors: LAUTH, LINVL.';

create or replace function service.accept_member_invitation(
  token text,
  session_hash bytea,
  name text default null,
  replaces_session_hash bytea default null
)
returns api.console_session
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform private.console_begin();
  return private.accept_member_invitation(token, session_hash, name, replaces_session_hash, now());
end;
$$;
comment on function service.accept_member_invitation(text, bytea, text, bytea) is
'The POST of an invitation link (needs no key): accept the pending invitation with this token '
'(single use, within 7 days) and start a NEW console session for the member it makes (session_hash as for '
'service.confirm_console_login; name: the member''s name, optional). Sets the member context. Errors: LAUTH (401) '
'unknown, expired, revoked or accepted invitation; LINVL (422) malformed session hash or name.';
