-- Partition upkeep of lic.metering_events: worker.ensure_metering_partitions
-- and worker.drop_metering_partitions, run as lic_worker (the functions run
-- as the table owner, lic_owner, at now()). The tests that fix the instant
-- call their private helpers as lic_owner, as the worker functions do.
-- Events are written as the superuser unless the test is about ingest; the
-- fixed times are far ahead of any real event.
begin;
select plan(51);

-- Catalog names and expressions come in the "C" collation; the tests that
-- compare them with literals collate them to the default one.
create temporary view partitions as
select
  c.relname::text as name,
  pg_catalog.pg_get_expr(c.relpartbound, c.oid) as bound
from pg_catalog.pg_inherits as i
inner join pg_catalog.pg_class as c on i.inhrelid = c.oid
where i.inhparent = 'lic.metering_events'::regclass;

create temporary view event_places as
select
  e.id,
  e.tableoid::regclass::text as partition
from lic.metering_events as e;

-- The functions
select ok(
  (
    select
      pg_catalog.bool_and(
        p.prosecdef and p.proowner = 'lic_owner'::regrole
        and 'search_path=pg_catalog, pg_temp' = any(p.proconfig)
      )
    from pg_catalog.pg_proc as p
    where
      p.oid in (
        'worker.ensure_metering_partitions(integer)'::regprocedure,
        'worker.drop_metering_partitions(integer)'::regprocedure
      )
  ),
  'the upkeep functions are security definer, owned by lic_owner (the table owner), with a pinned search_path'
);
select ok(
  has_function_privilege('lic_worker', 'worker.ensure_metering_partitions(integer)', 'execute')
  and has_function_privilege('lic_worker', 'worker.drop_metering_partitions(integer)', 'execute'),
  'lic_worker may run both'
);
select is_empty(
  $$
    select r.role || ' ' || f.fn::text
    from (values ('lic_app'), ('lic_definer'), ('lic_maint'), ('lic_reporting')) as r (role)
    cross join (
      values
      ('worker.ensure_metering_partitions(integer)'::regprocedure),
      ('worker.drop_metering_partitions(integer)'::regprocedure)
    ) as f (fn)
    where has_function_privilege(r.role, f.fn, 'execute')
  $$,
  'no other lic role may run them'
);
set local role lic_app;
select throws_ok(
  'select worker.ensure_metering_partitions()', '42501', null, 'lic_app calling partition upkeep is refused'
);
select tests.clear_context();
-- The worker's clock is its own: an instant from lic_worker once dropped
-- every tenant's events (issue 12).
set local role lic_worker;
select throws_ok(
  $$select worker.drop_metering_partitions(retain_months => 2, at => '2300-01-01')$$, '42883', null,
  'lic_worker cannot choose the instant of the retention drop'
);
select throws_ok(
  $$select worker.ensure_metering_partitions(months_ahead => 0, at => '2300-01-01')$$, '42883', null,
  '... nor of the upkeep'
);
select tests.clear_context();
-- The helpers that take the instant run as their caller: only the table
-- owner, lic_owner, may do what they do (decision 29).
select ok(
  (
    select pg_catalog.bool_and(not p.prosecdef)
    from pg_catalog.pg_proc as p
    where
      p.oid in (
        'private.ensure_metering_partitions(timestamptz, integer)'::regprocedure,
        'private.drop_metering_partitions(timestamptz, integer)'::regprocedure,
        'private.secure_partition(regclass)'::regprocedure
      )
  ),
  'the private upkeep helpers are security invoker'
);

-- Ingest before any partition exists: the DEFAULT partition takes the event.
select is_empty(
  'select * from partitions where bound <> ''DEFAULT''', 'a fresh database has only the DEFAULT partition'
);
select from tests.create_account('A');
select from tests.create_account('B');
insert into lic.meters (account_id, code, name, aggregation)
select
  a.account_id,
  'tokens' as code,
  'Tokens' as name,
  'sum' as aggregation
from tests.accounts as a;
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.ingest_events('[{"id": "now-1", "meter": "tokens", "subject_key": "u1", "quantity": 7}]') #>> '{data,0,status}'),
  'accepted',
  'an event is ingested while no monthly partition exists'
);
select tests.clear_context();
select results_eq(
  'select partition from event_places where id = ''now-1''',
  array['lic.metering_events_default'],
  '... and the DEFAULT partition holds it'
);

-- Its month's partition made later takes it over, in the same transaction.
set local role lic_worker;
select is(
  worker.ensure_metering_partitions(months_ahead => 0), 1,
  'ensure_metering_partitions(months_ahead => 0) makes the current month''s partition'
);
select tests.clear_context();
select results_eq(
  'select partition from event_places where id = ''now-1''',
  array['lic.metering_events_' || to_char(now() at time zone 'UTC', 'YYYYMM')],
  'the event moved out of the DEFAULT (forced row level security) partition into its month''s partition'
);
select ok(
  (
    select c.relrowsecurity and c.relforcerowsecurity
    from pg_catalog.pg_class as c
    where c.oid = ('lic.metering_events_' || to_char(now() at time zone 'UTC', 'YYYYMM'))::regclass
  ),
  'the new partition has row level security enabled and forced from the start'
);
select results_eq(
  $$
    select
      p.policyname::text collate "default", p.permissive collate "default", p.cmd collate "default",
      p.roles::text collate "default", p.qual collate "default", p.with_check collate "default"
    from pg_catalog.pg_policies as p
    where p.schemaname = 'lic' and p.tablename = 'metering_events_' || to_char(now() at time zone 'UTC', 'YYYYMM')
  $$,
  $$
    values (
      'metering_events_' || to_char(now() at time zone 'UTC', 'YYYYMM') || '__all__owner',
      'PERMISSIVE', 'ALL', '{lic_owner}', 'true', 'true'
    )
  $$,
  '... and one policy, for the upkeep (lic_owner)'
);
-- Through the parent, its policies apply as before.
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.ingest_events('[{"id": "now-2", "meter": "tokens", "subject_key": "u1", "quantity": 1}]') #>> '{data,0,status}'),
  'accepted',
  'an event is ingested into the month''s new partition'
);
select tests.clear_context();
select results_eq(
  'select partition from event_places where id = ''now-2''',
  array['lic.metering_events_' || to_char(now() at time zone 'UTC', 'YYYYMM')],
  '... which holds it'
);
select is(
  (select sum(r.quantity_sum) from lic.metering_rollups as r),
  (select sum(e.quantity) from lic.metering_events as e),
  'sum(rollups) = sum(events) still holds after the move'
);

-- Events outside every partition: one in an earlier month, one in the
-- window made below (its last instant), one beyond it.
insert into lic.metering_events (account_id, id, meter_id, subject_key, quantity, occurred_at)
select
  m.account_id,
  e.id,
  m.id as meter_id,
  'u1' as subject_key,
  1 as quantity,
  e.occurred_at
from lic.meters as m
cross join (
  values
  ('past', '2030-11-20 00:00:00+00'::timestamptz),
  ('january', '2031-01-31 23:59:59.999999+00'),
  ('may', '2031-05-03 10:00:00+00')
) as e (id, occurred_at)
where m.account_id = tests.account_id('A');
select results_eq(
  'select partition from event_places where id in (''past'', ''january'', ''may'') order by id',
  array['lic.metering_events_default', 'lic.metering_events_default', 'lic.metering_events_default'],
  'events no partition covers land in the DEFAULT partition'
);

-- Creation ahead: the month of at and months_ahead more, plus the earlier
-- month the DEFAULT partition holds events of. UTC months whatever the
-- session's time zone.
set local timezone = 'America/New_York';
set local role lic_owner;
select is(
  private.ensure_metering_partitions(at => '2031-01-15 12:00:00+00', months_ahead => 3), 5,
  'three months ahead of January 2031 makes January to April, and November 2030 for the event the DEFAULT '
  'partition held'
);
select tests.clear_context();
set local timezone = 'UTC';
select results_eq(
  $$
    select name collate "default", bound collate "default" from partitions
    where name ~ '^metering_events_203' order by name
  $$,
  $$
    values
    ('metering_events_203011', 'FOR VALUES FROM (''2030-11-01 00:00:00+00'') TO (''2030-12-01 00:00:00+00'')'),
    ('metering_events_203101', 'FOR VALUES FROM (''2031-01-01 00:00:00+00'') TO (''2031-02-01 00:00:00+00'')'),
    ('metering_events_203102', 'FOR VALUES FROM (''2031-02-01 00:00:00+00'') TO (''2031-03-01 00:00:00+00'')'),
    ('metering_events_203103', 'FOR VALUES FROM (''2031-03-01 00:00:00+00'') TO (''2031-04-01 00:00:00+00'')'),
    ('metering_events_203104', 'FOR VALUES FROM (''2031-04-01 00:00:00+00'') TO (''2031-05-01 00:00:00+00'')')
  $$,
  'the partitions are named lic.metering_events_YYYYMM and bounded by UTC month starts'
);
select results_eq(
  'select id, partition from event_places where id in (''past'', ''january'', ''may'') order by id',
  $$
    values
    ('january', 'lic.metering_events_203101'), ('may', 'lic.metering_events_default'),
    ('past', 'lic.metering_events_203011')
  $$,
  'the DEFAULT partition''s events of the new months moved into them; the one beyond the window stayed'
);
select is(
  (select count(*)::integer from lic.metering_events), 5, 'no event was lost or copied by the moves'
);
select ok(
  (
    select pg_catalog.bool_and(t.tgenabled = 'O')
    from (values ('lic.metering_events_203101'::regclass), ('lic.metering_events_203102'::regclass)) as p (tbl)
    left join pg_catalog.pg_trigger as t on p.tbl = t.tgrelid and t.tgname = 'metering_events__append_only'
  ),
  'the new partitions carry the append-only trigger'
);

-- Idempotent.
set local role lic_owner;
select is(
  private.ensure_metering_partitions(at => '2031-01-15 12:00:00+00', months_ahead => 3), 0,
  'a second call makes nothing'
);
select is(
  private.ensure_metering_partitions(at => '2031-02-28 23:00:00+00', months_ahead => 2), 0,
  '... nor does a call whose window is already covered'
);
select tests.clear_context();
select is((select count(*)::integer from partitions), 7, '... and the partitions are unchanged');

-- Growing the window moves the event beyond it.
set local role lic_owner;
select is(
  private.ensure_metering_partitions(at => '2031-01-15 12:00:00+00', months_ahead => 5), 2,
  'five months ahead makes May and June'
);
select tests.clear_context();
select results_eq(
  'select partition from event_places where id = ''may''',
  array['lic.metering_events_203105'],
  'the May event left the DEFAULT partition for May''s partition'
);
select is_empty('select * from lic.metering_events_default', 'the DEFAULT partition is empty');

-- The month is the UTC month: 00:30 on 1 July in Berlin is still June in UTC.
set local timezone = 'Europe/Berlin';
set local role lic_owner;
select is(
  private.ensure_metering_partitions(at => '2031-07-01 00:30:00+02', months_ahead => 0), 0,
  'at 22:30 UTC on 30 June the current month is June, which exists'
);
select is(
  private.ensure_metering_partitions(at => '2031-07-01 00:30:00+00', months_ahead => 0), 1,
  'at 00:30 UTC on 1 July it is July, which is made'
);
select tests.clear_context();
select ok(
  exists (
    select from partitions
    where name = 'metering_events_203107'
  ), '... named metering_events_203107'
);

-- Partitions do not weaken tenancy: no role reaches one directly, and
-- through the parent each tenant sees only its own events.
select is_empty(
  $$
    select r.role || ' ' || p.name
    from partitions as p
    cross join (values ('lic_definer'), ('lic_app'), ('lic_maint'), ('lic_worker'), ('lic_reporting')) as r (role)
    where
      has_table_privilege(r.role, 'lic.' || p.name, 'select, insert, update, delete, truncate, references, trigger')
      or has_any_column_privilege(r.role, 'lic.' || p.name, 'select, insert, update, references')
  $$,
  'no lic role holds any privilege on a partition, old or new'
);
select ok(
  (
    select pg_catalog.bool_and(c.relowner = 'lic_owner'::regrole and c.relacl is null)
    from pg_catalog.pg_class as c
    where c.oid in (select ('lic.' || p.name)::regclass from partitions as p)
  ),
  'every partition is owned by lic_owner with the owner-only default ACL'
);
insert into lic.metering_events (account_id, id, meter_id, subject_key, quantity, occurred_at)
select
  m.account_id,
  'b-january' as id,
  m.id as meter_id,
  'u9' as subject_key,
  5 as quantity,
  '2031-01-10 00:00:00+00' as occurred_at
from lic.meters as m
where m.account_id = tests.account_id('B');
select tests.act_as_definer(tests.account_id('A'));
select throws_ok(
  'select count(*) from lic.metering_events_203101', '42501', null,
  'lic_definer reading a partition directly is refused'
);
select tests.act_as_definer(tests.account_id('A'));
select results_eq(
  $$
    select id from lic.metering_events
    where occurred_at >= '2031-01-01 00:00:00+00' and occurred_at < '2031-02-01 00:00:00+00'
  $$,
  array['january'],
  'through the parent, lic_definer with A''s context sees only A''s events of the month'
);
select tests.clear_context();
set local role lic_reporting;
select throws_ok(
  'select count(*) from lic.metering_events_203101', '42501', null,
  'lic_reporting reading a partition directly is refused'
);
select tests.clear_context();
set local role lic_app;
select throws_ok(
  'select count(*) from lic.metering_events_203101', '42501', null,
  'lic_app reading a partition directly is refused'
);
select tests.clear_context();

-- Only the upkeep (lic_owner) may delete events: not even the superuser
-- running this test, directly on a partition.
select throws_ok(
  $$delete from lic.metering_events_203101 where id = 'january'$$, 'LSTAT', null,
  'a DELETE on a partition is refused by the append-only trigger'
);

-- A role that may execute the private helpers but does not own the table
-- gains nothing by calling them.
set local role lic_maint;
select throws_ok(
  $$select private.drop_metering_partitions(at => '2300-01-01', retain_months => 2)$$, '42501', null,
  'lic_maint, which may execute private helpers, cannot drop partitions through them'
);
select tests.clear_context();

-- Retention: partitions that end at or before the start of the month
-- retain_months before at's month go; the rollups stay.
insert into lic.metering_rollups (
  account_id, meter_id, hour, agent_id, license_id, subject_key, event_count, quantity_sum, quantity_max,
  latest_quantity, latest_at
)
select
  m.account_id,
  m.id as meter_id,
  '2031-01-31 23:00:00+00' as hour,
  '00000000-0000-0000-0000-000000000000' as agent_id,
  '00000000-0000-0000-0000-000000000000' as license_id,
  'u1' as subject_key,
  1 as event_count,
  1 as quantity_sum,
  1 as quantity_max,
  1 as latest_quantity,
  '2031-01-31 23:59:59+00' as latest_at
from lic.meters as m
where m.account_id = tests.account_id('A');
set local role lic_owner;
select is(
  private.drop_metering_partitions(at => '2031-04-10 00:00:00+00', retain_months => 2), 3,
  'keeping 2 months before April 2031 drops this month''s, November 2030''s and January 2031''s partitions'
);
select tests.clear_context();
select results_eq(
  'select name collate "default" from partitions order by name',
  array[
    'metering_events_203102', 'metering_events_203103', 'metering_events_203104', 'metering_events_203105',
    'metering_events_203106', 'metering_events_203107', 'metering_events_default'
  ],
  'February onwards and the DEFAULT partition remain'
);
select is_empty(
  $$select id from lic.metering_events where id in ('now-1', 'now-2', 'past', 'january', 'b-january')$$,
  'the dropped months'' events are gone'
);
select is(
  (
    select count(*)::integer from lic.metering_rollups
    where hour = '2031-01-31 23:00:00+00'
  ),
  1,
  'the rollups of the dropped months stay'
);
set local role lic_owner;
select is(
  private.drop_metering_partitions(at => '2031-04-10 00:00:00+00', retain_months => 2), 0,
  'a second drop finds nothing'
);
select is(
  private.drop_metering_partitions(at => '2031-04-10 00:00:00+00', retain_months => 1200), 0,
  'a long retention drops nothing'
);
select tests.clear_context();

-- Arguments
set local role lic_worker;
select throws_ok(
  'select worker.ensure_metering_partitions(months_ahead => -1)', 'LINVL', null, 'months_ahead below 0 is refused'
);
select throws_ok(
  'select worker.ensure_metering_partitions(months_ahead => 121)', 'LINVL', null,
  'months_ahead above 120 is refused'
);
select throws_ok(
  'select worker.ensure_metering_partitions(months_ahead => null)', 'LINVL', null, 'a null months_ahead is refused'
);
select throws_ok(
  'select worker.drop_metering_partitions(retain_months => 1)', 'LINVL', null,
  'retain_months below 2 is refused (ingest still takes events 35 days old)'
);
select throws_ok(
  'select worker.drop_metering_partitions(retain_months => null)', 'LINVL', null, 'a null retain_months is refused'
);
select tests.clear_context();

select * from finish();
rollback;
