-- Partition upkeep of lic.metering_events (DESIGN §5), run by `licentric
-- worker`: monthly partitions lic.metering_events_YYYYMM (UTC months) made
-- ahead, the rows the DEFAULT partition caught moved into their month's
-- partition when it is made, and retention by dropping whole months (the
-- hourly rollups are other tables and stay).
--
-- A partition is reached through its parent, whose row level security and
-- tenant policies apply there. A partition grants nothing to any role but its
-- owner, and has row level security enabled and forced too, with one policy:
-- its owner may move rows (private.secure_partition; tests/pgtap
-- 000_structure.sql, 420_metering_partitions.sql).
--
-- Making, attaching and dropping partitions is DDL on lic.metering_events,
-- which only its owner may do, so the two worker functions are owned by
-- lic_owner, not lic_maint (the one exception in functions/99_privileges.sql,
-- decision 29); only lic_worker may execute them, and they take no instant:
-- they read the clock and call the private helpers below, which run as their
-- caller (security invoker), so as lic_owner. The DELETE that moves rows out
-- of the DEFAULT partition therefore runs as lic_owner, the one role the
-- append-only trigger (private.tg_metering_events__append_only) lets delete.

-- Row level security for a partition, as its parent has it: enabled and
-- forced, so its owner too sees only what a policy lets it. The one policy
-- is the upkeep's (lic_owner): it reads and empties the DEFAULT partition and
-- fills a new one. Queries through the parent use the parent's policies; a
-- direct read by any other role finds no policy, so no row. Called for a new
-- partition by the upkeep and for every existing one by policies/00_tenant.sql
-- (policies are made anew on every migrate).
create or replace function private.secure_partition(partition regclass)
returns void
language plpgsql
volatile
security invoker
as $$
begin
  execute format('alter table %s enable row level security, force row level security', partition);
  execute format(
    'create policy %I on %s as permissive for all to lic_owner using (true) with check (true)',
    (select c.relname from pg_catalog.pg_class as c where c.oid = partition) || '__all__owner', partition
  );
end;
$$;

-- Upkeep at a given instant: worker.ensure_metering_partitions runs it at
-- now(); tests that need another instant call it as lic_owner.
create or replace function private.ensure_metering_partitions(at timestamptz, months_ahead integer)
returns integer
language plpgsql
volatile
security invoker
as $$
declare
  -- Month arithmetic on UTC wall-clock time, whatever the session's time zone.
  v_first timestamp;
  v_default regclass;
  v_months timestamp [];
  v_month timestamp;
  v_name text;
  v_count integer := 0;
begin
  if months_ahead is null or months_ahead not between 0 and 120 then
    raise exception using
      errcode = 'LINVL', column = 'months_ahead', message = 'months_ahead must be between 0 and 120';
  end if;
  -- One upkeep at a time; another one running makes the same partitions.
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('worker.metering_partitions')) then
    return 0;
  end if;
  v_first := pg_catalog.date_trunc('month', ensure_metering_partitions.at at time zone 'UTC');

  -- The months of the window without their partition, read from the catalog
  -- alone: a call with nothing to make takes no lock and reads no event.
  select coalesce(array_agg(m.month order by m.month), '{}') into v_months
  from pg_catalog.generate_series(
    v_first, v_first + pg_catalog.make_interval(months => months_ahead), interval '1 month'
  ) as m (month)
  where not exists (
    select from pg_catalog.pg_inherits as i
    join pg_catalog.pg_class as c on c.oid = i.inhrelid
    where
      i.inhparent = 'lic.metering_events'::regclass
      and c.relname = 'metering_events_' || pg_catalog.to_char(m.month, 'YYYYMM')
  );
  if pg_catalog.cardinality(v_months) = 0 then
    return 0;
  end if;

  -- Nothing reads or writes events while partitions change (milliseconds,
  -- once a month): an insert routed on the partitions as they were before
  -- could otherwise reach the DEFAULT partition with an event of a month
  -- that now has its own, and fail its partition check.
  lock table lic.metering_events in access exclusive mode;
  select nullif(p.partdefid, 0)::regclass into v_default
  from pg_catalog.pg_partitioned_table as p
  where p.partrelid = 'lic.metering_events'::regclass;
  if v_default is not null then
    -- Months before the window whose events the DEFAULT partition caught (it
    -- takes everything until the worker first runs) get their partition too,
    -- so the DEFAULT partition drains and retention reaches those events.
    execute format(
      $sql$
        select array(
          select w.month from unnest($1) as w (month)
          union
          select pg_catalog.date_trunc('month', d.occurred_at at time zone 'UTC') from %s as d
          where d.occurred_at < $2 at time zone 'UTC'
          order by 1
        )
      $sql$,
      v_default
    ) into v_months using v_months, v_first;
  end if;

  foreach v_month in array v_months loop
    v_name := 'metering_events_' || pg_catalog.to_char(v_month, 'YYYYMM');
    -- Made standalone, filled with the month's events from the DEFAULT
    -- partition, then attached: attaching scans the DEFAULT partition, which
    -- must no longer hold any row of the month.
    execute format('create table lic.%I (like lic.metering_events including all)', v_name);
    perform private.secure_partition(format('lic.%I', v_name)::regclass);
    if v_default is not null then
      execute format(
        'insert into lic.%I select d.* from %s as d where d.occurred_at >= $1 and d.occurred_at < $2',
        v_name, v_default
      ) using v_month at time zone 'UTC', (v_month + interval '1 month') at time zone 'UTC';
      execute format(
        'delete from %s as d where d.occurred_at >= $1 and d.occurred_at < $2', v_default
      ) using v_month at time zone 'UTC', (v_month + interval '1 month') at time zone 'UTC';
    end if;
    -- Bounds written in ISO form with their offset: read the same under any DateStyle or TimeZone.
    execute format(
      'alter table lic.metering_events attach partition lic.%I for values from (%L) to (%L)',
      v_name,
      pg_catalog.to_char(v_month, 'YYYY-MM-DD HH24:MI:SS') || '+00',
      pg_catalog.to_char(v_month + interval '1 month', 'YYYY-MM-DD HH24:MI:SS') || '+00'
    );
    v_count := v_count + 1;
  end loop;

  return v_count;
end;
$$;

create or replace function worker.ensure_metering_partitions(months_ahead integer default 3)
returns integer
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
-- DDL waits for no long transaction: it fails, and the worker tries again on its next tick.
set lock_timeout = '2s'
as $$
  select private.ensure_metering_partitions(
    at => pg_catalog.now(), months_ahead => ensure_metering_partitions.months_ahead
  );
$$;
comment on function worker.ensure_metering_partitions(integer) is
'Make the monthly partitions lic.metering_events_YYYYMM (UTC months) that are missing, from this month to '
'months_ahead months after it, and one for every earlier month whose events the DEFAULT partition holds; the '
'DEFAULT partition''s events of a new partition''s month move into it in the same transaction. Partitions are '
'recognised by name; each is made with row level security enabled and forced. Returns how many it made (0 too '
'when another upkeep holds the lock). Runs as the table owner, lic_owner. Errors: LINVL months_ahead outside '
'0..120; 55P03 when a lock is not had in 2 s.';

-- Retention at a given instant: worker.drop_metering_partitions runs it at
-- now(); tests that need another instant call it as lic_owner.
create or replace function private.drop_metering_partitions(at timestamptz, retain_months integer)
returns integer
language plpgsql
volatile
security invoker
as $$
declare
  v_cutoff timestamptz;
  v_part record;
  v_count integer := 0;
begin
  -- Ingest accepts events up to 35 days old: two months always cover them.
  if retain_months is null or retain_months not between 2 and 1200 then
    raise exception using
      errcode = 'LINVL', column = 'retain_months', message = 'retain_months must be between 2 and 1200';
  end if;
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('worker.metering_partitions')) then
    return 0;
  end if;
  v_cutoff := (
    pg_catalog.date_trunc('month', drop_metering_partitions.at at time zone 'UTC')
    - pg_catalog.make_interval(months => retain_months)
  ) at time zone 'UTC';

  -- Every partition whose upper bound is at or before the cutoff; the DEFAULT
  -- partition has no bound and is never one of them.
  for v_part in
    select b.name
    from (
      select
        c.oid::regclass as name,
        (
          pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), $re$ TO \('([^']+)'\)$re$)
        )[1]::timestamptz as upper_bound
      from pg_catalog.pg_inherits as i
      join pg_catalog.pg_class as c on c.oid = i.inhrelid
      where i.inhparent = 'lic.metering_events'::regclass
    ) as b
    where b.upper_bound <= v_cutoff
    order by b.upper_bound
  loop
    execute format('alter table lic.metering_events detach partition %s', v_part.name);
    execute format('drop table %s', v_part.name);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

create or replace function worker.drop_metering_partitions(retain_months integer)
returns integer
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '2s'
as $$
  select private.drop_metering_partitions(
    at => pg_catalog.now(), retain_months => drop_metering_partitions.retain_months
  );
$$;
comment on function worker.drop_metering_partitions(integer) is
'Detach and drop the partitions of lic.metering_events that end at or before the start of the UTC month '
'retain_months months before this month (never the DEFAULT partition; the hourly rollups stay). Returns '
'how many it dropped (0 too when another upkeep holds the lock). Runs as the table owner, lic_owner. Errors: '
'LINVL retain_months outside 2..1200; 55P03 when a lock is not had in 2 s.';
