-- Meters, budgets and usage queries.
--
-- A meter names what usage events count and how (sum, count, max,
-- unique_count of a property, latest). Its code, aggregation and
-- unique_property are fixed at creation: the rollups already stored were
-- kept for that aggregation, so changing it would reinterpret history. A meter
-- is never deleted; archiving it makes ingest refuse its new events
-- (functions/75_metering.sql) while its history stays queryable.
--
-- A budget limits one meter for one agent or one license per calendar period
-- (hour, day, month; UTC). Every answer carries the current period's use,
-- read from lic.budget_usage (no row yet: nothing used); ingest keeps those
-- rows.
--
-- Usage queries read the hourly rollups only, through their primary key or
-- the (account, license|agent, meter, hour) indexes, over the asked range: the
-- cost follows the range and the subjects in it, never the whole history.

-- Periods and buckets: calendar-aligned in UTC whatever the session's
-- TimeZone. Truncating the UTC wall-clock time keeps every step immutable
-- (date_trunc(text, timestamptz, text) is only stable), so the planner folds
-- constant calls and ingest can use it set-based.
create or replace function private.budget_period_start(period text, at timestamptz)
returns timestamptz
language sql
immutable
parallel safe
as $$
  select pg_catalog.date_trunc(period, at at time zone 'UTC') at time zone 'UTC';
$$;
comment on function private.budget_period_start(text, timestamptz) is
'The start of the calendar period (hour, day, month; UTC) that contains an instant.';

create or replace function private.budget_period_end(period text, at timestamptz)
returns timestamptz
language sql
immutable
parallel safe
as $$
  -- Added in UTC wall-clock time too: a day or a month added in a local zone
  -- would be 23 or 25 hours across a daylight saving change.
  select (
    pg_catalog.date_trunc(period, at at time zone 'UTC')
    + case period when 'hour' then interval '1 hour' when 'day' then interval '1 day' else interval '1 month' end
  ) at time zone 'UTC';
$$;
comment on function private.budget_period_end(text, timestamptz) is
'The end (exclusive) of the calendar period (hour, day, month; UTC) that contains an instant.';

-- ---------------------------------------------------------------------------
-- Meters

create or replace function private.meter_view(m lic.meters)
returns api.meter
language sql
immutable
as $$
  select row(
    m.id, m.code, m.name, m.unit, m.aggregation, m.unique_property, m.metadata, m.archived_at, m.created_at,
    m.updated_at
  )::api.meter;
$$;
comment on function private.meter_view(lic.meters) is 'The public shape of a meter.';

-- The table's checks, made before writing so a bad value is a LINVL naming
-- its parameter rather than a constraint name.
create or replace function private.check_meter(m lic.meters)
returns void
language plpgsql
immutable
as $$
begin
  if m.code is null or m.code !~ '^[a-z0-9][a-z0-9._:-]{0,63}$' then
    raise exception using errcode = 'LINVL', column = 'code',
      message = 'code must be 1-64 characters of a-z, 0-9, ".", "_", ":" or "-", starting with a letter or digit';
  end if;
  if m.name is null or length(m.name) not between 1 and 200 then
    raise exception using errcode = 'LINVL', column = 'name', message = 'name must be 1-200 characters';
  end if;
  if length(m.unit) not between 1 and 50 then
    raise exception using errcode = 'LINVL', column = 'unit', message = 'unit must be 1-50 characters (or null)';
  end if;
  if m.aggregation is null or m.aggregation not in ('sum', 'count', 'max', 'unique_count', 'latest') then
    raise exception using errcode = 'LINVL', column = 'aggregation',
      message = 'aggregation must be one of sum, count, max, unique_count, latest';
  end if;
  if m.aggregation = 'unique_count' and m.unique_property is null then
    raise exception using errcode = 'LINVL', column = 'unique_property',
      message = 'a unique_count meter needs unique_property: the event property whose distinct values it counts';
  end if;
  if m.aggregation <> 'unique_count' and m.unique_property is not null then
    raise exception using errcode = 'LINVL', column = 'unique_property',
      message = 'unique_property is only for unique_count meters';
  end if;
  if m.unique_property !~ '^[A-Za-z0-9_.:-]{1,64}$' then
    raise exception using errcode = 'LINVL', column = 'unique_property',
      message = 'unique_property must be 1-64 characters of A-Z, a-z, 0-9, "_", ".", ":" or "-"';
  end if;
end;
$$;
comment on function private.check_meter(lic.meters) is
'Refuse a meter row with an invalid field, naming it. Errors: LINVL.';

create or replace function private.lock_meter(meter_id uuid)
returns lic.meters
language plpgsql
volatile
as $$
declare
  v_meter lic.meters;
begin
  select m.* into v_meter from lic.meters as m
  where m.account_id = private.context_account_id() and m.id = lock_meter.meter_id
  -- Not FOR UPDATE: the key never changes, so budgets being made on the
  -- meter (whose foreign key takes KEY SHARE) need not wait.
  for no key update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'meter_id', message = 'meter not found';
  end if;
  return v_meter;
end;
$$;
comment on function private.lock_meter(uuid) is
'The account''s meter with this id, locked for a change (FOR NO KEY UPDATE). Errors: LNTFD.';

-- By id or by code (exactly one): the meter a budget or a usage query names.
create or replace function private.find_meter(meter_id uuid, meter_code text)
returns lic.meters
language plpgsql
stable
as $$
declare
  v_meter lic.meters;
begin
  perform private.require_exactly_one(
    array['meter_id', 'meter_code'], array[meter_id is not null, meter_code is not null]
  );
  if meter_id is not null then
    select m.* into v_meter from lic.meters as m
    where m.account_id = private.context_account_id() and m.id = find_meter.meter_id;
  else
    select m.* into v_meter from lic.meters as m
    where m.account_id = private.context_account_id() and m.code = find_meter.meter_code;
  end if;
  if not found then
    raise exception using errcode = 'LNTFD', column = case when meter_id is null then 'meter_code' else 'meter_id' end,
      message = 'meter not found';
  end if;
  return v_meter;
end;
$$;
comment on function private.find_meter(uuid, text) is
'The account''s meter by id or by code (exactly one). Errors: LINVL, LNTFD.';

create or replace function api.create_meter(
  code text,
  name text,
  aggregation text,
  unit text default null,
  unique_property text default null,
  metadata jsonb default '{}'
)
returns api.meter
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_meter lic.meters;
  v_view api.meter;
begin
  v_meter.code := code;
  v_meter.name := name;
  v_meter.aggregation := aggregation;
  v_meter.unit := unit;
  v_meter.unique_property := unique_property;
  v_meter.metadata := private.write_metadata('{}', metadata);
  perform private.check_meter(v_meter);
  -- A duplicate code fails on the unique constraint: 23505 (409 already_exists).
  insert into lic.meters as m (account_id, code, name, unit, aggregation, unique_property, metadata)
  values (
    v_account_id, v_meter.code, v_meter.name, v_meter.unit, v_meter.aggregation, v_meter.unique_property,
    v_meter.metadata
  )
  returning m.* into v_meter;
  v_view := private.meter_view(v_meter);
  perform private.emit_event(v_account_id, 'meter.created', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.create_meter(text, text, text, text, text, jsonb) is
'Create a meter: code (unique, a-z 0-9 . _ : -; what usage events name), name, aggregation (sum, count, max, '
'unique_count, latest; fixed once created), unit (optional label), unique_property (the event property a '
'unique_count meter counts distinct values of; only for unique_count), metadata. Emits meter.created. '
'Errors: LINVL (422), 23505 (409) duplicate code.';

create or replace function api.list_meters(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  include_archived boolean default false
)
returns setof api.meter
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
begin
  if ending_before is null then
    return query
    select (private.meter_view(m)).*
    from lic.meters as m
    where
      m.account_id = v_account_id
      and (starting_after is null or m.id < starting_after)
      and (coalesce(include_archived, false) or m.archived_at is null)
    order by m.id desc
    limit v_rows;
  else
    return query
    select (p.meter).*
    from (
      select private.meter_view(m) as meter, m.id
      from lic.meters as m
      where
        m.account_id = v_account_id
        and m.id > ending_before
        and (coalesce(include_archived, false) or m.archived_at is null)
      order by m.id
      limit v_rows
    ) as p
    order by p.id desc;
  end if;
end;
$$;
comment on function api.list_meters(integer, uuid, uuid, boolean) is
'List the account''s meters newest first, archived ones only with include_archived, as a keyset page of up to '
'page_limit + 1 rows. Errors: LINVL (422).';

create or replace function api.get_meter(meter_id uuid default null, code text default null)
returns api.meter
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_meter lic.meters;
begin
  perform private.require_exactly_one(array['meter_id', 'code'], array[meter_id is not null, code is not null]);
  if meter_id is not null then
    select m.* into v_meter from lic.meters as m where m.account_id = v_account_id and m.id = get_meter.meter_id;
  else
    select m.* into v_meter from lic.meters as m where m.account_id = v_account_id and m.code = get_meter.code;
  end if;
  if not found then
    raise exception using errcode = 'LNTFD', column = case when code is null then 'meter_id' else 'code' end,
      message = 'meter not found';
  end if;
  return private.meter_view(v_meter);
end;
$$;
comment on function api.get_meter(uuid, text) is
'One meter of the account, by id or by code (exactly one), archived or not. Errors: LINVL (422), LNTFD (404).';

create or replace function api.update_meter(
  meter_id uuid,
  name text default null,
  unit text default null,
  metadata jsonb default null,
  clear text[] default '{}'
)
returns api.meter
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_old lic.meters := private.lock_meter(meter_id);
  v_new lic.meters := v_old;
  v_before api.meter := private.meter_view(v_old);
  v_view api.meter;
begin
  perform private.check_clear(clear, array['unit'], array_remove(array[
    case when unit is not null then 'unit' end
  ], null));
  v_new.name := coalesce(name, v_old.name);
  v_new.unit := case when 'unit' = any(clear) then null else coalesce(unit, v_old.unit) end;
  v_new.metadata := private.write_metadata(v_old.metadata, metadata, merge => true);
  perform private.check_meter(v_new);
  if to_jsonb(v_new) = to_jsonb(v_old) then
    return v_before;
  end if;
  update lic.meters as m
  set name = v_new.name, unit = v_new.unit, metadata = v_new.metadata, updated_at = now()
  where m.account_id = v_account_id and m.id = v_old.id
  returning m.* into v_new;
  v_view := private.meter_view(v_new);
  perform private.emit_event(
    v_account_id, 'meter.updated', to_jsonb(v_view), private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.update_meter(uuid, text, text, jsonb, text[]) is
'Change a meter''s name, unit or metadata (archived or not); its code, aggregation and unique_property are fixed. '
'A null argument leaves a field unchanged; clear => ''{unit}'' removes the unit. metadata is merged: given keys '
'are set, a key given as null is removed. Emits meter.updated when something changed. Errors: LNTFD (404), '
'LINVL (422).';

create or replace function api.archive_meter(meter_id uuid)
returns api.meter
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'developer');
  v_meter lic.meters := private.lock_meter(meter_id);
  v_before api.meter := private.meter_view(v_meter);
  v_view api.meter;
begin
  if v_meter.archived_at is not null then
    return v_before;
  end if;
  update lic.meters as m
  set archived_at = now(), updated_at = now()
  where m.account_id = v_account_id and m.id = v_meter.id
  returning m.* into v_meter;
  v_view := private.meter_view(v_meter);
  perform private.emit_event(
    v_account_id, 'meter.archived', to_jsonb(v_view), private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.archive_meter(uuid) is
'Archive a meter: ingest refuses its new events (meter_archived) and no budget can be made on it; its usage '
'history and existing budgets stay. Archiving it again returns it unchanged. Emits meter.archived. '
'Errors: LNTFD (404).';

-- ---------------------------------------------------------------------------
-- Budgets

create or replace function private.budget_view(b lic.budgets, at timestamptz default now())
returns api.budget
language plpgsql
stable
as $$
declare
  v_start timestamptz := private.budget_period_start(b.period, at);
  v_used numeric;
  v_code text;
begin
  select u.used into v_used
  from lic.budget_usage as u
  where u.account_id = b.account_id and u.budget_id = b.id and u.period_start = v_start;
  v_used := coalesce(v_used, 0);
  select m.code into v_code from lic.meters as m where m.account_id = b.account_id and m.id = b.meter_id;
  return row(
    b.id, b.meter_id, v_code, b.agent_id, b.license_id, b.period, b."limit", b.hard, b.thresholds, v_used,
    greatest(b."limit" - v_used, 0), v_start, private.budget_period_end(b.period, at), b.metadata, b.created_at,
    b.updated_at, case when b.license_id is not null and not b.own_events_only then 'all_subjects' else 'subject' end
  )::api.budget;
end;
$$;
comment on function private.budget_view(lic.budgets, timestamptz) is
'The public shape of a budget with the use of the period containing at (none recorded: 0 used); remaining is '
'never below 0 (a soft budget may pass its limit).';

-- Checks a budget's fields and returns its thresholds sorted (as stored).
create or replace function private.check_budget_fields(b lic.budgets)
returns integer[]
language plpgsql
immutable
as $$
begin
  if b.period is null or b.period not in ('hour', 'day', 'month') then
    raise exception using errcode = 'LINVL', column = 'period', message = 'period must be hour, day or month';
  end if;
  if b."limit" is null or b."limit" < 0 or b."limit" in ('NaN', 'Infinity') then
    raise exception using errcode = 'LINVL', column = 'limit', message = 'limit must be a number, 0 or more';
  end if;
  if b.hard is null then
    raise exception using errcode = 'LINVL', column = 'hard', message = 'hard must be true or false';
  end if;
  if b.thresholds is null or array_position(b.thresholds, null) is not null
    or not (1 <= all(b.thresholds) and 1000 >= all(b.thresholds)) then
    raise exception using errcode = 'LINVL', column = 'thresholds',
      message = 'thresholds must be percentages of the limit from 1 to 1000';
  end if;
  if cardinality(b.thresholds) > 10 then
    raise exception using errcode = 'LINVL', column = 'thresholds', message = 'at most 10 thresholds';
  end if;
  if cardinality(b.thresholds) <> (select count(distinct t) from unnest(b.thresholds) as t) then
    raise exception using errcode = 'LINVL', column = 'thresholds', message = 'thresholds must be distinct';
  end if;
  return array(select t from unnest(b.thresholds) as t order by t);
end;
$$;
comment on function private.check_budget_fields(lic.budgets) is
'Refuse a budget row with an invalid field, naming it; answer its thresholds sorted. Errors: LINVL.';

create or replace function private.lock_budget(budget_id uuid)
returns lic.budgets
language plpgsql
volatile
as $$
declare
  v_budget lic.budgets;
begin
  select b.* into v_budget from lic.budgets as b
  where b.account_id = private.context_account_id() and b.id = lock_budget.budget_id
  -- Not FOR UPDATE: an ingest adding the budget's usage row for a new period
  -- takes KEY SHARE through the foreign key and need not wait for a change of
  -- limit (a delete takes the stronger lock itself).
  for no key update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'budget_id', message = 'budget not found';
  end if;
  return v_budget;
end;
$$;
comment on function private.lock_budget(uuid) is
'The account''s budget with this id, locked for a change (FOR NO KEY UPDATE). Errors: LNTFD.';

-- What an agent token may read: budgets of the agent itself and of its license
-- (the ones its events are debited from). Null for any other kind of key.
create or replace function private.agent_reach(out agent_id uuid, out license_id uuid)
returns record
language plpgsql
stable
as $$
declare
  v_context record := private.current_context();
begin
  if v_context.kind = 'agent' then
    agent_id := v_context.principal_id;
    select a.license_id into license_id
    from lic.agents as a
    where a.account_id = v_context.account_id and a.id = v_context.principal_id;
  end if;
end;
$$;
comment on function private.agent_reach() is
'For an agent token: the agent and its license (null if none); for any other key: nulls.';

create or replace function api.create_budget(
  period text,
  "limit" numeric,
  meter_id uuid default null,
  meter_code text default null,
  agent_id uuid default null,
  license_id uuid default null,
  hard boolean default true,
  thresholds integer[] default '{}',
  metadata jsonb default '{}',
  scope text default null
)
returns api.budget
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_meter lic.meters;
  v_budget lic.budgets;
  v_view api.budget;
begin
  perform private.require_exactly_one(
    array['meter_id', 'meter_code'], array[meter_id is not null, meter_code is not null]
  );
  perform private.require_exactly_one(
    array['agent_id', 'license_id'], array[agent_id is not null, license_id is not null]
  );
  v_budget.period := period;
  v_budget."limit" := create_budget."limit";
  v_budget.hard := coalesce(hard, true);
  v_budget.thresholds := coalesce(thresholds, '{}');
  v_budget.metadata := private.write_metadata('{}', metadata);
  v_budget.thresholds := private.check_budget_fields(v_budget);
  if scope not in ('subject', 'all_subjects') or scope = 'all_subjects' and license_id is null then
    raise exception using errcode = 'LINVL', column = 'scope',
      message = 'scope must be subject or all_subjects (all_subjects only for a license''s budget)';
  end if;
  -- A license's budget counts all its subjects unless told otherwise.
  v_budget.own_events_only := license_id is not null and coalesce(scope = 'subject', false);
  v_meter := private.find_meter(meter_id, meter_code);
  if v_meter.archived_at is not null then
    raise exception using errcode = 'LSTAT', column = case when meter_id is null then 'meter_code' else 'meter_id' end,
      message = 'this meter is archived and takes no new budgets';
  end if;
  if agent_id is not null and not exists (
    select from lic.agents as a where a.account_id = v_account_id and a.id = create_budget.agent_id
  ) then
    raise exception using errcode = 'LNTFD', column = 'agent_id', message = 'agent not found';
  end if;
  if license_id is not null and not exists (
    select from lic.licenses as l where l.account_id = v_account_id and l.id = create_budget.license_id
  ) then
    raise exception using errcode = 'LNTFD', column = 'license_id', message = 'license not found';
  end if;
  insert into lic.budgets as b (
    account_id, meter_id, agent_id, license_id, period, "limit", hard, thresholds, metadata, own_events_only
  )
  values (
    v_account_id, v_meter.id, create_budget.agent_id, create_budget.license_id, v_budget.period, v_budget."limit",
    v_budget.hard, v_budget.thresholds, v_budget.metadata, v_budget.own_events_only
  )
  returning b.* into v_budget;
  v_view := private.budget_view(v_budget);
  perform private.emit_event(v_account_id, 'budget.created', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.create_budget(text, numeric, uuid, text, uuid, uuid, boolean, integer[], jsonb, text) is
'Create a budget: a limit on one meter (meter_id or meter_code) for one agent or one license (agent_id or '
'license_id) per calendar period in UTC (hour, day, month). scope: what it counts; an agent''s budget its own '
'events (subject); a license''s budget every event of the license, its agents'' and subject keys'' included '
'(all_subjects, the default), or only the license''s own events, those with no agent and no subject key '
'(subject). hard (default) refuses events that would pass the limit, soft accepts them and emits budget.exceeded; '
'thresholds are distinct percentages of the limit (1-1000, at most 10, stored sorted) that emit '
'budget.threshold_reached once per period. The answer carries the current period''s use. Emits budget.created. '
'Errors: LINVL (422), LNTFD (404) meter or subject, LSTAT (409) archived meter.';

create or replace function api.list_budgets(
  page_limit integer default 10,
  starting_after uuid default null,
  ending_before uuid default null,
  agent_id uuid default null,
  license_id uuid default null,
  meter_id uuid default null
)
returns setof api.budget
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'agent']);
  v_reach record := private.agent_reach();
  v_rows integer := private.page_rows(page_limit, starting_after, ending_before);
  v_where text := 'b.account_id = $1';
begin
  if v_reach.agent_id is not null then
    if agent_id is distinct from v_reach.agent_id and agent_id is not null then
      raise exception using errcode = 'LDNID', column = 'agent_id', message = 'an agent reads only its own budgets';
    end if;
    if license_id is distinct from v_reach.license_id and license_id is not null then
      raise exception using errcode = 'LDNID', column = 'license_id',
        message = 'an agent reads only its own budgets and its license''s';
    end if;
    v_where := v_where || ' and (b.agent_id = $8 or b.license_id = $9)';
  end if;
  -- Only the filters given become predicates (fixed text, values as
  -- parameters), so each call is planned for the index it can use.
  if agent_id is not null then
    v_where := v_where || ' and b.agent_id = $2';
  end if;
  if license_id is not null then
    v_where := v_where || ' and b.license_id = $3';
  end if;
  if meter_id is not null then
    v_where := v_where || ' and b.meter_id = $4';
  end if;
  if ending_before is null then
    if starting_after is not null then
      v_where := v_where || ' and b.id < $5';
    end if;
    return query execute
      'select (private.budget_view(b)).* from lic.budgets as b where ' || v_where || ' order by b.id desc limit $7'
    using v_account_id, agent_id, license_id, meter_id, starting_after, ending_before, v_rows, v_reach.agent_id,
      v_reach.license_id;
  else
    return query execute
      'select (p.budget).* from (select private.budget_view(b) as budget, b.id from lic.budgets as b where '
      || v_where || ' and b.id > $6 order by b.id limit $7) as p order by p.id desc'
    using v_account_id, agent_id, license_id, meter_id, starting_after, ending_before, v_rows, v_reach.agent_id,
      v_reach.license_id;
  end if;
end;
$$;
comment on function api.list_budgets(integer, uuid, uuid, uuid, uuid, uuid) is
'List the account''s budgets newest first, each with its current period''s use, as a keyset page of up to '
'page_limit + 1 rows; filters agent_id, license_id, meter_id. An agent token lists only its own budgets and its '
'license''s. Errors: LINVL (422), LDNID (403) an agent asking for another subject.';

create or replace function api.get_budget(budget_id uuid)
returns api.budget
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(kinds => array['secret', 'agent']);
  v_reach record := private.agent_reach();
  v_budget lic.budgets;
begin
  select b.* into v_budget from lic.budgets as b where b.account_id = v_account_id and b.id = get_budget.budget_id;
  -- Another subject's budget is as absent to an agent as a missing one.
  if not found or (
    v_reach.agent_id is not null
    and not coalesce(v_budget.agent_id = v_reach.agent_id or v_budget.license_id = v_reach.license_id, false)
  ) then
    raise exception using errcode = 'LNTFD', column = 'budget_id', message = 'budget not found';
  end if;
  return private.budget_view(v_budget);
end;
$$;
comment on function api.get_budget(uuid) is
'One budget of the account with its current period''s use. An agent token reads only its own budgets and its '
'license''s. Errors: LNTFD (404).';

create or replace function api.update_budget(
  budget_id uuid,
  "limit" numeric default null,
  hard boolean default null,
  thresholds integer[] default null,
  metadata jsonb default null
)
returns api.budget
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_old lic.budgets := private.lock_budget(budget_id);
  v_new lic.budgets := v_old;
  v_before api.budget := private.budget_view(v_old);
  v_view api.budget;
begin
  v_new."limit" := coalesce(update_budget."limit", v_old."limit");
  v_new.hard := coalesce(hard, v_old.hard);
  v_new.thresholds := coalesce(thresholds, v_old.thresholds);
  v_new.metadata := private.write_metadata(v_old.metadata, metadata, merge => true);
  v_new.thresholds := private.check_budget_fields(v_new);
  if to_jsonb(v_new) = to_jsonb(v_old) then
    return v_before;
  end if;
  update lic.budgets as b
  set
    "limit" = v_new."limit",
    hard = v_new.hard,
    thresholds = v_new.thresholds,
    metadata = v_new.metadata,
    updated_at = now()
  where b.account_id = v_account_id and b.id = v_old.id
  returning b.* into v_new;
  v_view := private.budget_view(v_new);
  perform private.emit_event(
    v_account_id, 'budget.updated', to_jsonb(v_view),
    private.previous_attributes(to_jsonb(v_before), to_jsonb(v_view))
  );
  return v_view;
end;
$$;
comment on function api.update_budget(uuid, numeric, boolean, integer[], jsonb) is
'Change a budget''s limit, hard/soft, thresholds (replaced, stored sorted) or metadata (merged: given keys set, '
'a key given as null removed); a null argument leaves a field unchanged. Its meter, subject and period are '
'fixed. The current period''s use is kept: a lower limit may leave nothing remaining. Emits budget.updated when '
'something changed. Errors: LNTFD (404), LINVL (422).';

create or replace function api.delete_budget(budget_id uuid)
returns api.budget
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_budget lic.budgets := private.lock_budget(budget_id);
  v_view api.budget := private.budget_view(v_budget);
begin
  -- Its usage rows go with it (on delete cascade).
  delete from lic.budgets as b where b.account_id = v_account_id and b.id = v_budget.id;
  perform private.emit_event(v_account_id, 'budget.deleted', to_jsonb(v_view));
  return v_view;
end;
$$;
comment on function api.delete_budget(uuid) is
'Delete a budget and its recorded use; the answer is the budget as it was. Events of its subject are no longer '
'limited by it. Emits budget.deleted. Errors: LNTFD (404).';

-- ---------------------------------------------------------------------------
-- Usage

create or replace function api.usage(
  meter_id uuid default null,
  meter_code text default null,
  starting_at timestamptz default null,
  ending_at timestamptz default null,
  granularity text default 'day',
  agent_id uuid default null,
  license_id uuid default null,
  subject_key text default null,
  group_by_subject boolean default false
)
returns setof api.usage_row
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  -- Buckets a query may span, and rows it may answer.
  c_max_buckets constant integer := 10000;
  c_max_rows constant integer := 10000;
  c_none constant uuid := '00000000-0000-0000-0000-000000000000';
  v_account_id uuid := private.require_account(kinds => array['secret', 'agent']);
  v_reach record := private.agent_reach();
  v_agent_id uuid := agent_id;
  v_meter lic.meters;
  v_start timestamptz;
  v_end timestamptz;
  v_buckets numeric;
  v_grouped boolean := coalesce(group_by_subject, false);
  v_where text := 'r.account_id = $1 and r.meter_id = $2 and r.hour >= $4 and r.hour < $5';
  v_subject text;
  v_group text;
  v_value text;
  v_query text;
  v_count bigint;
begin
  if v_reach.agent_id is not null then
    if v_agent_id is distinct from v_reach.agent_id and v_agent_id is not null then
      raise exception using errcode = 'LDNID', column = 'agent_id', message = 'an agent reads only its own usage';
    end if;
    v_agent_id := v_reach.agent_id;
  end if;
  v_meter := private.find_meter(meter_id, meter_code);
  if granularity is null or granularity not in ('hour', 'day', 'month') then
    raise exception using errcode = 'LINVL', column = 'granularity', message = 'granularity must be hour, day or month';
  end if;
  if starting_at is null or not isfinite(starting_at) then
    raise exception using errcode = 'LINVL', column = 'starting_at', message = 'starting_at must be an instant';
  end if;
  if ending_at is null or not isfinite(ending_at) then
    raise exception using errcode = 'LINVL', column = 'ending_at', message = 'ending_at must be an instant';
  end if;
  if ending_at <= starting_at then
    raise exception using errcode = 'LINVL', column = 'ending_at', message = 'ending_at must be after starting_at';
  end if;
  if v_agent_id = c_none or license_id = c_none then
    raise exception using errcode = 'LINVL', column = case when license_id = c_none then 'license_id' else 'agent_id' end,
      message = 'the nil uuid names no subject';
  end if;
  if length(subject_key) not between 1 and 255 then
    raise exception using errcode = 'LINVL', column = 'subject_key', message = 'subject_key must be 1-255 characters';
  end if;
  -- Whole buckets: every bucket the range touches, from its calendar start.
  v_start := private.budget_period_start(granularity, starting_at);
  v_end := private.budget_period_start(granularity, ending_at);
  if v_end < ending_at then
    v_end := private.budget_period_end(granularity, ending_at);
  end if;
  v_buckets := case granularity
    when 'hour' then extract(epoch from v_end - v_start) / 3600
    when 'day' then extract(epoch from v_end - v_start) / 86400
    else
      (extract(year from v_end at time zone 'UTC') - extract(year from v_start at time zone 'UTC')) * 12
      + extract(month from v_end at time zone 'UTC') - extract(month from v_start at time zone 'UTC')
  end;
  if v_buckets > c_max_buckets then
    raise exception using errcode = 'LINVL', column = 'ending_at',
      message = format('the range spans %s %s buckets; at most %s', v_buckets, granularity, c_max_buckets);
  end if;

  -- Only the filters given become predicates (fixed text, values as
  -- parameters): each call is planned for its index — the primary key
  -- (account, meter, hour, …), or (account, license|agent, meter, hour).
  if v_agent_id is not null then
    v_where := v_where || ' and r.agent_id = $6';
  end if;
  if license_id is not null then
    v_where := v_where || ' and r.license_id = $7';
  end if;
  if subject_key is not null then
    v_where := v_where || ' and r.subject_key = $8';
  end if;
  -- Grouped by the rollups' subject (agent, license, subject key), or one
  -- row per bucket with the "none" keys standing in for the subject.
  if v_grouped then
    v_subject := 'r.agent_id, r.license_id, r.subject_key';
    v_group := 'group by 1, 2, 3, 4';
  else
    v_subject := '$9::uuid as agent_id, $9::uuid as license_id, ''''::text as subject_key';
    v_group := 'group by 1';
  end if;
  v_value := case v_meter.aggregation
    when 'sum' then 'sum(r.quantity_sum)'
    when 'count' then 'sum(r.event_count)::numeric'
    when 'max' then 'max(r.quantity_max)'
    when 'latest' then '(array_agg(r.latest_quantity order by r.latest_at desc, r.latest_quantity desc))[1]'
    else 'null::numeric'
  end;
  v_query :=
    'select b.period_start, nullif(b.agent_id, $9), nullif(b.license_id, $9), nullif(b.subject_key, ''''), '
    || case when v_meter.aggregation = 'unique_count' then 'coalesce(v.value, 0)::numeric' else 'b.value' end
    || ', b.event_count from (select date_trunc($3, r.hour at time zone ''UTC'') at time zone ''UTC'' as period_start, '
    || v_subject || ', sum(r.event_count)::bigint as event_count, ' || v_value || ' as value '
    || 'from lic.metering_rollups as r where ' || v_where || ' ' || v_group || ') as b ';
  if v_meter.aggregation = 'unique_count' then
    -- Distinct values over the whole bucket, not a sum of hourly counts.
    v_query := v_query
      || 'left join (select date_trunc($3, r.hour at time zone ''UTC'') at time zone ''UTC'' as period_start, '
      || v_subject || ', count(distinct r.value) as value '
      || 'from lic.metering_rollup_values as r where ' || v_where || ' ' || v_group || ') as v '
      || 'on v.period_start = b.period_start and v.agent_id = b.agent_id and v.license_id = b.license_id '
      || 'and v.subject_key = b.subject_key ';
  end if;
  v_query := v_query || 'order by b.period_start, b.agent_id, b.license_id, b.subject_key limit $10';
  return query execute v_query
  using v_account_id, v_meter.id, granularity, v_start, v_end, v_agent_id, license_id, subject_key, c_none,
    c_max_rows + 1;
  get diagnostics v_count = row_count;
  if v_count > c_max_rows then
    raise exception using errcode = 'LINVL', column = 'group_by_subject',
      message = format('the answer would have more than %s rows; narrow the range or filter by subject', c_max_rows);
  end if;
end;
$$;
comment on function api.usage(uuid, text, timestamptz, timestamptz, text, uuid, uuid, text, boolean) is
'Usage of a meter (meter_id or meter_code) from the hourly rollups, in calendar buckets of granularity (hour, '
'day, month; UTC): every bucket the range [starting_at, ending_at) touches, whole, at most 10,000; only buckets '
'with events are answered, in order. value follows the meter''s aggregation: sum of quantities, count of events, '
'max quantity, the latest quantity, or the distinct values of its property over the bucket (unique_count). '
'Filters: agent_id, license_id (every event of the license), subject_key; group_by_subject answers one row per '
'bucket and subject (agent, license, subject key; null where an event had none), else the subject columns are '
'null. An agent token reads only its own usage. Errors: LINVL (422), LNTFD (404) meter, LDNID (403) an agent '
'asking for another.';
