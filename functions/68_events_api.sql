-- Reading the event outbox: what happened in the account, newest first, as
-- webhooks deliver it (private.event_view). Filtered by type, a page walks
-- events__account_id_type_id_idx; unfiltered, the primary key.

create or replace function api.list_events(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  type text default null
)
returns setof api.event
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
begin
  -- Four plain queries rather than one with "type is null or …", so each
  -- plan walks its index.
  if list_events.type is null and ending_before is null then
    return query
    select (private.event_view(e)).*
    from lic.events as e
    where e.account_id = v_account_id and (starting_after is null or e.id < starting_after)
    order by e.id desc
    limit v_rows;
  elsif list_events.type is null then
    return query
    select (p.event).*
    from (
      select private.event_view(e) as event, e.id
      from lic.events as e
      where e.account_id = v_account_id and e.id > ending_before
      order by e.id
      limit v_rows
    ) as p
    order by p.id desc;
  elsif ending_before is null then
    return query
    select (private.event_view(e)).*
    from lic.events as e
    where
      e.account_id = v_account_id and e.type = list_events.type
      and (starting_after is null or e.id < starting_after)
    order by e.id desc
    limit v_rows;
  else
    return query
    select (p.event).*
    from (
      select private.event_view(e) as event, e.id
      from lic.events as e
      where e.account_id = v_account_id and e.type = list_events.type and e.id > ending_before
      order by e.id
      limit v_rows
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_events(integer, uuid, uuid, text) is
'List the account''s events newest first, optionally of one type (license.created, machine.activated, …), as a '
'keyset page of up to page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_event(event_id uuid)
returns api.event
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_event lic.events;
begin
  select e.* into v_event from lic.events as e where e.account_id = v_account_id and e.id = get_event.event_id;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'event_id', message = 'event not found';
  end if;
  return private.event_view(v_event);
end;
$$;
comment on function api.get_event(uuid) is 'One event of the account. Errors: LNTFD (404).';

-- The audit log: the same events with who caused them (decision 67).
create or replace function private.audit_event_view(e lic.events)
returns api.audit_event
language sql
stable
as $$
  select row(
    e.id, e.type, e.created_at, e.actor_kind, e.actor_id,
    case when e.actor_kind = 'member' then (
      select m.email from lic.members as m where m.account_id = e.account_id and m.id = e.actor_id
    ) end,
    jsonb_build_object('object', e.object, 'previous_attributes', e.previous_attributes)
  )::api.audit_event;
$$;
comment on function private.audit_event_view(lic.events) is
'An event as the audit log shows it: with its actor (and the member''s email while it is a member).';

create or replace function api.list_audit_events(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  member_id uuid default null,
  type text default null,
  created_after timestamptz default null,
  created_before timestamptz default null
)
returns setof api.audit_event
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
  select (p.event).*
  from (
    select private.audit_event_view(e) as event, e.id
    from lic.events as e
    where
      e.account_id = v_account_id
      and (list_audit_events.member_id is null or (e.actor_kind = 'member' and e.actor_id = list_audit_events.member_id))
      and (list_audit_events.type is null or e.type = list_audit_events.type)
      and (created_after is null or e.created_at > created_after)
      and (created_before is null or e.created_at < created_before)
      and (starting_after is null or e.id < starting_after)
      and (ending_before is null or e.id > ending_before)
    -- Walking back from ending_before takes the oldest rows after it.
    order by case when ending_before is null then e.id end desc, e.id
    limit v_rows
  ) as p
  order by p.id desc;
end;
$$;
comment on function api.list_audit_events(integer, uuid, uuid, uuid, text, timestamptz, timestamptz) is
'The audit log: the account''s events newest first, each with who caused it (actor_kind member, secret, '
'publishable, agent, stripe or customer, actor_id and a member''s email; null: Licentric''s own sweeps), '
'optionally only a member''s, of one type, or within created_after and created_before; a keyset page of up to '
'page_limit + 1 rows. Errors: LINVL (422).';
