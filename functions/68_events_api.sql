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
