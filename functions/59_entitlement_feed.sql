-- Entitlement snapshots and their change feed, for the SDK's local checks
-- (issue 14, decisions 80-82). A customer's decisions are
-- private.entitlement_decision over lic.customers.licenses, as a timeline
-- from now on, so the SDK compares a clock and copies no rule.
--
-- The feed's order is the writing transaction's id: a trigger stamps a
-- customer with pg_current_xact_id() whenever its licenses or external id
-- change, and an external id that stops naming a customer is buried
-- (lic.customer_tombstones) with the same stamp. A page of changes covers
-- stamps in [cursor, horizon), horizon being the xmin of the reading
-- snapshot (less other databases' transactions, private.feed_horizon): every
-- transaction below it has ended, so no stamp below it can appear later,
-- whatever the order in which transactions commit.

create or replace function private.bury_external_id(account_id uuid, external_id text)
returns void
language plpgsql
volatile
as $$
declare
  v_floor xid8;
begin
  insert into lic.customer_tombstones as t (account_id, external_id)
  values (bury_external_id.account_id, bury_external_id.external_id)
  on conflict do nothing;
  -- Keep 30 days; a cursor at or below the newest id pruned is refused (410).
  select max(t.changed_xid) into v_floor from lic.customer_tombstones as t
  where t.account_id = bury_external_id.account_id and t.created_at < now() - interval '30 days';
  if v_floor is not null then
    delete from lic.customer_tombstones as t
    where t.account_id = bury_external_id.account_id and t.changed_xid <= v_floor;
    update lic.accounts as a set entitlement_feed_floor = greatest(a.entitlement_feed_floor, v_floor)
    where a.account_id = bury_external_id.account_id;
  end if;
end;
$$;
comment on function private.bury_external_id(uuid, text) is
'Record that an external id no longer names a customer of the account, for the entitlement feed; prunes the '
'account''s records older than 30 days and raises its feed floor past them.';

create or replace function private.tg_customers__entitlement_feed()
returns trigger
language plpgsql
as $$
begin
  if tg_op = 'DELETE' or old.external_id is distinct from new.external_id then
    if old.external_id is not null then
      perform private.bury_external_id(old.account_id, old.external_id);
    end if;
  end if;
  if tg_op = 'DELETE' then
    return old;
  end if;
  new.changed_xid := pg_catalog.pg_current_xact_id();
  return new;
end;
$$;
comment on function private.tg_customers__entitlement_feed() is
'A customer''s licenses or external id changed, or it is being deleted: stamp it for the entitlement feed, and '
'bury an external id it gives up.';

-- A new customer takes its stamp from the column's default.
create or replace trigger customers__entitlement_feed
before update of licenses, external_id on lic.customers
for each row
when (old.licenses is distinct from new.licenses or old.external_id is distinct from new.external_id)
execute function private.tg_customers__entitlement_feed();

create or replace trigger customers__entitlement_feed_delete
before delete on lic.customers
for each row
when (old.external_id is not null)
execute function private.tg_customers__entitlement_feed();

create or replace function private.feed_horizon(snapshot pg_snapshot)
returns xid8
language sql
stable
as $$
  -- The snapshot's xmin, less the transactions proven to run in another
  -- database of the server (they cannot write here, and one left open would
  -- hold every feed back). An id not found is counted: it may be ours.
  select coalesce(min(x.id), pg_catalog.pg_snapshot_xmax(snapshot))
  from pg_catalog.pg_snapshot_xip(snapshot) as x (id)
  where
    not exists (
      select from pg_catalog.pg_stat_activity as a
      where
        a.backend_xid = x.id::xid
        and a.datid <> (select d.oid from pg_catalog.pg_database as d where d.datname = pg_catalog.current_database())
    )
    and not exists (
      select from pg_catalog.pg_prepared_xacts as p
      where p.transaction = x.id::xid and p.database <> pg_catalog.current_database()
    );
$$;
comment on function private.feed_horizon(pg_snapshot) is
'The change feed''s horizon for a snapshot: its lowest running transaction id of this database (or not known '
'to be of another), else its xmax. Every stamp below it is committed and visible in the snapshot, or rolled back.';

create or replace function private.entitlement_timeline(
  licenses lic.customer_license[],
  entitlement text,
  at timestamptz
)
returns jsonb
language plpgsql
immutable
as $$
declare
  v_at timestamptz := at;
  v_decision lic.entitlement_decision;
  v_timeline jsonb := '[]';
begin
  -- Each answer holds until its valid_until, the next from then on. Every
  -- step passes the end of at least one license in use, so it stops.
  loop
    v_decision := private.entitlement_decision(licenses, entitlement, v_at);
    v_timeline := v_timeline || jsonb_build_array(to_jsonb(v_decision));
    exit when v_decision.valid_until is null;
    v_at := v_decision.valid_until;
  end loop;
  return v_timeline;
end;
$$;
comment on function private.entitlement_timeline(lic.customer_license[], text, timestamptz) is
'private.entitlement_decision from an instant on, as a JSON array of {allowed, reason, license_id, '
'valid_until}: each holds until its valid_until, the last forever.';

create or replace function private.customer_entitlements(external_id text, licenses lic.customer_license[])
returns jsonb
language sql
stable
as $$
  select jsonb_build_object(
    'customer', external_id,
    'found', licenses is not null,
    -- The answer for every code the entitlements object does not list.
    'default', private.entitlement_timeline(licenses, null, now()),
    'entitlements', coalesce(
      (
        select jsonb_object_agg(e.code, private.entitlement_timeline(licenses, e.code, now()))
        from (
          select distinct unnest(l.entitlement_codes) as code
          from unnest(licenses) as l
          where private.effective_status(l.status, l.expires_at, l.grace_ends_at, now()) in ('active', 'past_due')
        ) as e
      ),
      '{}'
    )
  );
$$;
comment on function private.customer_entitlements(text, lic.customer_license[]) is
'A customer''s entitlement decisions from now on (licenses null: no such customer): {customer, found, default, '
'entitlements: {code: timeline}}; a code not listed gets default''s timeline.';

create or replace function private.feed_page_limit(page_limit integer)
returns integer
language plpgsql
immutable
as $$
begin
  if page_limit is null or page_limit not between 1 and 1000 then
    raise exception using errcode = 'LINVL', column = 'limit', message = 'limit must be between 1 and 1000';
  end if;
  return page_limit;
end;
$$;
comment on function private.feed_page_limit(integer) is
'Refuse an entitlement page size outside 1-1000. Errors: LINVL.';

create or replace function api.entitlement_snapshot(
  customer_external_id text default null,
  page_limit integer default 100,
  starting_after text default null
)
returns api.entitlement_page
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_licenses lic.customer_license[];
  v_data jsonb;
  v_count integer;
  v_cursor text := private.feed_horizon(pg_current_snapshot())::text;
begin
  perform private.feed_page_limit(page_limit);
  if customer_external_id is not null then
    select c.licenses into v_licenses from lic.customers as c
    where c.account_id = v_account_id and c.external_id = customer_external_id;
    return row(
      jsonb_build_array(private.customer_entitlements(customer_external_id, v_licenses)), false, v_cursor
    )::api.entitlement_page;
  end if;
  select coalesce(jsonb_agg(private.customer_entitlements(p.external_id, p.licenses) order by p.external_id), '[]'),
    count(*)::integer
  into v_data, v_count
  from (
    select c.external_id, c.licenses from lic.customers as c
    where
      c.account_id = v_account_id and c.external_id is not null
      and (starting_after is null or c.external_id > starting_after)
    order by c.external_id
    limit page_limit + 1
  ) as p;
  if v_count > page_limit then
    v_data := v_data - page_limit;
  end if;
  return row(v_data, v_count > page_limit, v_cursor)::api.entitlement_page;
end;
$$;
comment on function api.entitlement_snapshot(text, integer, text) is
'The entitlement decisions of one customer (customer_external_id; found false when there is none) or a page of '
'all customers with an external id, in external id order (page_limit 1-1000, starting_after the last external id '
'seen), each from now on: {customer, found, default, entitlements: {code: [{allowed, reason, license_id, '
'valid_until}, ...]}}. Each answer of a timeline holds until its valid_until, the next from then on; a code not '
'listed gets default''s. cursor: where api.entitlement_changes goes on from (after several pages, the first '
'page''s). Secret keys. Errors: LINVL (422).';

create or replace function api.entitlement_changes(cursor text, page_limit integer default 1000)
returns api.entitlement_page
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_snapshot pg_snapshot := pg_current_snapshot();
  v_parts text[] := regexp_match(cursor, '^([0-9]{1,20})(?:\.([0-9]{1,20})\.((?:[0-9a-f]{2})*))?$');
  v_from xid8;
  v_to xid8;
  v_after text;
  v_rows record;
  v_data jsonb := '[]';
  v_count integer := 0;
  v_last_xid xid8;
  v_last_external_id text;
begin
  perform private.feed_page_limit(page_limit);
  if v_parts is null then
    raise exception using errcode = 'LINVL', column = 'cursor',
      message = 'cursor must be a cursor this API answered';
  end if;
  -- A cursor is where the last page ended: a horizon, or, within a window
  -- too big for one page, the last stamp and external id answered and the
  -- window's end.
  v_from := v_parts[1]::xid8;
  v_to := coalesce(v_parts[2]::xid8, private.feed_horizon(v_snapshot));
  begin
    v_after := convert_from(decode(nullif(v_parts[3], ''), 'hex'), 'UTF8');
  exception when character_not_in_repertoire or untranslatable_character then
    raise exception using errcode = 'LINVL', column = 'cursor',
      message = 'cursor must be a cursor this API answered';
  end;
  if greatest(v_from, v_to) > pg_snapshot_xmax(v_snapshot) then
    raise exception using errcode = 'LGONE', column = 'cursor',
      message = 'this cursor was not answered by this database: take a new snapshot';
  end if;
  if v_from <= (select a.entitlement_feed_floor from lic.accounts as a where a.account_id = v_account_id) then
    raise exception using errcode = 'LGONE', column = 'cursor',
      message = 'this cursor is too old to follow: take a new snapshot';
  end if;

  for v_rows in
    select x.changed_xid, x.external_id, c.licenses
    from (
      select c.changed_xid, c.external_id from lic.customers as c
      where
        c.account_id = v_account_id and c.changed_xid >= v_from and c.changed_xid < v_to
        and c.external_id is not null
      union all
      select t.changed_xid, t.external_id from lic.customer_tombstones as t
      where t.account_id = v_account_id and t.changed_xid >= v_from and t.changed_xid < v_to
    ) as x
    left join lic.customers as c on c.account_id = v_account_id and c.external_id = x.external_id
    where v_after is null or (x.changed_xid, x.external_id) > (v_from, v_after)
    order by x.changed_xid, x.external_id
    limit page_limit + 1
  loop
    v_count := v_count + 1;
    exit when v_count > page_limit;
    -- The current decisions, whichever row named the external id.
    v_data := v_data || jsonb_build_array(private.customer_entitlements(v_rows.external_id, v_rows.licenses));
    v_last_xid := v_rows.changed_xid;
    v_last_external_id := v_rows.external_id;
  end loop;
  if v_count > page_limit then
    return row(
      v_data, true, format('%s.%s.%s', v_last_xid, v_to, encode(convert_to(v_last_external_id, 'UTF8'), 'hex'))
    )::api.entitlement_page;
  end if;
  return row(v_data, false, v_to::text)::api.entitlement_page;
end;
$$;
comment on function api.entitlement_changes(text, integer) is
'The customers whose entitlement decisions changed since cursor (from api.entitlement_snapshot or the previous '
'page), in commit-safe order, each with its current decisions as api.entitlement_snapshot answers them (found '
'false: the external id no longer names a customer), up to page_limit (1-1000); has_more: call again at once '
'with the answered cursor. Secret keys. Errors: LINVL (422) malformed cursor, LGONE (410) cursor too old to '
'follow or not from this database: take a new snapshot.';
