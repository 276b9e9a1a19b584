-- Agent identities: principals for AI agents, each with its own token
-- (lic_ak_…, shown once, stored as its sha256), optionally tied to a license
-- and counted against the tenant plan while active (the trigger in
-- 41_plan_limits.sql raises LPLAN). api.authenticate accepts an agent token
-- as kind 'agent'; the only api function that admits that kind here is
-- api.get_current_agent, every other one needs a secret key.

create or replace function private.agent_view(a lic.agents, token text default null)
returns api.agent
language sql
immutable
as $$
  select row(
    a.id, a.name, a.license_id, a.status, a.redacted, a.metadata, a.created_at, a.updated_at, a.revoked_at, token
  )::api.agent;
$$;
comment on function private.agent_view(lic.agents, text) is
'The public shape of an agent; token is only passed when it is new.';

create or replace function private.find_agent(agent_id uuid)
returns lic.agents
language plpgsql
volatile
as $$
declare
  v_agent lic.agents;
begin
  select a.* into v_agent
  from lic.agents as a
  where a.account_id = private.current_account_id() and a.id = find_agent.agent_id
  for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'agent_id', message = 'agent not found';
  end if;
  return v_agent;
end;
$$;
comment on function private.find_agent(uuid) is
'The agent with this id, locked FOR UPDATE for a change. Errors: LNTFD.';

create or replace function api.create_agent(name text, license_id uuid default null, metadata jsonb default '{}')
returns api.agent
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_token text;
  v_agent lic.agents;
begin
  if name is null or length(name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1 to 200 characters';
  end if;
  if license_id is not null and not exists (
    select from lic.licenses as l where l.account_id = v_account_id and l.id = create_agent.license_id
  ) then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  v_token := private.mint_token('lic_ak_', v_account_id);
  -- The plan usage trigger raises LPLAN here when the tenant plan is full.
  insert into lic.agents (account_id, name, license_id, token_hash, redacted, metadata)
  values (
    v_account_id, create_agent.name, create_agent.license_id, private.token_hash(v_token),
    private.token_redacted(v_token), private.write_metadata('{}', create_agent.metadata)
  )
  returning * into v_agent;
  perform private.emit_event(v_account_id, 'agent.created', to_jsonb(private.agent_view(v_agent)) - 'token');
  return private.agent_view(v_agent, v_token);
end;
$$;
comment on function api.create_agent(text, uuid, jsonb) is
'Create an agent identity, optionally tied to a license; the answer carries its token (lic_ak_…), shown this '
'once. Errors: LINVL (422), LNTFD (404) license, LPLAN (402) tenant plan''s agent limit.';

create or replace function api.list_agents(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  status text default null
)
returns setof api.agent
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
begin
  if status is not null and status not in ('active', 'revoked') then
    raise exception using errcode = 'LINVL', column = 'status', message = 'status must be "active" or "revoked"';
  end if;
  if ending_before is null then
    return query
    select (private.agent_view(a)).*
    from lic.agents as a
    where
      a.account_id = v_account_id
      and (list_agents.status is null or a.status = list_agents.status)
      and (starting_after is null or a.id < starting_after)
    order by a.id desc
    limit private.page_rows(page_limit, starting_after, ending_before);
  else
    return query
    select (p.agent).*
    from (
      select private.agent_view(a) as agent, a.id
      from lic.agents as a
      where
        a.account_id = v_account_id
        and (list_agents.status is null or a.status = list_agents.status)
        and a.id > ending_before
      order by a.id
      limit private.page_rows(page_limit, starting_after, ending_before)
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_agents(integer, uuid, uuid, text) is
'List the account''s agents newest first (never their tokens), optionally only those with a status (active, '
'revoked), as a keyset page of up to page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_agent(agent_id uuid)
returns api.agent
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_agent lic.agents;
begin
  select a.* into v_agent from lic.agents as a where a.account_id = v_account_id and a.id = get_agent.agent_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'agent_id', message = 'agent not found';
  end if;
  return private.agent_view(v_agent);
end;
$$;
comment on function api.get_agent(uuid) is 'One agent of the account, without its token. Errors: LNTFD (404).';

create or replace function api.get_current_agent()
returns api.agent
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['agent']);
  v_agent lic.agents;
begin
  select a.* into v_agent
  from lic.agents as a
  where a.account_id = v_account_id and a.id = (private.current_context()).principal_id;
  if not found then
    raise exception using errcode = 'LNTFD', message = 'agent not found';
  end if;
  return private.agent_view(v_agent);
end;
$$;
comment on function api.get_current_agent() is
'The agent whose token authenticated this transaction; only an agent token may call it. Errors: LDNID (403) for '
'any other key.';

create or replace function api.update_agent(agent_id uuid, name text default null, metadata jsonb default null)
returns api.agent
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_agent lic.agents := private.find_agent(agent_id);
  v_before jsonb := to_jsonb(private.agent_view(v_agent)) - 'token';
  v_after jsonb;
  v_changed jsonb;
begin
  if update_agent.name is not null and length(update_agent.name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1 to 200 characters';
  end if;
  update lic.agents as a
  set
    name = coalesce(update_agent.name, a.name),
    metadata = private.write_metadata(v_agent.metadata, update_agent.metadata),
    updated_at = now()
  where a.account_id = v_account_id and a.id = v_agent.id
  returning a.* into v_agent;
  v_after := to_jsonb(private.agent_view(v_agent)) - 'token';
  v_changed := private.previous_attributes(v_before, v_after);
  if v_changed <> '{}' then
    perform private.emit_event(v_account_id, 'agent.updated', v_after, v_changed);
  end if;
  return private.agent_view(v_agent);
end;
$$;
comment on function api.update_agent(uuid, text, jsonb) is
'Rename an agent or replace its metadata (an argument left null is kept); agent.updated when something changed. '
'Errors: LNTFD (404), LINVL (422).';

create or replace function api.revoke_agent(agent_id uuid)
returns api.agent
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_agent lic.agents := private.find_agent(agent_id);
  v_before jsonb;
begin
  if v_agent.status = 'revoked' then
    return private.agent_view(v_agent);
  end if;
  v_before := to_jsonb(private.agent_view(v_agent)) - 'token';
  -- The plan usage trigger frees the agent's place in the tenant plan.
  update lic.agents as a
  set status = 'revoked', revoked_at = now(), updated_at = now()
  where a.account_id = v_account_id and a.id = v_agent.id
  returning a.* into v_agent;
  perform private.emit_event(
    v_account_id, 'agent.revoked', to_jsonb(private.agent_view(v_agent)) - 'token',
    private.previous_attributes(v_before, to_jsonb(private.agent_view(v_agent)) - 'token')
  );
  return private.agent_view(v_agent);
end;
$$;
comment on function api.revoke_agent(uuid) is
'Revoke an agent: its token stops working at once and it no longer counts against the tenant plan; revoking it '
'again returns it unchanged. Errors: LNTFD (404).';

create or replace function api.roll_agent_token(agent_id uuid)
returns api.agent
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_agent lic.agents := private.find_agent(agent_id);
  v_token text;
  v_before jsonb;
begin
  if v_agent.status = 'revoked' then
    raise exception using errcode = 'LSTAT', column = 'agent_id', message = 'a revoked agent''s token cannot be rolled';
  end if;
  v_before := to_jsonb(private.agent_view(v_agent)) - 'token';
  v_token := private.mint_token('lic_ak_', v_account_id);
  update lic.agents as a
  set token_hash = private.token_hash(v_token), redacted = private.token_redacted(v_token), updated_at = now()
  where a.account_id = v_account_id and a.id = v_agent.id
  returning a.* into v_agent;
  perform private.emit_event(
    v_account_id, 'agent.token_rolled', to_jsonb(private.agent_view(v_agent)) - 'token',
    private.previous_attributes(v_before, to_jsonb(private.agent_view(v_agent)) - 'token')
  );
  return private.agent_view(v_agent, v_token);
end;
$$;
comment on function api.roll_agent_token(uuid) is
'Give an agent a new token (shown this once); the old one stops working at once. Errors: LNTFD (404), '
'LSTAT (409) revoked agent.';
