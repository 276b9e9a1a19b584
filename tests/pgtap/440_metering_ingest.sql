-- The usage ingest as a database contract (functions/75_metering.sql):
-- api.ingest_events' per-event answers, RFC 3339 instants, duplicates by id
-- and instant, hourly rollups and unique values, agents recording for
-- themselves, hard and soft budgets with their thresholds and events,
-- api.check_budget, BUDGET_EXHAUSTED in validation, UTC periods under
-- another session TimeZone, the append-only event table and tenant
-- isolation. tests/python/test_usage_ingest.py covers the HTTP side and the
-- concurrent senders. Meters and budgets are written as the superuser.
begin;
select plan(100);
\ir licensing_fixtures.sql

-- An instant so many minutes past a whole UTC hour three hours ago (where
-- the rollup events fall); made here, gone with the rollback.
create function tests.usage_at(minutes integer)
returns timestamptz
language sql
stable
as $$
  select date_trunc('hour', now(), 'UTC') - interval '3 hours' + make_interval(mins => minutes);
$$;
grant execute on function tests.usage_at(integer) to lic_app;

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'std');
select from tests.fx_policy('B', 'std');
-- L1: the agent bot's license (check_budget); L2: hard budgets; L3: soft
-- budget and thresholds; L4: a spent previous period; L5: UTC periods.
select from tests.fx_license('A', 'L1', 'std');
select from tests.fx_license('A', 'L2', 'std');
select from tests.fx_license('A', 'L3', 'std');
select from tests.fx_license('A', 'L4', 'std');
select from tests.fx_license('A', 'L5', 'std');
select
  tests.fx_id('L1') as l1,
  tests.fx_id('L2') as l2,
  tests.fx_id('L3') as l3,
  tests.fx_id('L4') as l4,
  tests.fx_id('L5') as l5,
  tests.fx_key('L2') as l2_key,
  tests.fx_key('L3') as l3_key,
  tests.fx_key('L4') as l4_key,
  tests.account_id('A') as a,
  tests.account_id('B') as b,
  tests.usage_at(0) as h
\gset

insert into lic.meters (account_id, code, name, aggregation, unique_property, archived_at)
values
(:'a', 'tokens', 'Tokens', 'sum', null, null),
(:'a', 'calls', 'Calls', 'sum', null, null),
(:'a', 'seats', 'Seats', 'unique_count', 'user', null),
(:'a', 'gone', 'Gone', 'sum', null, now()),
(:'a', 'capped', 'Capped', 'sum', null, null),
(:'a', 'spend', 'Spend', 'sum', null, null),
(:'a', 'soft', 'Soft', 'sum', null, null),
(:'a', 'hourly', 'Hourly', 'sum', null, null),
(:'a', 'quota', 'Quota', 'sum', null, null),
(:'a', 'pair', 'Pair', 'sum', null, null),
(:'a', 'tzm', 'Time zones', 'sum', null, null),
(:'b', 'tokens', 'Tokens', 'sum', null, null);
select
  max(m.id::text) filter (where m.code = 'calls') as m_calls,
  max(m.id::text) filter (where m.code = 'seats') as m_seats,
  max(m.id::text) filter (where m.code = 'capped') as m_capped,
  max(m.id::text) filter (where m.code = 'spend') as m_spend,
  max(m.id::text) filter (where m.code = 'soft') as m_soft,
  max(m.id::text) filter (where m.code = 'hourly') as m_hourly,
  max(m.id::text) filter (where m.code = 'quota') as m_quota,
  max(m.id::text) filter (where m.code = 'pair') as m_pair,
  max(m.id::text) filter (where m.code = 'tzm') as m_tzm
from lic.meters as m
where m.account_id = :'a'
\gset

-- Agents: bot works for L1, other for no license.
select from tests.act_as(tests.secret_key('A'));
select
  a.id as bot,
  a.token as bot_token
from api.create_agent(name => 'bot', license_id => :'l1') as a
\gset
select a.id as other from api.create_agent(name => 'other') as a
\gset
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.clear_context();

-- Budgets, as the superuser. "limit" 5 on capped for L2 (the codes batch).
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard)
values (:'a', :'m_capped', :'l2', 'month', 5, true);
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard)
values (:'a', :'m_spend', :'l2', 'month', 25, true)
returning id as b_spend
\gset
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard, thresholds)
values (:'a', :'m_soft', :'l3', 'month', 10, false, '{50,100}')
returning id as b_soft
\gset
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard, thresholds)
values (:'a', :'m_hourly', :'l3', 'hour', 10, false, '{50}')
returning id as b_hourly
\gset
-- L4's budget was spent in the previous month.
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard)
values (:'a', :'m_spend', :'l4', 'month', 10, true)
returning id as b_l4
\gset
insert into lic.budget_usage (account_id, budget_id, period_start, used)
values (:'a', :'b_l4', date_trunc('month', date_trunc('month', now(), 'UTC') - interval '1 day', 'UTC'), 10);
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard)
values (:'a', :'m_quota', :'l1', 'month', 30, true)
returning id as b_quota_hard
\gset
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard)
values (:'a', :'m_quota', :'l1', 'month', 5, false)
returning id as b_quota_soft
\gset
insert into lic.budgets (account_id, meter_id, agent_id, period, "limit", hard)
values (:'a', :'m_quota', :'bot', 'day', 50, true)
returning id as b_quota_agent
\gset
-- On pair the agent bot may spend 10, its license L1 100.
insert into lic.budgets (account_id, meter_id, agent_id, license_id, period, "limit", hard)
values
(:'a', :'m_pair', :'bot', null, 'month', 10, true),
(:'a', :'m_pair', null, :'l1', 'month', 100, true);
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard)
values (:'a', :'m_tzm', :'l5', 'day', 1000, false)
returning id as b_tz_day
\gset
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard)
values (:'a', :'m_tzm', :'l5', 'month', 1000, false)
returning id as b_tz_month
\gset

-- 1. The batch itself: an array of at most 10,000, and a key that may ingest.
select throws_ok(
  $$select api.ingest_events(null)$$, 'LAUTH', null, 'ingest without an authenticated account raises LAUTH'
);
select from tests.act_as(tests.key_secret('A pk'));
select throws_ok($$select api.ingest_events('[]')$$, 'LDNID', null, 'a publishable key may not ingest');
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  $$select api.ingest_events('{"id": "x", "meter": "tokens"}')$$, 'LINVL', 'events must be an array',
  'an object instead of an array raises LINVL'
);
select throws_ok(
  $$select api.ingest_events(null)$$, 'LINVL', 'events must be an array', 'a null batch raises LINVL'
);
select throws_ok(
  $$select api.ingest_events((select jsonb_agg(n) from generate_series(1, 10001) as n))$$, 'LINVL',
  'at most 10,000 events a call', '10,001 events raise LINVL'
);
select is(
  (
    select r - 'data'
    from api.ingest_events((select jsonb_agg(n) from generate_series(1, 10000) as n)) as r
  ),
  '{"object": "usage_ingest", "accepted": 0, "duplicates": 0, "rejected": 10000}'::jsonb,
  '10,000 events are taken (each answered on its own)'
);
select is(
  api.ingest_events('[]'),
  '{"object": "usage_ingest", "accepted": 0, "duplicates": 0, "rejected": 0, "data": []}'::jsonb,
  'an empty batch answers an empty result'
);

-- 2. Every per-event code of the contract (forbidden_subject needs an agent:
-- section 6), one event each in one batch, answered in input order.
select
  api.ingest_events(
    jsonb_build_array(
      'not an object',
      jsonb_build_object('meter', 'tokens', 'subject_key', 'u'),
      jsonb_build_object('id', 'e2', 'meter', 'nope', 'subject_key', 'u'),
      jsonb_build_object('id', 'e3', 'meter', 'gone', 'subject_key', 'u'),
      jsonb_build_object('id', 'e4', 'meter', 'tokens', 'quantity', -1, 'subject_key', 'u'),
      jsonb_build_object('id', 'e5', 'meter', 'tokens', 'occurred_at', '2026-02-30T00:00:00Z', 'subject_key', 'u'),
      jsonb_build_object('id', 'e6', 'meter', 'tokens', 'occurred_at', now() - interval '36 days', 'subject_key', 'u'),
      jsonb_build_object(
        'id', 'e7', 'meter', 'tokens', 'occurred_at', now() + interval '6 minutes', 'subject_key', 'u'
      ),
      jsonb_build_object('id', 'e8', 'meter', 'tokens', 'properties', '[]'::jsonb, 'subject_key', 'u'),
      jsonb_build_object(
        'id', 'e9', 'meter', 'tokens', 'properties', jsonb_build_object('x', repeat('y', 9000)), 'subject_key', 'u'
      ),
      jsonb_build_object('id', 'e10', 'meter', 'tokens', 'agent_id', gen_random_uuid()),
      jsonb_build_object('id', 'e11', 'meter', 'tokens', 'license_id', gen_random_uuid()),
      jsonb_build_object('id', 'e12', 'meter', 'tokens', 'subject_key', ''),
      jsonb_build_object('id', 'e13', 'meter', 'tokens'),
      jsonb_build_object('id', 'e14', 'meter', 'capped', 'quantity', 6, 'license_id', :'l2'),
      jsonb_build_object('id', 'e15', 'meter', 'tokens', 'quantity', 2, 'subject_key', 'u'),
      jsonb_build_object('id', 'e15', 'meter', 'tokens', 'quantity', 2, 'subject_key', 'u')
    )
  ) as codes
\gset
select is(
  (
    select jsonb_agg(jsonb_build_array(d.d -> 'index', d.d -> 'id', d.d -> 'status', d.d -> 'code') order by d.n)
    from jsonb_array_elements((:'codes'::jsonb) -> 'data') with ordinality as d (d, n)
  ),
  '[[0, null, "rejected", "invalid_event"], [1, null, "rejected", "invalid_id"],
    [2, "e2", "rejected", "unknown_meter"], [3, "e3", "rejected", "meter_archived"],
    [4, "e4", "rejected", "invalid_quantity"], [5, "e5", "rejected", "invalid_timestamp"],
    [6, "e6", "rejected", "too_old"], [7, "e7", "rejected", "in_future"],
    [8, "e8", "rejected", "invalid_properties"], [9, "e9", "rejected", "properties_too_large"],
    [10, "e10", "rejected", "unknown_agent"], [11, "e11", "rejected", "unknown_license"],
    [12, "e12", "rejected", "invalid_subject_key"], [13, "e13", "rejected", "missing_subject"],
    [14, "e14", "rejected", "budget_exhausted"], [15, "e15", "accepted", null],
    [16, "e15", "duplicate", null]]'::jsonb,
  'each event is answered in input order with its index, id, status and code'
);
select is(
  (:'codes'::jsonb) - 'data',
  '{"object": "usage_ingest", "accepted": 1, "duplicates": 1, "rejected": 15}'::jsonb,
  'the counts add up: 1 accepted, 1 duplicate, 15 rejected'
);
select tests.clear_context();
select is(
  (
    select array_agg(row(e.id, e.quantity, e.subject_key, e.occurred_at = now())::text)
    from lic.metering_events as e
    where e.account_id = :'a'
  ),
  array['(e15,2,u,t)'],
  'only the accepted event is stored, once, at now() when occurred_at is left out'
);
select is(
  (
    select coalesce(sum(u.used), 0)
    from lic.budget_usage as u
    inner join lic.budgets as b on u.account_id = b.account_id and u.budget_id = b.id
    where b.meter_id = :'m_capped'
  ),
  0::numeric,
  'the event a hard budget refused debited nothing'
);

-- 3. RFC 3339 instants (private.rfc3339), under a session TimeZone that is
-- not UTC so an instant without an offset cannot pass as local time.
set local timezone = 'America/Los_Angeles';
select is(
  private.rfc3339('2024-02-29T12:00:00Z'), '2024-02-29 12:00:00+00'::timestamptz,
  'Feb 29 of a leap year is an instant'
);
select is(private.rfc3339('2027-02-29T12:00:00Z'), null, 'Feb 29 2027 is not (2027 is not a leap year)');
select is(
  array[
    private.rfc3339('2026-03-10T10:00:00+05:30'),
    private.rfc3339('2026-03-10T10:00:00-08:00'),
    private.rfc3339('2026-03-10T10:00:00-00:00')
  ],
  array['2026-03-10 04:30:00+00', '2026-03-10 18:00:00+00', '2026-03-10 10:00:00+00']::timestamptz[],
  'offsets are applied (+05:30, -08:00, -00:00)'
);
select is(
  array[private.rfc3339('2026-03-10T10:00:00.5Z'), private.rfc3339('2026-03-10T10:00:00.123456Z')],
  array['2026-03-10 10:00:00.5+00', '2026-03-10 10:00:00.123456+00']::timestamptz[],
  'fractional seconds are kept to the microsecond'
);
select is(
  array[private.rfc3339('2026-03-10t10:00:00z'), private.rfc3339('2026-03-10 10:00:00Z')],
  array['2026-03-10 10:00:00+00', '2026-03-10 10:00:00+00']::timestamptz[],
  'a lower-case t and z, and a space for the T, are accepted (RFC 3339 §5.6)'
);
select is(
  private.rfc3339('2026-03-10T10:00:00'), null, 'an instant without an offset is refused, not read as local time'
);
select is(
  private.rfc3339('2026-03-10T24:00:00Z'), null,
  '24:00:00 is refused (PostgreSQL alone would read the next midnight)'
);
select is(
  (
    select array_agg(v.value order by v.value)
    from
      unnest(array[
        '2026-04-31T00:00:00Z', '2026-13-01T00:00:00Z', '2026-00-01T00:00:00Z', '0000-01-01T00:00:00Z',
        '2026-03-10T23:59:60Z', '2026-03-10T10:60:00Z', '2026-03-10T10:00:00+16:00', '2026-03-10T10:00:00+0530',
        '2026-03-10T10:00Z', '2026-03-10T10:00:00.Z', 'infinity', 'now', '', '2026-03-10T10:00:00Z '
      ]) as v (value)
    where private.rfc3339(v.value) is not null
  ),
  null,
  'impossible dates and times, malformed offsets, words and trailing text are null, never an error'
);
select is(
  array[private.rfc3339('2026-03-10T10:00:00.123456789Z'), private.rfc3339('2026-03-10T10:00:00.1234567Z')],
  array['2026-03-10 10:00:00.123457+00', '2026-03-10 10:00:00.123457+00']::timestamptz[],
  'nanosecond and 7-digit fractions are accepted, rounded to the microsecond'
);
set local timezone = 'UTC';

-- 4. Duplicates: an event is its id and instant, within a batch and across.
select from tests.act_as(tests.secret_key('A'));
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'd1', 'meter', 'calls', 'quantity', 1, 'subject_key', 'dup',
        'occurred_at', :'h'::timestamptz
      ),
      jsonb_build_object(
        'id', 'd2', 'meter', 'calls', 'quantity', 2, 'subject_key', 'dup',
        'occurred_at', :'h'::timestamptz
      )
    )
  ) ->> 'accepted' as first_accepted
\gset
select
  api.ingest_events(
    jsonb_build_array(
      -- d1's instant written with another offset.
      jsonb_build_object(
        'id', 'd1', 'meter', 'calls', 'quantity', 1, 'subject_key', 'dup',
        'occurred_at', to_char(:'h'::timestamptz at time zone 'Asia/Kolkata', 'YYYY-MM-DD"T"HH24:MI:SS"+05:30"')
      ),
      jsonb_build_object(
        'id', 'd3', 'meter', 'calls', 'quantity', 4, 'subject_key', 'dup',
        'occurred_at', :'h'::timestamptz
      ),
      jsonb_build_object(
        'id', 'd3', 'meter', 'calls', 'quantity', 99, 'subject_key', 'dup',
        'occurred_at', :'h'::timestamptz
      ),
      -- The same id one second later is another event.
      jsonb_build_object(
        'id', 'd1', 'meter', 'calls', 'quantity', 8, 'subject_key', 'dup',
        'occurred_at', :'h'::timestamptz + interval '1 second'
      )
    )
  ) as again
\gset
select is(:'first_accepted'::text, '2', 'a first batch of two new events is accepted');
select is(
  (
    select jsonb_agg(jsonb_build_array(d ->> 'id', d ->> 'status', d ->> 'code') order by (d ->> 'index')::integer)
    from jsonb_array_elements((:'again'::jsonb) -> 'data') as d
  ),
  '[["d1", "duplicate", null], ["d3", "accepted", null], ["d3", "duplicate", null], ["d1", "accepted", null]]'::jsonb,
  'an id and instant stored before (in any offset) or earlier in the batch is a duplicate; another instant is new'
);
select tests.clear_context();
select is(
  (
    select array_agg(row(e.id, e.quantity)::text order by e.occurred_at, e.id)
    from lic.metering_events as e
    where e.account_id = :'a' and e.subject_key = 'dup'
  ),
  array['(d1,1)', '(d2,2)', '(d3,4)', '(d1,8)'],
  'duplicates change nothing stored: the first d3 (4, not 99) is kept and d1 is two events'
);
select is(
  (
    select row(sum(r.event_count), sum(r.quantity_sum))::text
    from lic.metering_rollups as r
    where r.account_id = :'a' and r.subject_key = 'dup'
  ),
  '(4,15)',
  'the rollups count each event once (4 events, 15)'
);
select from tests.act_as(tests.secret_key('B'));
select is(
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'd1', 'meter', 'tokens', 'quantity', 1, 'subject_key', 'dup',
        'occurred_at', :'h'::timestamptz
      )
    )
  ) ->> 'accepted',
  '1',
  'ids are per account: tenant B''s d1 at the same instant is its own event'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select is(
  (
    select jsonb_agg(jsonb_build_array(d ->> 'status', d ->> 'code') order by (d ->> 'index')::integer)
    from
      jsonb_array_elements(
        api.ingest_events(
          jsonb_build_array(
            jsonb_build_object('id', 'fix', 'meter', 'calls', 'quantity', -1, 'subject_key', 'fix'),
            jsonb_build_object('id', 'fix', 'meter', 'calls', 'quantity', 1, 'subject_key', 'fix')
          )
        ) -> 'data'
      ) as d
  ),
  '[["rejected", "invalid_quantity"], ["accepted", null]]'::jsonb,
  'a corrected event after its rejected copy in one batch is accepted (not a duplicate of nothing stored)'
);

-- 5. Rollups per UTC hour and subject (agent with its license filled in,
-- license, subject_key; nil uuid and '' for the absent ones).
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'r1', 'meter', 'calls', 'quantity', 3, 'agent_id', :'bot',
        'occurred_at', tests.usage_at(10)
      ),
      jsonb_build_object(
        'id', 'r2', 'meter', 'calls', 'quantity', 7, 'agent_id', :'bot',
        'occurred_at', tests.usage_at(5)
      ),
      jsonb_build_object(
        'id', 'r3', 'meter', 'calls', 'quantity', 4, 'license_id', :'l2',
        'occurred_at', tests.usage_at(15)
      ),
      jsonb_build_object(
        'id', 'r4', 'meter', 'calls', 'quantity', 1, 'subject_key', 'k',
        'occurred_at', tests.usage_at(50)
      ),
      jsonb_build_object(
        'id', 'r5', 'meter', 'calls', 'quantity', 2, 'subject_key', 'k', 'license_id', :'l2',
        'occurred_at', tests.usage_at(20)
      ),
      jsonb_build_object(
        'id', 'r6', 'meter', 'calls', 'quantity', 5, 'agent_id', :'bot',
        'occurred_at', tests.usage_at(70)
      ),
      jsonb_build_object(
        'id', 'r7', 'meter', 'calls', 'quantity', 2, 'agent_id', :'bot',
        'occurred_at', tests.usage_at(20)
      )
    )
  ) ->> 'accepted' as rolled
\gset
-- A later batch with an earlier but bigger event.
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'r8', 'meter', 'calls', 'quantity', 100, 'agent_id', :'bot',
        'occurred_at', tests.usage_at(1)
      )
    )
  ) ->> 'accepted' as rolled_again
\gset
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'u1', 'meter', 'seats', 'subject_key', 'k', 'properties', '{"user": "ann"}'::jsonb,
        'occurred_at', tests.usage_at(1)
      ),
      jsonb_build_object(
        'id', 'u2', 'meter', 'seats', 'subject_key', 'k', 'properties', '{"user": "bob"}'::jsonb,
        'occurred_at', tests.usage_at(2)
      ),
      jsonb_build_object(
        'id', 'u3', 'meter', 'seats', 'subject_key', 'k', 'properties', '{"user": "ann"}'::jsonb,
        'occurred_at', tests.usage_at(3)
      ),
      jsonb_build_object(
        'id', 'u4', 'meter', 'seats', 'subject_key', 'k', 'properties', '{"other": "x"}'::jsonb,
        'occurred_at', tests.usage_at(4)
      ),
      jsonb_build_object(
        'id', 'u5', 'meter', 'seats', 'subject_key', 'k', 'properties', '{"user": 7}'::jsonb,
        'occurred_at', tests.usage_at(5)
      ),
      jsonb_build_object(
        'id', 'u6', 'meter', 'seats', 'subject_key', 'k', 'properties', '{"user": "ann"}'::jsonb,
        'occurred_at', tests.usage_at(61)
      )
    )
  ) ->> 'accepted' as seated
\gset
select tests.clear_context();
select is(
  array[:'rolled', :'rolled_again', :'seated'], array['7', '1', '6'], 'the rollup batches are accepted whole'
);
select is(
  (
    select array_agg(s.row order by s.row)
    from (
      select row(r.hour - :'h'::timestamptz, r.agent_id, r.license_id, r.subject_key)::text as row
      from lic.metering_rollups as r
      where r.account_id = :'a' and r.meter_id = :'m_calls' and r.subject_key in ('', 'k')
    ) as s
  ),
  (
    select array_agg(s.row order by s.row)
    from (
      select row(s.hour, s.agent_id, s.license_id, s.subject_key)::text as row
      from (
        values
        (interval '0', :'bot'::uuid, :'l1'::uuid, ''),
        (interval '0', '00000000-0000-0000-0000-000000000000', :'l2', ''),
        (interval '0', '00000000-0000-0000-0000-000000000000', :'l2', 'k'),
        (interval '0', '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000', 'k'),
        (interval '1 hour', :'bot', :'l1', '')
      ) as s (hour, agent_id, license_id, subject_key)
    ) as s
  ),
  'one rollup row per UTC hour and subject; absent subjects are the nil uuid and '''''
);
select is(
  (
    select row(r.event_count, r.quantity_sum, r.quantity_max)::text
    from lic.metering_rollups as r
    where r.account_id = :'a' and r.meter_id = :'m_calls' and r.hour = :'h' and r.agent_id = :'bot'
  ),
  '(4,112,100)',
  'event_count, quantity_sum and quantity_max add up over two batches'
);
select is(
  (
    select row(r.latest_quantity, r.latest_at - :'h'::timestamptz)::text
    from lic.metering_rollups as r
    where r.account_id = :'a' and r.meter_id = :'m_calls' and r.hour = :'h' and r.agent_id = :'bot'
  ),
  row(2::numeric, interval '20 minutes')::text,
  'latest_quantity is the latest event''s, not the last sent (an earlier event sent later does not replace it)'
);
select is(
  (
    select array_agg(row(r.event_count, r.quantity_sum, r.latest_quantity)::text order by r.license_id, r.subject_key)
    from lic.metering_rollups as r
    where
      r.account_id = :'a' and r.meter_id = :'m_calls' and r.hour = :'h' and r.subject_key in ('', 'k')
      and r.agent_id = '00000000-0000-0000-0000-000000000000'
  ),
  array['(1,1,1)', '(1,4,4)', '(1,2,2)'],
  'the license, subject_key and license-with-subject_key rows hold their own event'
);
select is(
  (
    select array_agg(s.row order by s.row)
    from (
      select row(v.hour - :'h'::timestamptz, v.value)::text as row
      from lic.metering_rollup_values as v
      where
        v.account_id = :'a' and v.meter_id = :'m_seats' and v.subject_key = 'k'
        and v.agent_id = '00000000-0000-0000-0000-000000000000'
        and v.license_id = '00000000-0000-0000-0000-000000000000'
    ) as s
  ),
  (
    select array_agg(row(v.hour, v.value)::text order by row(v.hour, v.value)::text)
    from (
      values (interval '0', '7'), (interval '0', 'ann'), (interval '0', 'bob'), (interval '1 hour', 'ann')
    ) as v (hour, value)
  ),
  'a unique_count meter keeps each distinct property value once per hour and subject'
);
select is(
  (
    select array_agg(r.event_count order by r.hour)
    from lic.metering_rollups as r
    where r.account_id = :'a' and r.meter_id = :'m_seats'
  ),
  array[5, 1]::bigint[],
  '... while its rollup counts every event, with or without the property'
);

-- 6. An agent records for itself, with its license filled in.
select from tests.act_as(:'bot_token');
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object('id', 'ag1', 'meter', 'tokens', 'quantity', 3),
      jsonb_build_object('id', 'ag2', 'meter', 'tokens', 'agent_id', :'other'),
      jsonb_build_object('id', 'ag3', 'meter', 'tokens', 'agent_id', :'bot', 'subject_key', 'job-1')
    )
  ) as agent
\gset
select is(
  (
    select jsonb_agg(jsonb_build_array(d ->> 'id', d ->> 'status', d ->> 'code') order by (d ->> 'index')::integer)
    from jsonb_array_elements((:'agent'::jsonb) -> 'data') as d
  ),
  '[["ag1", "accepted", null], ["ag2", "rejected", "forbidden_subject"], ["ag3", "accepted", null]]'::jsonb,
  'an agent records for itself (named or not) and is refused another agent''s id'
);
select tests.clear_context();
select is(
  (
    select array_agg(row(e.id, e.agent_id, e.license_id, e.subject_key)::text order by e.id)
    from lic.metering_events as e
    where e.account_id = :'a' and e.id like 'ag%'
  ),
  array[
    row('ag1', :'bot'::uuid, :'l1'::uuid, null::text)::text, row('ag3', :'bot'::uuid, :'l1'::uuid, 'job-1')::text
  ],
  'the agent''s events carry its id and its license'
);
select is(
  (
    select array_agg(c.code order by c.code)
    from (
      select d ->> 'code' as code from jsonb_array_elements((:'codes'::jsonb) -> 'data') as d
      union
      select d ->> 'code' from jsonb_array_elements((:'agent'::jsonb) -> 'data') as d
    ) as c
    where c.code is not null
  ),
  (
    select array_agg(btrim(c.code) order by btrim(c.code))
    from
      regexp_split_to_table(
        substring(
          obj_description('api.ingest_events(jsonb)'::regprocedure, 'pg_proc') from 'per-event codes: ([^.]*)\.'
        ),
        ','
      ) as c (code)
  ),
  'the codes answered above are exactly the per-event codes the COMMENT of api.ingest_events names'
);
select from tests.act_as(:'bot_token');
select is(
  (
    api.ingest_events(
      jsonb_build_array(jsonb_build_object('id', 'ag4', 'meter', 'tokens', 'quantity', 5, 'license_id', :'l2'))
    ) #>> '{data, 0, code}'
  ),
  'forbidden_subject',
  'an agent of L1 may not record usage for license L2 (it would count against L2''s usage and budgets)'
);
select tests.clear_context();

-- 7. A hard budget: events in order, each if it fits (p3's 6 does not fit the
-- 5 left); a batch it refuses whole raises LBUDG and leaves nothing behind.
select from tests.act_as(tests.secret_key('A'));
select is((api.validate_license(:'l2_key')).code, 'VALID', 'L2 is VALID while its hard budgets have room');
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object('id', 'p0', 'meter', 'spend', 'quantity', 10, 'license_id', :'l2'),
      jsonb_build_object('id', 'p1', 'meter', 'spend', 'quantity', 10, 'license_id', :'l2'),
      jsonb_build_object('id', 'p2', 'meter', 'spend', 'quantity', 10, 'license_id', :'l2'),
      jsonb_build_object('id', 'p3', 'meter', 'spend', 'quantity', 6, 'license_id', :'l2')
    )
  ) as prefix
\gset
select is(
  (
    select jsonb_agg(jsonb_build_array(d ->> 'status', d ->> 'code') order by (d ->> 'index')::integer)
    from jsonb_array_elements((:'prefix'::jsonb) -> 'data') as d
  ),
  '[["accepted", null], ["accepted", null], ["rejected", "budget_exhausted"], ["rejected", "budget_exhausted"]]'::jsonb,
  'a hard budget of 25 takes 10 + 10 in order and refuses the rest of the batch (budget_exhausted)'
);
select tests.clear_context();
select is(
  (
    select row(u.used, e.total, r.total)::text
    from lic.budget_usage as u
    cross join (
      select sum(e.quantity) as total
      from lic.metering_events as e
      where e.account_id = :'a' and e.meter_id = :'m_spend'
    ) as e
    cross join (
      select sum(r.quantity_sum) as total
      from lic.metering_rollups as r
      where r.account_id = :'a' and r.meter_id = :'m_spend'
    ) as r
    where u.budget_id = :'b_spend'
  ),
  '(20,20,20)',
  'used, the stored events and the rollups all equal the accepted sum (20)'
);
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  format(
    'select api.ingest_events(%L)',
    jsonb_build_array(
      jsonb_build_object('id', 'q0', 'meter', 'spend', 'quantity', 6, 'license_id', :'l2'),
      jsonb_build_object('id', 'q1', 'meter', 'spend', 'quantity', 6, 'license_id', :'l2')
    )
  ),
  'LBUDG',
  'a hard budget is exhausted: no event of this batch fits in what is left',
  'a batch the hard budget refuses whole raises LBUDG'
);
select tests.clear_context();
select is(
  (
    select row(u.used, e.n, r.total)::text
    from lic.budget_usage as u
    cross join (
      select count(*) as n
      from lic.metering_events as e
      where e.account_id = :'a' and e.id in ('q0', 'q1')
    ) as e
    cross join (
      select sum(r.quantity_sum) as total
      from lic.metering_rollups as r
      where r.account_id = :'a' and r.meter_id = :'m_spend'
    ) as r
    where u.budget_id = :'b_spend'
  ),
  '(20,0,20)',
  '... and leaves nothing: no event, no rollup change, used unchanged'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 'q2', 'meter', 'spend', 'quantity', 5, 'license_id', :'l2'))
  ) ->> 'accepted',
  '1',
  'what is left (5) still fits exactly'
);
select is(
  (api.validate_license(:'l2_key')).code, 'BUDGET_EXHAUSTED',
  'a license whose hard budget is spent is BUDGET_EXHAUSTED'
);
select is(
  (api.validate_license(:'l4_key')).code, 'VALID', 'a hard budget spent in a previous period does not count'
);
select is(
  (
    select array_agg(concat(d ->> 'status', ':', d ->> 'code') order by (d ->> 'index')::integer)
    from jsonb_array_elements(
      api.ingest_events(jsonb_build_array(
        jsonb_build_object(
          'id', 'backdated', 'meter', 'spend', 'quantity', 1, 'license_id', :'l4',
          'occurred_at', to_char(date_trunc('month', now(), 'UTC') - interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        ),
        jsonb_build_object('id', 'current', 'meter', 'spend', 'quantity', 1, 'license_id', :'l4')
      )) -> 'data'
    ) as d
  ),
  array['rejected:budget_exhausted', 'accepted:'],
  'a backdated event debits its own period: last month''s spent budget refuses it, this month''s takes the other'
);
select throws_ok(
  format(
    'select api.ingest_events(%L)',
    jsonb_build_array(jsonb_build_object('id', 'q3', 'meter', 'spend', 'quantity', 0.001, 'license_id', :'l2'))
  ),
  'LBUDG',
  null,
  'a spent hard budget refuses even the smallest amount'
);
select is(
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 'q4', 'meter', 'spend', 'quantity', 0, 'license_id', :'l2'))
  ) ->> 'accepted',
  '1',
  '... but still takes a quantity of 0'
);
select is(
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 'q5', 'meter', 'spend', 'quantity', 50, 'subject_key', 'other'))
  ) ->> 'accepted',
  '1',
  'an event of another subject is not held by L2''s budget'
);
select lives_ok(
  format(
    'select api.ingest_events(%L)',
    jsonb_build_array(
      jsonb_build_object('id', 'w1', 'meter', 'pair', 'quantity', 20, 'agent_id', :'bot'),
      jsonb_build_object('id', 'w2', 'meter', 'pair', 'quantity', 85, 'license_id', :'l1')
    )
  ),
  'bot''s 20 is over its own budget of 10, but L1''s 85 fits L1''s 100: the batch is not refused whole'
);
select tests.clear_context();
select is(
  (
    select array_agg(e.id)
    from lic.metering_events as e
    where e.account_id = :'a' and e.meter_id = :'m_pair'
  ),
  array['w2'],
  '... and the license''s event is recorded'
);

-- 8. A soft budget accepts past its limit; thresholds and budget.exceeded
-- are emitted once per period.
select from tests.act_as(tests.secret_key('A'));
select
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 's0', 'meter', 'soft', 'quantity', 4, 'license_id', :'l3'))
  ) ->> 'accepted' as s0
\gset
select
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 's1', 'meter', 'soft', 'quantity', 4, 'license_id', :'l3'))
  ) ->> 'accepted' as s1
\gset
select
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 's2', 'meter', 'soft', 'quantity', 4, 'license_id', :'l3'))
  ) ->> 'accepted' as s2
\gset
select
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 's3', 'meter', 'soft', 'quantity', 4, 'license_id', :'l3'))
  ) ->> 'accepted' as s3
\gset
select is(
  array[:'s0', :'s1', :'s2', :'s3'], array['1', '1', '1', '1'],
  'a soft budget of 10 accepts four events of 4, one batch each'
);
select is((api.validate_license(:'l3_key')).code, 'VALID', 'a license past a soft budget is still VALID');
select tests.clear_context();
select is(
  (
    select row(u.used, u.thresholds_reached, u.exceeded_at = now())::text
    from lic.budget_usage as u
    where u.budget_id = :'b_soft'
  ),
  '(16,"{50,100}",t)',
  'used is 16, with both thresholds and the excess recorded for the period'
);
select is(
  (
    select array_agg(coalesce(e.object ->> 'threshold', e.type) order by e.id)
    from lic.events as e
    where e.account_id = :'a' and e.type like 'budget.%' and e.object ->> 'budget_id' = :'b_soft'
  ),
  array['50', '100', 'budget.exceeded'],
  'budget.threshold_reached 50 (at 8), then 100 and budget.exceeded (at 12), once each'
);
select is(
  (
    select array_agg(e.object - 'period_start')
    from lic.events as e
    where e.account_id = :'a' and e.type = 'budget.exceeded' and e.object ->> 'budget_id' = :'b_soft'
  ),
  array[
    jsonb_build_object(
      'object', 'budget_usage', 'budget_id', :'b_soft', 'meter_id', :'m_soft', 'agent_id', null, 'license_id', :'l3',
      'period', 'month', 'limit', 10, 'hard', false, 'used', 12
    )
  ],
  'budget.exceeded carries the budget, its limit and what was used when it passed it'
);
-- The limit raised in the same period: 50% is crossed again, but was reached.
update lic.budgets set "limit" = 100
where id = :'b_soft';
select from tests.act_as(tests.secret_key('A'));
select
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 's4', 'meter', 'soft', 'quantity', 40, 'license_id', :'l3'))
  ) ->> 'accepted' as s4
\gset
select tests.clear_context();
select is(
  (
    select row(:'s4', count(*))::text
    from lic.events as e
    where e.account_id = :'a' and e.type like 'budget.%' and e.object ->> 'budget_id' = :'b_soft'
  ),
  '(1,3)',
  'crossing a threshold again in the same period emits nothing'
);
-- An hour budget: the previous hour and this one are two periods.
select from tests.act_as(tests.secret_key('A'));
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'h1', 'meter', 'hourly', 'quantity', 6, 'license_id', :'l3', 'occurred_at', now() - interval '1 hour'
      )
    )
  ) ->> 'accepted' as h1
\gset
select
  api.ingest_events(
    jsonb_build_array(jsonb_build_object('id', 'h2', 'meter', 'hourly', 'quantity', 6, 'license_id', :'l3'))
  ) ->> 'accepted' as h2
\gset
select tests.clear_context();
select is(
  (
    select array_agg((e.object ->> 'period_start')::timestamptz order by e.id)
    from lic.events as e
    where e.account_id = :'a' and e.type = 'budget.threshold_reached' and e.object ->> 'budget_id' = :'b_hourly'
  ),
  array[date_trunc('hour', now() - interval '1 hour', 'UTC'), date_trunc('hour', now(), 'UTC')],
  'a threshold is emitted again in a new period (one per UTC hour)'
);

-- 9. api.check_budget: allowed and remaining without spending.
select from tests.act_as(tests.secret_key('A'));
select is(
  api.check_budget(meter_code => 'tokens', license_id => :'l1') - 'object',
  '{"allowed": true, "remaining": null, "meter": "tokens", "budgets": []}'::jsonb,
  'with no budget: allowed, remaining null, no budgets'
);
select is(
  (
    select row(c ->> 'allowed', c ->> 'remaining', jsonb_array_length(c -> 'budgets'))::text
    from api.check_budget(meter_code => 'quota', license_id => :'l1', amount => 30) as c
  ),
  '(true,30,2)',
  'a license''s hard budget of 30 allows 30 before anything is spent (its soft budget does not limit)'
);
select tests.clear_context();
select from tests.act_as(:'bot_token');
select
  api.ingest_events(jsonb_build_array(jsonb_build_object('id', 'cb1', 'meter', 'quota', 'quantity', 12)))
  ->> 'accepted' as cb1
\gset
select tests.clear_context();
select is(
  (
    select array_agg(row(u.budget_id = :'b_quota_agent', u.used)::text order by u.budget_id = :'b_quota_agent')
    from lic.budget_usage as u
    where u.budget_id in (:'b_quota_hard', :'b_quota_soft', :'b_quota_agent')
  ),
  array['(f,12)', '(f,12)', '(t,12)'],
  'the agent''s event debits its own budget and both of its license''s'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (
    select array_agg(row(c.amount, c.r ->> 'allowed', c.r ->> 'remaining')::text order by c.amount)
    from (
      select
        n.amount,
        api.check_budget(meter_id => :'m_quota', license_id => :'l1', amount => n.amount) as r
      from unnest(array[18, 19]) as n (amount)
    ) as c
  ),
  array['(18,true,18)', '(19,false,18)'],
  'after 12 the license has 18 left: 18 is allowed, 19 is not'
);
select is(
  (
    select row(c ->> 'allowed', c ->> 'remaining', jsonb_array_length(c -> 'budgets'))::text
    from api.check_budget(meter_code => 'soft', license_id => :'l3', amount => 1000) as c
  ),
  '(true,,1)',
  'a soft budget past its limit still allows, with remaining null'
);
select tests.clear_context();
select from tests.act_as(:'bot_token');
select is(
  (
    select row(c ->> 'allowed', c ->> 'remaining', jsonb_array_length(c -> 'budgets'))::text
    from api.check_budget(meter_code => 'quota') as c
  ),
  '(true,18,3)',
  'an agent checks for itself: its own budget (38 left) and its license''s (18 left), the least remaining'
);
select is(
  api.check_budget(meter_code => 'quota', agent_id => :'bot', amount => 19) ->> 'allowed',
  'false',
  '... and 19 does not fit'
);
select throws_ok(
  format('select api.check_budget(meter_code => %L, agent_id => %L)', 'quota', :'other'),
  'LDNID', 'an agent checks only its own budgets', 'an agent asking about another agent raises LDNID'
);
select tests.clear_context();
select is(
  (
    select array_agg(u.used order by u.budget_id)
    from lic.budget_usage as u
    where u.budget_id in (:'b_quota_hard', :'b_quota_soft', :'b_quota_agent')
  ),
  array[12, 12, 12]::numeric[],
  'checking spent nothing'
);
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.check_budget(meter_code => %L, license_id => %L, amount => -1)', 'quota', :'l1'),
  'LINVL', null, 'check_budget with a negative amount raises LINVL'
);
select throws_ok(
  $$select api.check_budget(meter_code => 'quota')$$,
  'LINVL', null, 'check_budget with neither agent nor license raises LINVL'
);
select throws_ok(
  format(
    'select api.check_budget(meter_id => %L, meter_code => %L, license_id => %L)', :'m_quota', 'quota', :'l1'
  ),
  'LINVL', null, 'check_budget with both meter_id and meter_code raises LINVL'
);
select throws_ok(
  format('select api.check_budget(meter_code => %L, license_id => %L)', 'nope', :'l1'),
  'LNTFD', 'meter not found', 'check_budget for an unknown meter raises LNTFD'
);
select throws_ok(
  format('select api.check_budget(meter_code => %L, agent_id => %L)', 'quota', gen_random_uuid()),
  'LNTFD', 'agent not found', 'check_budget for an unknown agent raises LNTFD'
);
select throws_ok(
  format('select api.check_budget(meter_code => %L, license_id => %L)', 'quota', gen_random_uuid()),
  'LNTFD', 'license not found', 'check_budget for an unknown license raises LNTFD'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('B'));
select throws_ok(
  format('select api.check_budget(meter_code => %L, license_id => %L)', 'quota', :'l1'),
  'LNTFD', null, 'tenant B cannot check tenant A''s meter'
);
select tests.clear_context();

-- 9b. A license's budget over its own events only (scope subject) leaves
-- out its agents' and its subject keys' events; one over all its subjects
-- counts them all.
insert into lic.meters (account_id, code, name, aggregation) values (:'a', 'own', 'Own', 'sum')
returning id as m_own
\gset
insert into lic.budgets (account_id, meter_id, license_id, period, "limit", hard, own_events_only)
values
(:'a', :'m_own', :'l1', 'month', 100, true, true),
(:'a', :'m_own', :'l1', 'month', 100, true, false);
select from tests.act_as(tests.secret_key('A'));
select is(
  (
    select array_agg(b.scope order by b.scope)
    from api.list_budgets(license_id => :'l1', meter_id => :'m_own') as b
  ),
  array['all_subjects', 'subject'],
  'the contract names the two scopes of a license''s budget'
);
select is(
  (
    api.ingest_events(events => format(
      '[{"id": "own-1", "meter": "own", "quantity": 3, "license_id": "%1$s"},'
      '{"id": "own-2", "meter": "own", "quantity": 5, "license_id": "%1$s", "subject_key": "alice"},'
      '{"id": "own-3", "meter": "own", "quantity": 7, "agent_id": "%2$s"}]',
      :'l1', :'bot'
    )::jsonb) ->> 'accepted'
  )::integer,
  3,
  'the license''s own event, a subject key''s and its agent''s are accepted'
);
select is(
  (
    select array_agg(b.scope || '=' || b.used::text order by b.scope)
    from api.list_budgets(license_id => :'l1', meter_id => :'m_own') as b
  ),
  array['all_subjects=15', 'subject=3'],
  'the own-events budget counted only the license''s own 3; the all-subjects one all 15'
);
select is(
  (
    select array[
      (api.check_budget(meter_code => 'own', license_id => :'l1') -> 'budgets') @> '[{"used": 3}]',
      jsonb_array_length(api.check_budget(meter_code => 'own', agent_id => :'bot') -> 'budgets') = 1
    ]
  ),
  array[true, true],
  'check_budget for the license weighs both budgets; for its agent only the all-subjects one'
);
select tests.clear_context();

-- 10. Under a session TimeZone that is not UTC, periods and hours stay UTC.
set local timezone = 'America/Los_Angeles';
select
  -- Yesterday 03:00 UTC: the evening before in Los Angeles.
  date_trunc('day', now(), 'UTC') - interval '21 hours' as tz_day,
  -- An hour into this UTC month (the previous one right after midnight):
  -- still the previous month in Los Angeles.
  case
    when date_trunc('month', now(), 'UTC') + interval '1 hour' <= now()
      then date_trunc('month', now(), 'UTC') + interval '1 hour'
    else date_trunc('month', now() - interval '1 day', 'UTC') + interval '1 hour'
  end as tz_month
\gset
select from tests.act_as(tests.secret_key('A'));
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'tz1', 'meter', 'tzm', 'quantity', 1, 'license_id', :'l5', 'occurred_at', :'tz_day'::timestamptz
      ),
      jsonb_build_object(
        'id', 'tz2', 'meter', 'tzm', 'quantity', 2, 'license_id', :'l5', 'occurred_at', :'tz_month'::timestamptz
      )
    )
  ) ->> 'accepted' as tz_accepted
\gset
select tests.clear_context();
select is(
  (
    select array_agg(row(u.period_start, u.used)::text order by u.period_start)
    from lic.budget_usage as u
    where u.budget_id = :'b_tz_day'
  ),
  (
    select array_agg(row(s.period_start, s.used)::text order by s.period_start)
    from (
      select
        date_trunc('day', v.at, 'UTC') as period_start,
        sum(v.quantity) as used
      from (values (:'tz_day'::timestamptz, 1), (:'tz_month'::timestamptz, 2)) as v (at, quantity)
      group by date_trunc('day', v.at, 'UTC')
    ) as s
  ),
  'in Los Angeles, a day budget''s periods still start at UTC midnight'
);
select is(
  (
    select array_agg(u.period_start order by u.period_start)
    from lic.budget_usage as u
    where u.budget_id = :'b_tz_month'
  ),
  (
    select array_agg(distinct date_trunc('month', t.at, 'UTC'))
    from unnest(array[:'tz_day'::timestamptz, :'tz_month'::timestamptz]) as t (at)
  ),
  '... and a month budget''s at the first of the UTC month'
);
select is(
  array[
    private.budget_period_start('hour', '2026-03-01 03:30:00+00'),
    private.budget_period_start('day', '2026-03-01 03:30:00+00'),
    private.budget_period_start('month', '2026-03-01 03:30:00+00')
  ],
  array['2026-03-01 03:00:00+00', '2026-03-01 00:00:00+00', '2026-03-01 00:00:00+00']::timestamptz[],
  'private.budget_period_start is UTC-aligned whatever the session TimeZone'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (
    select array_agg((b ->> 'period_start')::timestamptz order by b ->> 'period')
    from jsonb_array_elements(api.check_budget(meter_code => 'tzm', license_id => :'l5') -> 'budgets') as b
  ),
  array[date_trunc('day', now(), 'UTC'), date_trunc('month', now(), 'UTC')],
  'api.check_budget reads the UTC day and month'
);
-- Half-hour offsets make a local hour differ from a UTC hour.
set local timezone = 'Asia/Kolkata';
select
  api.ingest_events(
    jsonb_build_array(
      jsonb_build_object(
        'id', 'tz3', 'meter', 'tzm', 'quantity', 1, 'subject_key', 'ist',
        'occurred_at', tests.usage_at(10)
      ),
      jsonb_build_object(
        'id', 'tz4', 'meter', 'tzm', 'quantity', 1, 'subject_key', 'ist',
        'occurred_at', tests.usage_at(50)
      )
    )
  ) ->> 'accepted' as tz_ist
\gset
select tests.clear_context();
select is(
  (
    select array_agg(row(r.hour, r.event_count)::text)
    from lic.metering_rollups as r
    where r.account_id = :'a' and r.subject_key = 'ist'
  ),
  array[row(:'h'::timestamptz, 2::bigint)::text],
  'in Asia/Kolkata (+05:30), :10 and :50 past a UTC hour share that UTC hour''s rollup'
);
set local timezone = 'UTC';
select is(array[:'tz_accepted', :'tz_ist'], array['2', '2'], 'the time zone batches were accepted whole');

-- 11. Append-only: no UPDATE or DELETE, even for the superuser.
select throws_ok(
  format('update lic.metering_events set quantity = 0 where account_id = %L', :'a'),
  'LSTAT', 'usage events are append-only: they cannot be changed or deleted', 'the superuser cannot update events'
);
select throws_ok(
  format('delete from lic.metering_events where account_id = %L', :'a'),
  'LSTAT', 'usage events are append-only: they cannot be changed or deleted', 'the superuser cannot delete events'
);
select throws_ok(
  format('delete from lic.metering_events_default where account_id = %L', :'a'),
  'LSTAT', null, '... nor through a partition'
);
select is(
  (
    select array_agg(format('%s %s %s', r.role, t.tbl, p.priv) order by r.role, t.tbl, p.priv)
    from unnest(array['lic_app', 'lic_definer', 'lic_worker', 'lic_reporting']) as r (role)
    cross join (
      select 'lic.metering_events'::regclass as tbl
      union all
      select i.inhrelid::regclass
      from pg_catalog.pg_inherits as i
      where i.inhparent = 'lic.metering_events'::regclass
    ) as t
    cross join unnest(array['update', 'delete', 'truncate']) as p (priv)
    where has_table_privilege(r.role, t.tbl, p.priv)
  ),
  null,
  'no lic_* role but maintenance may update, delete or truncate events, on the table or a partition'
);
select from tests.act_as_definer(:'a');
select throws_ok(
  format('delete from lic.metering_events where account_id = %L', :'a'),
  '42501', null, 'lic_definer (what the api runs as) has no DELETE on events'
);
select tests.clear_context();

-- 12. Tenant isolation: B sees none of A's usage; A's names mean nothing to B.
select from tests.act_as_definer(:'b');
select is(
  (
    select array_agg(t.tbl::text order by t.tbl::text)
    from
      unnest(array[
        'lic.meters', 'lic.metering_events', 'lic.metering_rollups', 'lic.metering_rollup_values', 'lic.budgets',
        'lic.budget_usage'
      ]::regclass[]) as t (tbl)
    where tests.count_rows(t.tbl, :'b', false) > 0
  ),
  null,
  'in tenant B''s context no usage table shows a row of another tenant'
);
select from tests.act_as_definer(:'a');
select is(
  (
    select array_agg(t.tbl::text order by t.tbl::text)
    from
      unnest(array[
        'lic.meters', 'lic.metering_events', 'lic.metering_rollups', 'lic.metering_rollup_values', 'lic.budgets',
        'lic.budget_usage'
      ]::regclass[]) as t (tbl)
    where tests.count_rows(t.tbl, :'a') = 0
  ),
  null,
  '... while A''s context sees A''s rows in each (the check above is not vacuous)'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('B'));
select is(
  (
    select jsonb_agg(d ->> 'code' order by (d ->> 'index')::integer)
    from
      jsonb_array_elements(
        api.ingest_events(
          jsonb_build_array(
            jsonb_build_object('id', 'x1', 'meter', 'calls', 'subject_key', 'u'),
            jsonb_build_object('id', 'x2', 'meter', 'tokens', 'license_id', :'l1'),
            jsonb_build_object('id', 'x3', 'meter', 'tokens', 'agent_id', :'bot')
          )
        ) -> 'data'
      ) as d
  ),
  '["unknown_meter", "unknown_license", "unknown_agent"]'::jsonb,
  'tenant B cannot record on A''s meter, license or agent'
);
select tests.clear_context();

-- 12b. A suspended account records nothing; reactivated, it records again.
select tests.clear_context();
select is(
  private.set_account_status(account_id => :'a', status => 'suspended', reason => 'invoice unpaid'), 'active',
  'suspending answers the status before'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  $$select api.ingest_events(events => '[{"id": "susp-1", "meter": "calls", "subject_key": "k"}]')$$,
  'LACCT', null,
  'a suspended account cannot record usage (LACCT)'
);
select is(
  (select array[status, status_reason] from api.get_account()), array['suspended', 'invoice unpaid'],
  'the account reads its own suspension and its reason'
);
select tests.clear_context();
select throws_ok(
  format($$select private.set_account_status(account_id => %L, status => 'active', reason => 'x')$$, :'a'),
  'LINVL', null,
  'only a suspension takes a reason'
);
select throws_ok(
  $$select private.set_account_status(account_id => '00000000-0000-0000-0000-000000000001', status => 'suspended')$$,
  'LNTFD', null,
  'suspending an unknown account raises LNTFD'
);
select is(
  private.set_account_status(account_id => :'a', status => 'active'), 'suspended',
  'reactivating answers suspended'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.ingest_events(events => '[{"id": "susp-1", "meter": "calls", "subject_key": "k"}]') ->> 'accepted')::integer,
  1,
  'reactivated, the account records usage again'
);
select tests.clear_context();

-- 13. After all of the above, sum(rollups) = sum(events) for A.
select is_empty(
  format(
    $$
      select *
      from (
        select
          e.meter_id, date_trunc('hour', e.occurred_at, 'UTC') as hour,
          coalesce(e.agent_id, '00000000-0000-0000-0000-000000000000') as agent_id,
          coalesce(e.license_id, '00000000-0000-0000-0000-000000000000') as license_id,
          coalesce(e.subject_key, '') as subject_key, count(*) as n, sum(e.quantity) as total, max(e.quantity) as top
        from lic.metering_events as e where e.account_id = %1$L
        group by 1, 2, 3, 4, 5
      ) as e
      full join (select * from lic.metering_rollups where account_id = %1$L) as r
        using (meter_id, hour, agent_id, license_id, subject_key)
      where
        e.n is distinct from r.event_count or e.total is distinct from r.quantity_sum
        or e.top is distinct from r.quantity_max
    $$,
    :'a'
  ),
  'every rollup row equals its events (count, sum, max) and no event lacks one'
);

select * from finish();
rollback;
