-- Usage ingest: one set-based pass per batch (no per-event round trip). In
-- the ingest transaction it records the new events, adds them to the hourly
-- rollups (so sum(rollups) = sum(events) at every instant) and debits the
-- budgets they fall under; hard budgets are locked first, so parallel
-- spenders queue on the budget row and none can overspend.

create or replace function private.tg_metering_events__append_only()
returns trigger
language plpgsql
as $$
begin
  -- Only partition upkeep (run as the table owner) may move or drop events.
  if current_user <> 'lic_owner' then
    raise exception using errcode = 'LSTAT', message = 'usage events are append-only: they cannot be changed or deleted';
  end if;
  return case tg_op when 'DELETE' then old else new end;
end;
$$;
comment on function private.tg_metering_events__append_only() is
'Refuse UPDATE and DELETE of usage events to everyone but the table owner (partition upkeep).';

create or replace trigger metering_events__append_only
before update or delete on lic.metering_events
for each row execute function private.tg_metering_events__append_only();

create or replace function private.rfc3339(value text)
returns timestamptz
language sql
stable
parallel safe
as $$
  -- One expression, so it is inlined (this runs for every event). The format
  -- fixes every field's position; nested CASEs check the fields in order, so
  -- a bad instant is null, never an error: one bad event must not fail its
  -- whole batch.
  select case when value ~ ('^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?'
    || '([Zz]|[+-](0[0-9]|1[0-5]):[0-5][0-9])$')
    then case when substr(value, 1, 4)::integer >= 1 and substr(value, 6, 2)::integer between 1 and 12
      then case when substr(value, 9, 2)::integer between 1 and extract(day from
          pg_catalog.make_date(substr(value, 1, 4)::integer, substr(value, 6, 2)::integer, 1)
          + interval '1 month' - interval '1 day')
        and substr(value, 12, 2)::integer <= 23 and substr(value, 15, 2)::integer <= 59
        and substr(value, 18, 2)::integer <= 59
        then value::timestamptz
      end
    end
  end;
$$;
comment on function private.rfc3339(text) is
'An RFC 3339 instant (with Z or an offset) as timestamptz; null when it is not one.';

create or replace function private.uuid_or_null(value text)
returns uuid
language sql
immutable
parallel safe
as $$
  select case when value ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then value::uuid end;
$$;
comment on function private.uuid_or_null(text) is 'A uuid from text; null when the text is not one.';

create or replace function private.budget_events(account_id uuid, debits jsonb)
returns void
language plpgsql
volatile
as $$
declare
  v_debit record;
  v_budget lic.budgets;
  v_threshold integer;
  v_object jsonb;
begin
  for v_debit in
    select * from jsonb_to_recordset(debits) as d (budget_id uuid, period_start timestamptz, used_before numeric, used numeric)
  loop
    select b.* into v_budget from lic.budgets as b
    where b.account_id = budget_events.account_id and b.id = v_debit.budget_id;
    v_object := jsonb_build_object(
      'object', 'budget_usage', 'budget_id', v_budget.id, 'meter_id', v_budget.meter_id,
      'agent_id', v_budget.agent_id, 'license_id', v_budget.license_id, 'period', v_budget.period,
      'period_start', v_debit.period_start, 'limit', v_budget."limit", 'hard', v_budget.hard, 'used', v_debit.used
    );
    -- Each threshold once per period: crossed by this debit and not yet recorded.
    for v_threshold in
      select t from unnest(v_budget.thresholds) as t
      where v_debit.used >= v_budget."limit" * t / 100 and v_debit.used_before < v_budget."limit" * t / 100
      order by t
    loop
      update lic.budget_usage as u
      set thresholds_reached = u.thresholds_reached || v_threshold
      where
        u.account_id = budget_events.account_id and u.budget_id = v_budget.id
        and u.period_start = v_debit.period_start and not v_threshold = any(u.thresholds_reached);
      if found then
        perform private.emit_event(
          budget_events.account_id, 'budget.threshold_reached', v_object || jsonb_build_object('threshold', v_threshold)
        );
      end if;
    end loop;
    if not v_budget.hard and v_debit.used > v_budget."limit" then
      update lic.budget_usage as u
      set exceeded_at = now()
      where
        u.account_id = budget_events.account_id and u.budget_id = v_budget.id
        and u.period_start = v_debit.period_start and u.exceeded_at is null;
      if found then
        perform private.emit_event(budget_events.account_id, 'budget.exceeded', v_object);
      end if;
    end if;
  end loop;
end;
$$;
comment on function private.budget_events(uuid, jsonb) is
'After budgets were debited ([{budget_id, period_start, used_before, used}]): emit budget.threshold_reached for '
'each threshold crossed (once per period) and budget.exceeded when a soft budget passes its limit (once).';

create or replace function private.event_budgets(
  account_id uuid, meter_id uuid, agent_id uuid, license_id uuid, subject_key text
)
returns table (id uuid, period text)
language sql
stable
as $$
  -- Two index lookups (the agent's budgets, the license's), not a scan of the
  -- account's budgets with an OR; plain SQL, so it is inlined into the caller.
  select b.id, b.period from lic.budgets as b
  where b.account_id = event_budgets.account_id and b.license_id = event_budgets.license_id
    and b.meter_id = event_budgets.meter_id
    and (not b.own_events_only or event_budgets.agent_id is null and event_budgets.subject_key is null)
  union all
  select b.id, b.period from lic.budgets as b
  where b.account_id = event_budgets.account_id and b.agent_id = event_budgets.agent_id
    and b.meter_id = event_budgets.meter_id;
$$;
comment on function private.event_budgets(uuid, uuid, uuid, uuid, text) is
'The budgets an event of this meter and subject is debited from: its agent''s, and its license''s that count all '
'the license''s subjects or (with no agent and no subject key) the license''s own events.';

create or replace function private.ingest_rows(batch private.ingest_event[], valid_only boolean)
returns setof private.ingest_event
language plpgsql
immutable
rows 1000
as $$
begin
  -- PL/pgSQL so it is not inlined: the planner then takes ROWS 1000, not
  -- unnest's guess, and joins a batch's events by hash, not by nested loops
  -- that grow with the square of the batch.
  -- valid_only filters here, out of the planner's sight: a filter on code
  -- outside would be estimated to keep 0.5 % of the rows.
  return query select * from unnest(batch) as r where not valid_only or r.code is null;
end;
$$;
comment on function private.ingest_rows(private.ingest_event[], boolean) is
'The checked events of a batch, as rows (valid_only: those that passed every check).';

create or replace function api.ingest_events(events jsonb)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'agent'], member_role => 'developer');
  v_context record := private.current_context();
  -- An agent records only for itself.
  v_self uuid := case when v_context.kind = 'agent' then v_context.principal_id end;
  v_now timestamptz := now();
  v_nil constant uuid := '00000000-0000-0000-0000-000000000000';
  v_batch private.ingest_event[];
  v_done record;
begin
  perform private.require_active_account(v_account_id);
  if jsonb_typeof(events) is distinct from 'array' then
    raise exception using errcode = 'LINVL', column = 'events', message = 'events must be an array';
  end if;
  if jsonb_array_length(events) > 10000 then
    raise exception using errcode = 'LINVL', column = 'events', message = 'at most 10,000 events a call';
  end if;

  -- Parse and check every event; the first failing check names its code.
  select array_agg(row(
    c.index, c.id, c.meter_id, c.agent_id, c.license_id, c.subject_key, c.quantity, c.occurred_at, c.properties,
    c.unique_value,
    -- A second copy of a valid event in the batch is its duplicate.
    case when c.code is null and c.copy > 1 then 'duplicate' else c.code end
  )::private.ingest_event order by c.index) into v_batch
  from (
    select c0.*, row_number() over (partition by c0.id, c0.occurred_at, c0.code is null order by c0.index) as copy
    from (
      select
        p.index, p.id, p.meter_id, p.agent_id, p.license_id, p.subject_key, p.quantity, p.occurred_at, p.properties,
        case when p.unique_property is not null then p.properties ->> p.unique_property end as unique_value,
        case
          when p.not_object then 'invalid_event'
          when p.id is null then 'invalid_id'
          when p.meter_id is null then 'unknown_meter'
          when p.archived_at is not null then 'meter_archived'
          when p.quantity is null or p.quantity < 0 then 'invalid_quantity'
          when p.occurred_at is null then 'invalid_timestamp'
          when p.occurred_at < v_now - interval '35 days' then 'too_old'
          when p.occurred_at > v_now + interval '5 minutes' then 'in_future'
          when p.properties is null then 'invalid_properties'
          when length(p.properties::text) > 8192 then 'properties_too_large'
          when p.given_agent is not null and p.agent_id is null then 'unknown_agent'
          -- An agent records for itself, and for its own license only.
          when v_self is not null and (
            p.agent_id is distinct from v_self or p.given_license is not null and p.license_id is distinct from p.own_license
          ) then 'forbidden_subject'
          when p.given_license is not null and p.license_id is null then 'unknown_license'
          when p.subject_key_invalid then 'invalid_subject_key'
          when p.agent_id is null and p.license_id is null and p.subject_key is null then 'missing_subject'
        end as code
      from (
        select
          i.index,
          jsonb_typeof(i.e) <> 'object' as not_object,
          case when jsonb_typeof(i.e -> 'id') = 'string' and length(i.e ->> 'id') between 1 and 255 then i.e ->> 'id' end
            as id,
          m.id as meter_id, m.archived_at, m.unique_property,
          case
            when not i.e ? 'quantity' then 1
            when jsonb_typeof(i.e -> 'quantity') = 'number' then (i.e ->> 'quantity')::numeric
          end as quantity,
          case
            when not i.e ? 'occurred_at' then v_now
            when jsonb_typeof(i.e -> 'occurred_at') = 'string' then private.rfc3339(i.e ->> 'occurred_at')
          end as occurred_at,
          case
            when not i.e ? 'properties' then '{}'::jsonb
            when jsonb_typeof(i.e -> 'properties') = 'object' then i.e -> 'properties'
          end as properties,
          i.e ->> 'agent_id' as given_agent,
          coalesce(a.id, case when i.e ->> 'agent_id' is null then v_self end) as agent_id,
          i.e ->> 'license_id' as given_license,
          coalesce(l.id, case when i.e ->> 'license_id' is null then own.license_id end) as license_id,
          own.license_id as own_license,
          case when jsonb_typeof(i.e -> 'subject_key') = 'string' and length(i.e ->> 'subject_key') between 1 and 255
            then i.e ->> 'subject_key' end as subject_key,
          i.e ? 'subject_key' and not (
            jsonb_typeof(i.e -> 'subject_key') = 'string' and length(i.e ->> 'subject_key') between 1 and 255
          ) as subject_key_invalid
        from jsonb_array_elements(events) with ordinality as i0 (e, n)
        cross join lateral (select i0.n - 1 as index, i0.e) as i
        left join lic.meters as m on m.account_id = v_account_id and m.code = i.e ->> 'meter'
        left join lic.agents as a
          on a.account_id = v_account_id and a.id = private.uuid_or_null(i.e ->> 'agent_id')
        left join lic.licenses as l
          on l.account_id = v_account_id and l.id = private.uuid_or_null(i.e ->> 'license_id')
        -- The license an agent works for, when the event names none.
        left join lic.agents as own
          on own.account_id = v_account_id and own.id = coalesce(a.id, case when i.e ->> 'agent_id' is null then v_self end)
        -- A fence: without it the planner pulls this subquery up and copies
        -- each parsed column into every expression that reads it, so each
        -- instant was parsed five times.
        offset 0
      ) as p
    ) as c0
  ) as c;

  -- Budget rows for the periods this batch falls in, made before they are
  -- locked below (a row that does not exist cannot be locked).
  if exists (select from lic.budgets as b where b.account_id = v_account_id) then
    insert into lic.budget_usage (account_id, budget_id, period_start)
    select distinct v_account_id, b.id, private.budget_period_start(b.period, r.occurred_at)
    from private.ingest_rows(v_batch, true) as r
    cross join lateral private.event_budgets(v_account_id, r.meter_id, r.agent_id, r.license_id, r.subject_key) as b
    order by 2, 3
    on conflict do nothing;
  end if;

  -- recursive: for the in-order walk over hard budgets (walk, below).
  with recursive rows as (
    select * from private.ingest_rows(v_batch, false)
  ),
  fresh as (
    -- Events already stored (committed before this statement) are duplicates.
    -- One primary-key probe per event (offset 0 keeps it a subplan): as a
    -- hash anti join it would read every stored event of the account.
    select r.* from private.ingest_rows(v_batch, true) as r
    where
      not exists (
        select from lic.metering_events as m
        where m.account_id = v_account_id and m.id = r.id and m.occurred_at = r.occurred_at
        offset 0
      )
  ),
  charged as (
    -- Each new event's budgets: two hash joins on equalities (its license's
    -- budgets, its agent's), not one join with an OR tried for every pair.
    select f.index, f.quantity, b.id as budget_id, private.budget_period_start(b.period, f.occurred_at) as period_start,
      b."limit", b.hard
    from fresh as f
    inner join lic.budgets as b on b.account_id = v_account_id and b.meter_id = f.meter_id and b.license_id = f.license_id
    where not b.own_events_only or f.agent_id is null and f.subject_key is null
    union all
    select f.index, f.quantity, b.id, private.budget_period_start(b.period, f.occurred_at), b."limit", b.hard
    from fresh as f
    inner join lic.budgets as b on b.account_id = v_account_id and b.meter_id = f.meter_id and b.agent_id = f.agent_id
  ),
  locked as (
    -- In key order, so concurrent batches queue instead of deadlocking; a
    -- row a concurrent batch debited is read as that batch committed it.
    select u.budget_id, u.period_start, u.used, b."limit", b.hard
    from lic.budget_usage as u
    inner join lic.budgets as b on b.account_id = u.account_id and b.id = u.budget_id
    where u.account_id = v_account_id and (u.budget_id, u.period_start) in (select c.budget_id, c.period_start from charged as c)
    order by u.budget_id, u.period_start
    for update of u
  ),
  -- Hard budgets take the batch's events in order, each if it fits in every
  -- hard budget it falls under; a refused event takes no room. What is left
  -- of each hard budget is a jsonb map (budget and period -> room), so no
  -- step joins two of these CTEs (the planner cannot size them). When the
  -- whole batch fits in every hard budget (the usual case) nothing is
  -- refused and no walk is needed; otherwise the events under hard budgets
  -- are walked one by one, in batch order.
  room as (
    select coalesce(jsonb_object_agg(k.budget_id::text || k.period_start::text, k."limit" - k.used), '{}') as left
    from locked as k
    where k.hard
  ),
  overflowing as (
    select exists (
      select from charged as c where c.hard
      group by c.budget_id, c.period_start
      having sum(c.quantity) > ((select room.left from room) ->> (c.budget_id::text || c.period_start::text))::numeric
    ) as yes
  ),
  hard as (
    select coalesce(jsonb_agg(jsonb_build_object('index', h.index, 'quantity', h.quantity, 'keys', h.keys)
      order by h.index), '[]') as events
    from (
      select c.index, c.quantity, jsonb_agg(c.budget_id::text || c.period_start::text) as keys
      from charged as c
      where c.hard
      group by c.index, c.quantity
    ) as h
  ),
  walk (n, index, fits, room) as (
    select 0, null::integer, true, room.left from room
    where (select o.yes from overflowing as o)
    union all
    select w.n + 1, (e.event ->> 'index')::integer, f.fits,
      case when f.fits then w.room || f.spent else w.room end
    from walk as w
    cross join lateral (select (select hard.events from hard) -> w.n as event) as e
    cross join lateral (
      select
        bool_and((w.room ->> k.key)::numeric >= (e.event ->> 'quantity')::numeric) as fits,
        jsonb_object_agg(k.key, (w.room ->> k.key)::numeric - (e.event ->> 'quantity')::numeric) as spent
      from jsonb_array_elements_text(e.event -> 'keys') as k (key)
    ) as f
    where e.event is not null
  ),
  refused as (
    select w.index from walk as w where not w.fits
  ),
  inserted as (
    insert into lic.metering_events as m (
      account_id, id, meter_id, agent_id, license_id, subject_key, quantity, occurred_at, received_at, properties
    )
    select
      v_account_id, f.id, f.meter_id, f.agent_id, f.license_id, f.subject_key, f.quantity, f.occurred_at, v_now,
      f.properties
    from fresh as f
    where f.index not in (select refused.index from refused)
    order by f.id, f.occurred_at
    on conflict do nothing
    returning m.id, m.occurred_at
  ),
  accepted as (
    select f.* from inserted as i inner join fresh as f on f.id = i.id and f.occurred_at = i.occurred_at
  ),
  rolled as (
    insert into lic.metering_rollups as r (
      account_id, meter_id, hour, agent_id, license_id, subject_key, event_count, quantity_sum, quantity_max,
      latest_quantity, latest_at
    )
    select
      v_account_id, a.meter_id, date_trunc('hour', a.occurred_at, 'UTC'), coalesce(a.agent_id, v_nil),
      coalesce(a.license_id, v_nil), coalesce(a.subject_key, ''), count(*), sum(a.quantity), max(a.quantity),
      (array_agg(a.quantity order by a.occurred_at desc, a.index desc))[1], max(a.occurred_at)
    from accepted as a
    group by 2, 3, 4, 5, 6
    order by 2, 3, 4, 5, 6
    on conflict on constraint metering_rollups_pkey do update
    set
      event_count = r.event_count + excluded.event_count,
      quantity_sum = r.quantity_sum + excluded.quantity_sum,
      quantity_max = greatest(r.quantity_max, excluded.quantity_max),
      latest_quantity = case when excluded.latest_at >= r.latest_at then excluded.latest_quantity else r.latest_quantity end,
      latest_at = greatest(r.latest_at, excluded.latest_at)
  ),
  valued as (
    insert into lic.metering_rollup_values (account_id, meter_id, hour, agent_id, license_id, subject_key, value)
    select distinct
      v_account_id, a.meter_id, date_trunc('hour', a.occurred_at, 'UTC'), coalesce(a.agent_id, v_nil),
      coalesce(a.license_id, v_nil), coalesce(a.subject_key, ''), a.unique_value
    from accepted as a
    where a.unique_value is not null
    order by 2, 3, 4, 5, 6, 7
    on conflict do nothing
  ),
  debited as (
    update lic.budget_usage as u
    set used = u.used + d.amount
    from (
      select c.budget_id, c.period_start, sum(c.quantity) as amount
      from charged as c
      where c.index in (select a.index from accepted as a)
      group by 1, 2
    ) as d
    where u.account_id = v_account_id and u.budget_id = d.budget_id and u.period_start = d.period_start
    returning u.budget_id, u.period_start, u.used - d.amount as used_before, u.used
  ),
  answered as (
    select
      r.index, r.id,
      case
        when r.code = 'duplicate' and t.index is not null then 'rejected'
        when r.code = 'duplicate' then 'duplicate'
        when r.code is not null or f.index is not null then 'rejected'
        when a.index is not null then 'accepted'
        else 'duplicate'
      end as status,
      case
        when r.code <> 'duplicate' then r.code
        when f.index is not null or t.index is not null then 'budget_exhausted'
      end as code
    from rows as r
    left join accepted as a on a.index = r.index
    left join refused as f on f.index = r.index
    -- A copy of an event a budget refused in this batch is refused with it.
    left join (
      select fr.id, fr.occurred_at, min(fr.index) as index from fresh as fr
      where fr.index in (select refused.index from refused) group by fr.id, fr.occurred_at
    ) as t on r.code = 'duplicate' and t.id = r.id and t.occurred_at = r.occurred_at
  )
  select
    coalesce(jsonb_agg(jsonb_build_object('index', a.index, 'id', a.id, 'status', a.status, 'code', a.code)
      order by a.index), '[]') as data,
    count(*) filter (where a.status = 'accepted') as accepted,
    count(*) filter (where a.status = 'duplicate') as duplicates,
    count(*) filter (where a.status = 'rejected') as rejected,
    count(*) filter (where a.code = 'budget_exhausted') as exhausted,
    (select coalesce(jsonb_agg(to_jsonb(d)), '[]') from debited as d) as debits
  into v_done
  from answered as a;

  perform private.budget_events(v_account_id, v_done.debits);
  if v_done.exhausted > 0 and v_done.exhausted = v_done.rejected and v_done.accepted + v_done.duplicates = 0 then
    raise exception using errcode = 'LBUDG', column = 'events',
      message = 'a hard budget is exhausted: no event of this batch fits in what is left';
  end if;
  return jsonb_build_object(
    'object', 'usage_ingest', 'accepted', v_done.accepted, 'duplicates', v_done.duplicates,
    'rejected', v_done.rejected, 'data', v_done.data
  );
end;
$$;
comment on function api.ingest_events(jsonb) is
'Record a batch of usage events (at most 10,000): [{id, meter (code), quantity (default 1, >= 0), occurred_at '
'(RFC 3339, default now; not older than 35 days nor more than 5 minutes ahead), agent_id, license_id, '
'subject_key (at least one subject), properties (object, <= 8 KB)}]. An event is its id and occurred_at: sent '
'again it is a duplicate and counts once; the same id at another instant is another event. Rollups and budgets '
'change in the same transaction; a hard budget refuses the events that would pass its limit (code '
'budget_exhausted). Secret key or agent token (an agent records only for itself). Answers {accepted, duplicates, '
'rejected, data: [{index, id, status: accepted | duplicate | rejected, code}]}; per-event codes: invalid_event, '
'invalid_id, unknown_meter, meter_archived, invalid_quantity, invalid_timestamp, too_old, in_future, '
'invalid_properties, properties_too_large, unknown_agent, forbidden_subject, unknown_license, invalid_subject_key, '
'missing_subject, budget_exhausted. Errors: LINVL (422) not an array or too many, LBUDG (402) every event '
'refused by a hard budget, LACCT (403) the account is suspended.';

create or replace function api.check_budget(
  meter_id uuid default null,
  meter_code text default null,
  agent_id uuid default null,
  license_id uuid default null,
  amount numeric default 1
)
returns jsonb
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'agent']);
  v_context record := private.current_context();
  v_agent_id uuid := agent_id;
  v_license_id uuid := license_id;
  v_meter lic.meters;
  v_now timestamptz := now();
  v_budgets jsonb;
  v_remaining numeric;
begin
  perform private.require_exactly_one(array['meter_id', 'meter_code'], array[meter_id is not null, meter_code is not null]);
  select m.* into v_meter from lic.meters as m
  where m.account_id = v_account_id and (m.id = check_budget.meter_id or m.code = check_budget.meter_code);
  if not found then
    raise exception using errcode = 'LNTFD', column = 'meter', message = 'meter not found';
  end if;
  if amount is null or amount < 0 then
    raise exception using errcode = 'LINVL', column = 'amount', message = 'amount must be 0 or more';
  end if;
  if v_context.kind = 'agent' then
    if v_agent_id is distinct from v_context.principal_id and v_agent_id is not null then
      raise exception using errcode = 'LDNID', column = 'agent_id', message = 'an agent checks only its own budgets';
    end if;
    v_agent_id := v_context.principal_id;
    if license_id is distinct from (
      select a.license_id from lic.agents as a where a.account_id = v_account_id and a.id = v_agent_id
    ) and license_id is not null then
      raise exception using errcode = 'LDNID', column = 'license_id', message = 'an agent checks only its own budgets';
    end if;
  end if;
  if v_agent_id is null and v_license_id is null then
    raise exception using errcode = 'LINVL', column = 'agent_id', message = 'give agent_id or license_id';
  end if;
  if v_agent_id is not null then
    select coalesce(v_license_id, a.license_id) into v_license_id from lic.agents as a
    where a.account_id = v_account_id and a.id = v_agent_id;
    if not found then
      raise exception using errcode = 'LNTFD', column = 'agent_id', message = 'agent not found';
    end if;
  end if;
  if license_id is not null and not exists (
    select from lic.licenses as l where l.account_id = v_account_id and l.id = check_budget.license_id
  ) then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  -- The budgets an event of this subject would be debited from, as now.
  select
    coalesce(jsonb_agg(jsonb_build_object(
      'id', b.id, 'agent_id', b.agent_id, 'license_id', b.license_id, 'period', b.period, 'hard', b.hard,
      'limit', b."limit", 'used', coalesce(u.used, 0), 'remaining', greatest(b."limit" - coalesce(u.used, 0), 0),
      'period_start', s.period_start
    ) order by b.id), '[]'),
    min(greatest(b."limit" - coalesce(u.used, 0), 0)) filter (where b.hard)
  into v_budgets, v_remaining
  from lic.budgets as b
  cross join lateral (select private.budget_period_start(b.period, v_now) as period_start) as s
  left join lic.budget_usage as u
    on u.account_id = b.account_id and u.budget_id = b.id and u.period_start = s.period_start
  where
    b.account_id = v_account_id and b.meter_id = v_meter.id
    and (b.agent_id = v_agent_id or b.license_id = v_license_id and (not b.own_events_only or v_agent_id is null));
  return jsonb_build_object(
    'object', 'budget_check', 'allowed', v_remaining is null or v_remaining >= amount,
    'remaining', v_remaining, 'meter', v_meter.code, 'budgets', v_budgets
  );
end;
$$;
comment on function api.check_budget(uuid, text, uuid, uuid, numeric) is
'Whether amount more of a meter (by id or code) fits in every hard budget of a subject (an agent, with its '
'license''s budgets, or a license) this period, without spending: {allowed, remaining (the least left in a hard '
'budget; null when none applies), budgets: [...]}. Secret key or agent token (the agent itself). Errors: LINVL '
'(422), LNTFD (404), LDNID (403) an agent asking about another.';
