-- Meters, budgets and usage queries: CRUD rules and errors, events, calendar
-- periods in UTC whatever the session's TimeZone, usage over hand-made rollup
-- rows for every aggregation and granularity, the rollups' "none" keys shown
-- as null, what an agent token reaches, two tenants, and the reporting view
-- for lic_reporting.
begin;
select plan(155);

select from tests.create_account('A');
select from tests.create_account('B');
-- The reporting checks look ids up as lic_reporting.
grant execute on function tests.id(text) to lic_reporting;
insert into lic.license_policies (account_id, code, name) values (tests.account_id('A'), 'std', 'Standard');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('B'), 'std', 'Standard');

-- B: a meter, a license, an agent and a budget of its own.
select from tests.act_as(tests.secret_key('B'));
select tests.remember('BL', (api.create_license(policy_code => 'std')).id);
select tests.remember('B agent', (api.create_agent(name => 'b bot')).id);
select tests.remember('B tokens', (api.create_meter(code => 'tokens', name => 'Tokens', aggregation => 'sum')).id);
-- "limit" is a reserved word; these top-level calls pass period and limit by position.
select tests.remember(
  'B budget', (api.create_budget('day', 5, meter_code => 'tokens', license_id => tests.id('BL'))).id
);
select tests.clear_context();

-- A: a license, an agent on it and one without.
select from tests.act_as(tests.secret_key('A'));
select tests.remember('L', (api.create_license(policy_code => 'std')).id);
select
  tests.remember_secret('bot', a.token) as token,
  tests.remember('bot', a.id) as id
from api.create_agent(name => 'bot', license_id => tests.id('L')) as a;
select tests.remember('other', (api.create_agent(name => 'other')).id);

-- ---------------------------------------------------------------------------
-- Meters.
select tests.remember(
  'tokens',
  (
    api.create_meter(code => 'tokens', name => 'Tokens', aggregation => 'sum', unit => 'token', metadata => '{"a": 1}')
  ).id
);
select tests.remember(
  'users',
  (api.create_meter(code => 'users', name => 'Users', aggregation => 'unique_count', unique_property => 'user')).id
);
select tests.remember('calls', (api.create_meter(code => 'calls', name => 'Calls', aggregation => 'count')).id);
select tests.remember('peak', (api.create_meter(code => 'peak', name => 'Peak', aggregation => 'max')).id);
select tests.remember('seats', (api.create_meter(code => 'seats', name => 'Seats', aggregation => 'latest')).id);

select is(
  (
    select row(m.code, m.name, m.unit, m.aggregation, m.unique_property, m.metadata, m.archived_at)::text
    from api.get_meter(meter_id => tests.id('tokens')) as m
  ),
  row('tokens', 'Tokens', 'token', 'sum', null::text, '{"a": 1}'::jsonb, null::timestamptz)::text,
  'a meter keeps what it was made with'
);
select is(
  (select row(m.id, m.aggregation, m.unique_property)::text from api.get_meter(code => 'users') as m),
  row(tests.id('users'), 'unique_count', 'user')::text,
  'api.get_meter finds a meter by code; a unique_count meter names its property'
);
select is(
  tests.event_count('meter.created', jsonb_build_object('id', tests.id('tokens'), 'code', 'tokens')), 1,
  'creating a meter emits meter.created'
);
select throws_ok(
  $$select api.create_meter(code => 'tokens', name => 'Again', aggregation => 'count')$$,
  '23505', null, 'a meter code is unique in the account'
);
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  $$select api.create_meter(code => 'Tokens', name => 'x', aggregation => 'sum')$$,
  $$select api.create_meter(code => null, name => 'x', aggregation => 'sum')$$,
  $$select api.create_meter(code => 'x', name => '', aggregation => 'sum')$$,
  $$select api.create_meter(code => 'x', name => 'x', aggregation => 'avg')$$,
  $$select api.create_meter(code => 'x', name => 'x', aggregation => 'sum', unit => '')$$,
  $$select api.create_meter(code => 'x', name => 'x', aggregation => 'unique_count')$$,
  $$select api.create_meter(code => 'x', name => 'x', aggregation => 'sum', unique_property => 'user')$$,
  $$select api.create_meter(code => 'x', name => 'x', aggregation => 'unique_count', unique_property => 'a b')$$,
  $$select api.create_meter(code => 'x', name => 'x', aggregation => 'sum', metadata => '[1]')$$,
  'select api.get_meter()',
  format('select api.get_meter(meter_id => %L, code => %L)', tests.id('tokens'), 'tokens'),
  format('select api.update_meter(meter_id => %L, clear => %L)', tests.id('tokens'), '{aggregation}'),
  format('select api.update_meter(meter_id => %L, unit => %L, clear => %L)', tests.id('tokens'), 'x', '{unit}'),
  format('select api.update_meter(meter_id => %L, metadata => %L)', tests.id('tokens'), '"x"'),
  'select * from api.list_meters(page_limit => 0)'
]) as s (statement);
select throws_ok(s.statement, 'LNTFD', null, format('%s raises LNTFD', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  format('select api.get_meter(meter_id => %L)', gen_random_uuid()),
  $$select api.get_meter(code => 'nope')$$,
  format('select api.get_meter(meter_id => %L)', tests.id('B tokens')),
  format('select api.update_meter(meter_id => %L, name => %L)', tests.id('B tokens'), 'mine'),
  format('select api.archive_meter(meter_id => %L)', tests.id('B tokens'))
]) as s (statement);

-- Updating: null keeps, clear removes the unit, metadata merges.
select is(
  (
    select row(m.name, m.unit, m.metadata)::text
    from api.update_meter(meter_id => tests.id('tokens'), name => 'LLM tokens', metadata => '{"b": 2}') as m
  ),
  row('LLM tokens', 'token', '{"a": 1, "b": 2}'::jsonb)::text,
  'api.update_meter changes what it is given and merges metadata'
);
select is(
  (
    select row(m.unit, m.metadata, m.aggregation)::text
    from api.update_meter(meter_id => tests.id('tokens'), metadata => '{"a": null}', clear => '{unit}') as m
  ),
  row(null::text, '{"b": 2}'::jsonb, 'sum')::text,
  'clear => {unit} removes the unit and a metadata key given as null is removed'
);
select tests.clear_context();
select is(
  (
    select array_agg(e.previous_attributes order by e.created_at, e.id) from lic.events as e
    where e.type = 'meter.updated' and e.object ->> 'id' = tests.id('tokens')::text
  ),
  array[
    '{"name": "Tokens", "metadata": {"a": 1}}'::jsonb,
    '{"unit": "token", "metadata": {"a": 1, "b": 2}}'::jsonb
  ],
  'each update emits meter.updated with the old values of what changed'
);
select from tests.act_as(tests.secret_key('A'));
select lives_ok(
  format('select api.update_meter(meter_id => %L, name => %L)', tests.id('tokens'), 'LLM tokens'),
  'an update that changes nothing'
);
select is(
  tests.event_count('meter.updated', jsonb_build_object('id', tests.id('tokens'))), 2,
  '... emits no event'
);
select is(
  (
    select array_agg(a.name order by a.name) from pg_catalog.pg_proc as p
    cross join unnest(p.proargnames) as a (name)
    where p.oid = 'api.update_meter'::regproc
  ),
  array['clear', 'metadata', 'meter_id', 'name', 'unit'],
  'a meter''s code, aggregation and unique_property are fixed: api.update_meter takes name, unit and metadata'
);

-- Archiving and listing.
select tests.remember('old', (api.create_meter(code => 'old', name => 'Old', aggregation => 'sum')).id);
select isnt(
  (api.archive_meter(meter_id => tests.id('old'))).archived_at, null, 'api.archive_meter sets archived_at'
);
select is(
  (api.archive_meter(meter_id => tests.id('old'))).archived_at,
  (select m.archived_at from api.get_meter(code => 'old') as m),
  'archiving again returns the meter unchanged'
);
select is(
  tests.event_count('meter.archived', jsonb_build_object('id', tests.id('old'))), 1,
  'archiving emits meter.archived once'
);
select results_eq(
  'select code from api.list_meters(page_limit => 100)',
  array['seats', 'peak', 'calls', 'users', 'tokens'],
  'api.list_meters lists the account''s meters newest first, without archived ones'
);
select results_eq(
  'select code from api.list_meters(page_limit => 2, include_archived => true)',
  array['old', 'seats', 'peak'],
  'include_archived lists them too; a page has page_limit + 1 rows'
);
select results_eq(
  format('select code from api.list_meters(page_limit => 2, starting_after => %L)', tests.id('peak')),
  array['calls', 'users', 'tokens'],
  'starting_after pages on'
);
select results_eq(
  format('select code from api.list_meters(page_limit => 2, ending_before => %L)', tests.id('users')),
  array['seats', 'peak', 'calls'],
  'ending_before pages back'
);

-- ---------------------------------------------------------------------------
-- Periods: calendar-aligned in UTC whatever the session's TimeZone.
select tests.clear_context();
set local timezone = 'America/New_York';
select is(
  private.budget_period_start('hour', '2024-03-10 06:59:59+00'), '2024-03-10 06:00+00'::timestamptz,
  'an hour starts on the UTC hour'
);
select is(
  private.budget_period_start('day', '2024-03-10 03:00+00'), '2024-03-10 00:00+00'::timestamptz,
  'a day starts at UTC midnight (here 22:00 of the day before in New York)'
);
select is(
  private.budget_period_start('month', '2024-03-01 02:00+00'), '2024-03-01 00:00+00'::timestamptz,
  'a month starts at UTC midnight of its first day'
);
select is(
  private.budget_period_end('day', '2024-03-10 12:00+00'), '2024-03-11 00:00+00'::timestamptz,
  'a day lasts 24 hours even on New York''s daylight saving day'
);
select is(
  private.budget_period_end('month', '2024-03-15 12:00+00'), '2024-04-01 00:00+00'::timestamptz,
  'a month ends at the next month''s UTC start across a daylight saving change'
);
select is(
  private.budget_period_end('hour', '2024-11-03 05:30+00'), '2024-11-03 06:00+00'::timestamptz,
  'an hour ends an hour later, also in the repeated local hour'
);
set local timezone = 'Asia/Kolkata';
select is(
  private.budget_period_start('hour', '2024-03-10 06:45+00'), '2024-03-10 06:00+00'::timestamptz,
  'under a half-hour offset an hour still starts on the UTC hour'
);
select is(
  private.budget_period_start('month', '2024-02-29 20:00+00'), '2024-02-01 00:00+00'::timestamptz,
  'and a month on its UTC first day (here already March 1 locally)'
);
reset timezone;
select is(
  (
    select array_agg(p.provolatile::text order by p.proname) from pg_catalog.pg_proc as p
    where p.oid in (
      'private.budget_period_start(text, timestamptz)'::regprocedure,
      'private.budget_period_end(text, timestamptz)'::regprocedure
    )
  ),
  array['i', 'i'],
  'the period helpers are immutable'
);

-- ---------------------------------------------------------------------------
-- Budgets.
select from tests.act_as(tests.secret_key('A'));
select tests.remember(
  'bot budget',
  (
    api.create_budget(
      'day', 100, meter_code => 'tokens', agent_id => tests.id('bot'),
      thresholds => '{100, 50, 80}', metadata => '{"team": "x"}'
    )
  ).id
);
select tests.remember(
  'license budget',
  (api.create_budget('month', 1000, meter_id => tests.id('tokens'), license_id => tests.id('L'), hard => false)).id
);
select tests.remember(
  'other budget',
  (api.create_budget('hour', 0, meter_code => 'calls', agent_id => tests.id('other'))).id
);
select tests.remember(
  'own events budget',
  (api.create_budget('day', 5, meter_code => 'calls', license_id => tests.id('L'), scope => 'subject')).id
);
select is(
  array[
    (api.get_budget(budget_id => tests.id('bot budget'))).scope,
    (api.get_budget(budget_id => tests.id('license budget'))).scope,
    (api.delete_budget(budget_id => tests.id('own events budget'))).scope
  ],
  array['subject', 'all_subjects', 'subject'],
  'an agent''s budget counts its own events; a license''s counts all its subjects unless scope is subject'
);
select throws_ok(
  $$select api.create_budget('day', 5, meter_code => 'calls', agent_id => tests.id('other'), scope => 'all_subjects')$$,
  'LINVL', null,
  'all_subjects is only for a license''s budget'
);
select throws_ok(
  $$select api.create_budget('day', 5, meter_code => 'calls', license_id => tests.id('L'), scope => 'everyone')$$,
  'LINVL', null,
  'an unknown scope raises LINVL'
);
select is(
  (
    select
      row(
        b.meter_id, b.meter_code, b.agent_id, b.license_id, b.period, b."limit", b.hard, b.thresholds, b.used,
        b.remaining, b.period_start, b.period_end, b.metadata
      )::text
    from api.get_budget(budget_id => tests.id('bot budget')) as b
  ),
  row(
    tests.id('tokens'), 'tokens', tests.id('bot'), null::uuid, 'day', 100::numeric, true, '{50,80,100}'::integer[],
    0::numeric, 100::numeric, date_trunc('day', now() at time zone 'UTC') at time zone 'UTC',
    (date_trunc('day', now() at time zone 'UTC') + interval '1 day') at time zone 'UTC',
    '{"team": "x"}'::jsonb
  )::text,
  'a budget shows its meter, subject, period, limit, sorted thresholds and the current period with nothing used'
);
select is(
  (
    select row(b.license_id, b.hard, b.thresholds, b.period_start)::text
    from api.get_budget(tests.id('license budget')) as b
  ),
  row(tests.id('L'), false, '{}'::integer[], date_trunc('month', now() at time zone 'UTC') at time zone 'UTC')::text,
  'a soft monthly budget of a license'
);
select is(
  tests.event_count('budget.created', jsonb_build_object('id', tests.id('bot budget'), 'limit', 100)), 1,
  'creating a budget emits budget.created'
);

-- What the current period used, from lic.budget_usage (as the ingest keeps it).
select tests.clear_context();
insert into lic.budget_usage (account_id, budget_id, period_start, used) values
(tests.account_id('A'), tests.id('bot budget'), private.budget_period_start('day', now()), 30),
(tests.account_id('A'), tests.id('bot budget'), private.budget_period_start('day', now()) - interval '1 day', 99),
(tests.account_id('A'), tests.id('license budget'), private.budget_period_start('month', now()), 1500);
select from tests.act_as(tests.secret_key('A'));
select is(
  (select row(b.used, b.remaining)::text from api.get_budget(tests.id('bot budget')) as b),
  row(30::numeric, 70::numeric)::text,
  'used and remaining are the current period''s; an earlier period does not count'
);
select is(
  (select row(b.used, b.remaining)::text from api.get_budget(tests.id('license budget')) as b),
  row(1500::numeric, 0::numeric)::text,
  'a soft budget past its limit has 0 remaining, never less'
);

select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  $$select api.create_budget(period => 'week', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'))$$,
  $$select api.create_budget(period => null, "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'))$$,
  $$select api.create_budget(period => 'day', "limit" => -1, meter_code => 'tokens', license_id => tests.id('L'))$$,
  $$select api.create_budget(period => 'day', "limit" => null, meter_code => 'tokens', license_id => tests.id('L'))$$,
  $$select api.create_budget(period => 'day', "limit" => 'NaN', meter_code => 'tokens', license_id => tests.id('L'))$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'),
    thresholds => '{0}')$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'),
    thresholds => '{1001}')$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'),
    thresholds => '{50, 50}')$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'),
    thresholds => '{50, null}')$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'),
    thresholds => '{1,2,3,4,5,6,7,8,9,10,11}')$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'),
    metadata => '[]')$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens')$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('L'),
    agent_id => tests.id('bot'))$$,
  $$select api.create_budget(period => 'day', "limit" => 1, license_id => tests.id('L'))$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', meter_id => tests.id('tokens'),
    license_id => tests.id('L'))$$,
  $$select api.update_budget(budget_id => tests.id('bot budget'), "limit" => -5)$$,
  $$select api.update_budget(budget_id => tests.id('bot budget'), thresholds => '{2000}')$$,
  $$select api.update_budget(budget_id => tests.id('bot budget'), metadata => '1')$$,
  $$select * from api.list_budgets(page_limit => 101)$$
]) as s (statement);
select throws_ok(s.statement, 'LNTFD', null, format('%s raises LNTFD', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'nope', license_id => tests.id('L'))$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_id => tests.id('B tokens'),
    license_id => tests.id('L'))$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', agent_id => gen_random_uuid())$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', agent_id => tests.id('B agent'))$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', license_id => tests.id('BL'))$$,
  $$select api.get_budget(budget_id => tests.id('B budget'))$$,
  $$select api.update_budget(budget_id => tests.id('B budget'), "limit" => 1000)$$,
  $$select api.delete_budget(budget_id => tests.id('B budget'))$$
]) as s (statement);
select throws_ok(
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'old', license_id => tests.id('L'))$$,
  'LSTAT', null, 'an archived meter takes no new budget'
);

-- Listing with filters.
select results_eq(
  'select id from api.list_budgets()',
  $$values (tests.id('other budget')), (tests.id('license budget')), (tests.id('bot budget'))$$,
  'api.list_budgets lists the account''s budgets newest first'
);
select results_eq(
  format('select id from api.list_budgets(agent_id => %L)', tests.id('bot')),
  $$values (tests.id('bot budget'))$$,
  'filtered by agent'
);
select results_eq(
  format('select id from api.list_budgets(license_id => %L)', tests.id('L')),
  $$values (tests.id('license budget'))$$,
  'filtered by license'
);
select results_eq(
  format('select id from api.list_budgets(meter_id => %L)', tests.id('tokens')),
  $$values (tests.id('license budget')), (tests.id('bot budget'))$$,
  'filtered by meter'
);
select results_eq(
  format('select id from api.list_budgets(page_limit => 1, starting_after => %L)', tests.id('other budget')),
  $$values (tests.id('license budget')), (tests.id('bot budget'))$$,
  'paged with starting_after'
);

-- Updating.
select is(
  (
    select row(b."limit", b.hard, b.thresholds, b.metadata, b.used, b.remaining)::text
    from api.update_budget(
      tests.id('bot budget'), 200, thresholds => '{90, 10}', metadata => '{"team": null, "k": 1}'
    ) as b
  ),
  row(200::numeric, true, '{10,90}'::integer[], '{"k": 1}'::jsonb, 30::numeric, 170::numeric)::text,
  'api.update_budget sets the limit and thresholds (sorted), merges metadata and keeps what the period used'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes - 'remaining' from lic.events as e
    where e.type = 'budget.updated' and e.object ->> 'id' = tests.id('bot budget')::text
  ),
  '{"limit": 100, "thresholds": [50, 80, 100], "metadata": {"team": "x"}}'::jsonb,
  'budget.updated carries the old values'
);
select from tests.act_as(tests.secret_key('A'));
select lives_ok(
  $$select api.update_budget(budget_id => tests.id('bot budget'), "limit" => 200, thresholds => '{10, 90}')$$,
  'an update that changes nothing'
);
select is(
  tests.event_count('budget.updated', jsonb_build_object('id', tests.id('bot budget'))), 1,
  '... emits no event'
);

-- An agent token reads its own budgets and its license's, nothing else.
select tests.clear_context();
select from tests.act_as(tests.secret('bot'));
select results_eq(
  'select id from api.list_budgets()',
  $$values (tests.id('license budget')), (tests.id('bot budget'))$$,
  'an agent token lists its own budgets and its license''s'
);
select is(
  (api.get_budget(budget_id => tests.id('license budget'))).id, tests.id('license budget'),
  'and reads its license''s budget'
);
select throws_ok(
  $$select api.get_budget(budget_id => tests.id('other budget'))$$, 'LNTFD', null,
  'another agent''s budget is not found for an agent token'
);
select
  throws_ok(
    s.statement, 'LDNID', null, format('an agent token may not: %s', regexp_replace(s.statement, '\s+', ' ', 'g'))
  )
from unnest(array[
  $$select * from api.list_budgets(agent_id => tests.id('other'))$$,
  $$select * from api.list_budgets(license_id => tests.id('BL'))$$,
  $$select api.create_budget(period => 'day', "limit" => 1, meter_code => 'tokens', agent_id => tests.id('bot'))$$,
  $$select api.update_budget(budget_id => tests.id('bot budget'), "limit" => 1000000)$$,
  $$select api.delete_budget(budget_id => tests.id('bot budget'))$$,
  $$select api.create_meter(code => 'mine', name => 'Mine', aggregation => 'sum')$$,
  'select * from api.list_meters()'
]) as s (statement);
select tests.clear_context();

-- Deleting.
select from tests.act_as(tests.secret_key('A'));
select is(
  (select row(b.id, b.used)::text from api.delete_budget(budget_id => tests.id('bot budget')) as b),
  row(tests.id('bot budget'), 30::numeric)::text,
  'api.delete_budget answers the budget as it was'
);
select throws_ok(
  $$select api.get_budget(budget_id => tests.id('bot budget'))$$, 'LNTFD', null, 'a deleted budget is gone'
);
select is(
  tests.event_count('budget.deleted', jsonb_build_object('id', tests.id('bot budget'))), 1,
  'deleting emits budget.deleted'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.budget_usage as u
    where u.budget_id = tests.id('bot budget')
  ), 0,
  'its usage rows went with it'
);
select is(
  (
    select b."limit" from lic.budgets as b
    where b.id = tests.id('B budget')
  ), 5::numeric,
  'B''s budget is untouched by A''s attempts'
);

-- ---------------------------------------------------------------------------
-- Usage over hand-made rollups: the same five rollup rows under each
-- aggregation's meter (the nil uuid and '' are the rollups' "none"):
--   r1 2024-03-09 23:00  bot,  L,    ''      count 2 sum 10  max 7   latest 3 at 23:40
--   r2 2024-03-10 01:00  none, none, cust-1  count 1 sum 5   max 5   latest 5 at 01:10
--   r3 2024-03-10 01:00  bot,  L,    ''      count 3 sum 20  max 9   latest 8 at 01:50
--   r4 2024-03-10 05:00  none, L,    ''      count 4 sum 1   max 1   latest 1 at 05:20
--   r5 2024-04-02 00:00  other, none, ''     count 1 sum 100 max 100 latest 100 at 00:05
-- and, for the unique_count meter, values r1 {u1,u2}, r2 {u1}, r3 {u2,u3},
-- r4 {u1}, r5 {u9}. B has a row of its own.
create temporary table rollup_rows (
  n integer, hour timestamptz, agent text, license text, subject_key text, event_count bigint, quantity_sum numeric,
  quantity_max numeric, latest_quantity numeric, latest_at timestamptz, unique_values text[]
);
insert into rollup_rows values
(1, '2024-03-09 23:00+00', 'bot', 'L', '', 2, 10, 7, 3, '2024-03-09 23:40+00', '{u1,u2}'),
(2, '2024-03-10 01:00+00', null, null, 'cust-1', 1, 5, 5, 5, '2024-03-10 01:10+00', '{u1}'),
(3, '2024-03-10 01:00+00', 'bot', 'L', '', 3, 20, 9, 8, '2024-03-10 01:50+00', '{u2,u3}'),
(4, '2024-03-10 05:00+00', null, 'L', '', 4, 1, 1, 1, '2024-03-10 05:20+00', '{u1}'),
(5, '2024-04-02 00:00+00', 'other', null, '', 1, 100, 100, 100, '2024-04-02 00:05+00', '{u9}');
insert into lic.metering_rollups (
  account_id, meter_id, hour, agent_id, license_id, subject_key, event_count, quantity_sum, quantity_max,
  latest_quantity, latest_at
)
select
  tests.account_id('A') as account_id,
  tests.id(m.code) as meter_id,
  r.hour,
  coalesce(tests.id(r.agent), '00000000-0000-0000-0000-000000000000') as agent_id,
  coalesce(tests.id(r.license), '00000000-0000-0000-0000-000000000000') as license_id,
  r.subject_key,
  r.event_count,
  r.quantity_sum,
  r.quantity_max,
  r.latest_quantity,
  r.latest_at
from rollup_rows as r
cross join (values ('tokens'), ('users'), ('calls'), ('peak'), ('seats')) as m (code);
insert into lic.metering_rollup_values (account_id, meter_id, hour, agent_id, license_id, subject_key, value)
select
  tests.account_id('A') as account_id,
  tests.id('users') as meter_id,
  r.hour,
  coalesce(tests.id(r.agent), '00000000-0000-0000-0000-000000000000') as agent_id,
  coalesce(tests.id(r.license), '00000000-0000-0000-0000-000000000000') as license_id,
  r.subject_key,
  v.value
from rollup_rows as r
cross join unnest(r.unique_values) as v (value);
insert into lic.metering_rollups (
  account_id, meter_id, hour, agent_id, license_id, subject_key, event_count, quantity_sum, quantity_max,
  latest_quantity, latest_at
)
values (
  tests.account_id('B'), tests.id('B tokens'), '2024-03-10 01:00+00', tests.id('B agent'), tests.id('BL'), '', 7, 700,
  700, 700, '2024-03-10 01:30+00'
);

create function tests.usage_of(meter text, granularity text, starting_at timestamptz, ending_at timestamptz)
returns text
language sql
volatile
as $$
  select string_agg(format('%s=%s/%s', to_char(u.period_start at time zone 'UTC', 'MM-DD HH24'), u.value, u.event_count), ' '
    order by u.period_start)
  from api.usage(
    meter_code => meter, granularity => granularity, starting_at => starting_at, ending_at => ending_at
  ) as u;
$$;
grant execute on function tests.usage_of(text, text, timestamptz, timestamptz) to lic_app;

select from tests.act_as(tests.secret_key('A'));
-- A non-UTC session: buckets must still be UTC days and months.
set local timezone = 'America/New_York';
select
  is(
    tests.usage_of(s.meter, s.granularity, s.starting_at, s.ending_at), s.expected,
    format('%s by %s: %s', s.meter, s.granularity, s.expected)
  )
from (
  values
  (
    'tokens', 'hour', '2024-03-09 00:00+00'::timestamptz, '2024-03-11 00:00+00'::timestamptz,
    '03-09 23=10/2 03-10 01=25/4 03-10 05=1/4'
  ),
  ('tokens', 'day', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 00=10/2 03-10 00=26/8'),
  ('tokens', 'month', '2024-03-01 00:00+00', '2024-05-01 00:00+00', '03-01 00=36/10 04-01 00=100/1'),
  ('calls', 'hour', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 23=2/2 03-10 01=4/4 03-10 05=4/4'),
  ('calls', 'day', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 00=2/2 03-10 00=8/8'),
  ('calls', 'month', '2024-03-01 00:00+00', '2024-05-01 00:00+00', '03-01 00=10/10 04-01 00=1/1'),
  ('peak', 'hour', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 23=7/2 03-10 01=9/4 03-10 05=1/4'),
  ('peak', 'day', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 00=7/2 03-10 00=9/8'),
  ('peak', 'month', '2024-03-01 00:00+00', '2024-05-01 00:00+00', '03-01 00=9/10 04-01 00=100/1'),
  ('seats', 'hour', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 23=3/2 03-10 01=8/4 03-10 05=1/4'),
  ('seats', 'day', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 00=3/2 03-10 00=1/8'),
  ('seats', 'month', '2024-03-01 00:00+00', '2024-05-01 00:00+00', '03-01 00=1/10 04-01 00=100/1'),
  ('users', 'hour', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 23=2/2 03-10 01=3/4 03-10 05=1/4'),
  ('users', 'day', '2024-03-09 00:00+00', '2024-03-11 00:00+00', '03-09 00=2/2 03-10 00=3/8'),
  ('users', 'month', '2024-03-01 00:00+00', '2024-05-01 00:00+00', '03-01 00=3/10 04-01 00=1/1'),
  -- The range touches whole buckets: from 12:00 is the whole day.
  ('tokens', 'day', '2024-03-10 12:00+00', '2024-03-10 12:00:01+00', '03-10 00=26/8'),
  ('tokens', 'day', '2024-03-09 23:30+00', '2024-03-10 00:00:01+00', '03-09 00=10/2 03-10 00=26/8'),
  ('tokens', 'hour', '2024-03-10 01:30+00', '2024-03-10 05:00+00', '03-10 01=25/4'),
  ('tokens', 'day', '2024-03-11 00:00+00', '2024-03-20 00:00+00', null)
) as s (meter, granularity, starting_at, ending_at, expected);

select results_eq(
  $$
    select u.period_start, u.agent_id, u.license_id, u.subject_key, u.value, u.event_count
    from api.usage(
      meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-11', group_by_subject => true
    ) as u
  $$,
  $$
    values
    ('2024-03-09 00:00+00'::timestamptz, tests.id('bot'), tests.id('L'), null::text, 10::numeric, 2::bigint),
    ('2024-03-10 00:00+00', null, null, 'cust-1', 5, 1),
    ('2024-03-10 00:00+00', null, tests.id('L'), null, 1, 4),
    ('2024-03-10 00:00+00', tests.id('bot'), tests.id('L'), null, 20, 3)
  $$,
  'grouped by subject: one row per bucket and subject, the rollups'' "none" keys as null'
);
select results_eq(
  $$
    select u.agent_id, u.license_id, u.subject_key, u.value
    from api.usage(
      meter_code => 'users', starting_at => '2024-03-10', ending_at => '2024-03-11', group_by_subject => true
    ) as u
  $$,
  $$
    values
    (null::uuid, null::uuid, 'cust-1'::text, 1::numeric),
    (null, tests.id('L'), null, 1),
    (tests.id('bot'), tests.id('L'), null, 2)
  $$,
  'unique_count grouped by subject counts each subject''s distinct values over the bucket'
);
select results_eq(
  $$
    select u.period_start, u.agent_id, u.license_id, u.subject_key, u.value
    from api.usage(meter_id => tests.id('tokens'), starting_at => '2024-03-09', ending_at => '2024-03-11',
      license_id => tests.id('L')) as u
  $$,
  $$
    values ('2024-03-09 00:00+00'::timestamptz, null::uuid, null::uuid, null::text, 10::numeric),
    ('2024-03-10 00:00+00', null, null, null, 21)
  $$,
  'license_id counts every event of the license (its agents'' too); ungrouped rows name no subject'
);
select results_eq(
  $$
    select u.value from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-11',
      agent_id => tests.id('bot')) as u
  $$,
  array[10::numeric, 20],
  'agent_id filters the agent''s events'
);
select results_eq(
  $$
    select u.value from api.usage(meter_code => 'users', starting_at => '2024-03-09', ending_at => '2024-03-11',
      subject_key => 'cust-1') as u
  $$,
  array[1::numeric],
  'subject_key filters the tenant''s own subject'
);
reset timezone;
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  $$select * from api.usage(meter_code => 'tokens', starting_at => null, ending_at => '2024-03-11')$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-11', ending_at => null)$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-11', ending_at => '2024-03-11')$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-11', ending_at => '2024-03-10')$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '-infinity', ending_at => '2024-03-10')$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-10',
    granularity => 'week')$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2023-01-01', ending_at => '2024-03-10',
    granularity => 'hour')$$,
  $$select * from api.usage(starting_at => '2024-03-09', ending_at => '2024-03-10')$$,
  $$select * from api.usage(meter_code => 'tokens', meter_id => tests.id('tokens'), starting_at => '2024-03-09',
    ending_at => '2024-03-10')$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-10',
    subject_key => '')$$,
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-10',
    agent_id => '00000000-0000-0000-0000-000000000000')$$
]) as s (statement);
select lives_ok(
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2023-01-01', ending_at => '2024-02-21',
    granularity => 'hour')$$,
  'up to 10,000 buckets may be asked for'
);
select throws_ok(
  $$select * from api.usage(meter_id => tests.id('B tokens'), starting_at => '2024-03-09', ending_at => '2024-03-11')$$,
  'LNTFD', null, 'another tenant''s meter is not found'
);
select tests.clear_context();

-- An agent token reads its own usage only.
select from tests.act_as(tests.secret('bot'));
select results_eq(
  $$
    select u.value from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-11') as u
  $$,
  array[10::numeric, 20],
  'an agent token sees its own usage only'
);
select throws_ok(
  $$
    select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-11',
      agent_id => tests.id('other'))
  $$,
  'LDNID', null, 'an agent token may not ask for another agent''s usage'
);
select tests.clear_context();

-- B sees only its own row.
select from tests.act_as(tests.secret_key('B'));
select results_eq(
  $$
    select u.value from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-11') as u
  $$,
  array[700::numeric],
  'another tenant''s usage of a meter with the same code is its own'
);
select tests.clear_context();

-- ---------------------------------------------------------------------------
-- The reporting view for lic_reporting.
select ok(
  (
    select coalesce('security_invoker=true' = any(c.reloptions), false) from pg_catalog.pg_class as c
    where c.oid = 'api.usage_hourly'::regclass
  ),
  'api.usage_hourly is security_invoker'
);
select tests.act_as_definer(tests.account_id('A'));
select set_config('role', 'lic_reporting', true);
select is(
  (select count(*)::integer from api.usage_hourly),
  25,
  'lic_reporting with A''s signed context sees A''s rollup rows'
);
select is(
  (
    select count(*)::integer from api.usage_hourly
    where meter_id = tests.id('B tokens')
  ), 0,
  '... and none of B''s'
);
select results_eq(
  $$
    select v.meter_code, v.agent_id, v.license_id, v.subject_key, v.quantity_sum
    from api.usage_hourly as v where v.meter_code = 'tokens' and v.hour = '2024-03-10 01:00+00' order by v.quantity_sum
  $$,
  $$
    values ('tokens'::text, null::uuid, null::uuid, 'cust-1'::text, 5::numeric),
    ('tokens', tests.id('bot'), tests.id('L'), null, 20)
  $$,
  'the view names the meter and shows the rollups'' "none" keys as null'
);
select throws_ok(
  'select count(*) from lic.metering_rollups', '42501', null,
  'lic_reporting cannot read the rollups table except through the view'
);
select throws_ok(
  $$select * from api.usage(meter_code => 'tokens', starting_at => '2024-03-09', ending_at => '2024-03-11')$$,
  '42501', null, 'lic_reporting may not call the api functions'
);
select tests.clear_context();
select set_config('role', 'lic_reporting', true);
select is((select count(*)::integer from api.usage_hourly), 0, 'lic_reporting without a context sees no row');
select set_config('lic.account_id', tests.account_id('A')::text, true);
select is(
  (select count(*)::integer from api.usage_hourly), 0, 'nor with an unsigned (forged) account setting'
);
select api.authenticate(tests.secret_key('B'));
select results_eq(
  'select meter_code, quantity_sum from api.usage_hourly',
  $$values ('tokens'::text, 700::numeric)$$,
  'lic_reporting authenticated with B''s secret key sees exactly B''s rows'
);
select tests.clear_context();

select * from finish();
rollback;
