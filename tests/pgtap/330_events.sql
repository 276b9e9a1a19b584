-- The events list: newest first, filtered by type, keyset pages, one event
-- by id, tenant isolation and key kinds.
begin;
select plan(24);

-- The account's event ids as the superuser sees them, newest first.
create function tests.event_ids(account_id uuid, type text default null)
returns setof uuid
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select e.id from lic.events as e
  where e.account_id = event_ids.account_id and (event_ids.type is null or e.type = event_ids.type)
  order by e.id desc;
$$;
grant execute on function tests.event_ids(uuid, text) to lic_app;

select from tests.create_account('A');
select from tests.create_account('B');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('A'), 'std', 'Standard');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('B'), 'std', 'Standard');

select from tests.act_as(tests.secret_key('B'));
select tests.remember('BL', (api.create_license(policy_code => 'std')).id);
select tests.clear_context();
select tests.remember('B event', e.id) from lic.events as e
where e.account_id = tests.account_id('B');

select from tests.act_as(tests.secret_key('A'));
select tests.remember('L1', (api.create_license(policy_code => 'std')).id);
select tests.remember('m1', (api.activate_machine(license_id => tests.id('L1'), fingerprint => 'one')).id);
select tests.remember('L2', (api.create_license(policy_code => 'std')).id);
select tests.remember('m2', (api.activate_machine(license_id => tests.id('L2'), fingerprint => 'two')).id);
select from api.deactivate_machine(machine_id => tests.id('m2'));
select tests.remember_secret('agent', (api.create_agent(name => 'bot')).token);

select cmp_ok(
  (select count(*)::integer from tests.event_ids(tests.account_id('A'))), '=', 6,
  'the changes above wrote six events'
);
select results_eq(
  'select id from api.list_events(page_limit => 100)',
  format('select * from tests.event_ids(%L)', tests.account_id('A')),
  'the list shows every event of the account, newest first'
);
select results_eq(
  'select type from api.list_events(page_limit => 100)',
  $$
    select * from unnest(array[
      'agent.created', 'machine.deactivated', 'machine.activated', 'license.created', 'machine.activated',
      'license.created'
    ])
  $$,
  'events are listed in the order they happened, newest first'
);
select results_eq(
  $$select id from api.list_events(type => 'machine.activated')$$,
  format('select * from tests.event_ids(%L, %L)', tests.account_id('A'), 'machine.activated'),
  'the list filters by type'
);
select is(
  (
    select array_agg(e.data -> 'object' ->> 'id' order by e.id desc)
    from api.list_events(type => 'machine.activated') as e
  ),
  array[tests.id('m2')::text, tests.id('m1')::text],
  'a filtered list carries the objects of its events'
);
select is_empty(
  $$select id from api.list_events(type => 'nothing.happened')$$,
  'a type without events lists nothing'
);

-- Keyset pages, with and without a type.
select tests.remember(format('e%s', e.n), e.id)
from tests.event_ids(tests.account_id('A')) with ordinality as e (id, n);
select results_eq(
  'select id from api.list_events(page_limit => 2)',
  $$select * from unnest(array[tests.id('e1'), tests.id('e2'), tests.id('e3')])$$,
  'a page of two fetches one row more, which says that more exist'
);
select results_eq(
  format('select id from api.list_events(page_limit => 2, starting_after => %L)', tests.id('e2')),
  $$select * from unnest(array[tests.id('e3'), tests.id('e4'), tests.id('e5')])$$,
  'starting_after walks on from the cursor'
);
select results_eq(
  format('select id from api.list_events(page_limit => 2, ending_before => %L)', tests.id('e5')),
  $$select * from unnest(array[tests.id('e2'), tests.id('e3'), tests.id('e4')])$$,
  'ending_before walks back from the cursor'
);
select results_eq(
  format($$select id from api.list_events(type => 'license.created', starting_after => %L)$$, tests.id('e1')),
  format('select * from tests.event_ids(%L, %L)', tests.account_id('A'), 'license.created'),
  'starting_after with a type lists the older events of that type'
);
select results_eq(
  format($$select id from api.list_events(type => 'license.created', ending_before => %L)$$, tests.id('e6')),
  format('select * from tests.event_ids(%L, %L) limit 1', tests.account_id('A'), 'license.created'),
  'ending_before with a type lists the newer events of that type'
);
select throws_ok(
  'select * from api.list_events(page_limit => 0)', 'LINVL', null, 'a page of zero raises LINVL'
);
select throws_ok(
  format('select * from api.list_events(starting_after => %L, ending_before => %L)', tests.id('e1'), tests.id('e2')),
  'LINVL', null, 'two cursors raise LINVL'
);

-- One event.
select is(
  (
    select row(e.type, e.data -> 'object' ->> 'id', e.data -> 'previous_attributes')::text
    from api.get_event(event_id => tests.id('e2')) as e
  ),
  row('machine.deactivated', tests.id('m2')::text, 'null'::jsonb)::text,
  'api.get_event returns the type and data.object with data.previous_attributes'
);
select is(
  (api.get_event(event_id => tests.id('e1'))).created, now(),
  'an event carries when it was created'
);
select is(
  (api.get_event(event_id => tests.id('e1'))).data -> 'object' ->> 'token', null,
  'agent.created does not carry the token'
);
select throws_ok(
  format('select api.get_event(event_id => %L)', gen_random_uuid()),
  'LNTFD', null, 'an unknown event raises LNTFD'
);

-- Tenant isolation.
select throws_ok(
  format('select api.get_event(event_id => %L)', tests.id('B event')),
  'LNTFD', null, 'api.get_event of another tenant''s event raises LNTFD'
);
select is_empty(
  format('select id from api.list_events(page_limit => 100) where id = %L', tests.id('B event')),
  'the list never shows another tenant''s event'
);
select is_empty(
  format(
    $$select id from api.list_events(type => 'license.created', page_limit => 100) where id = %L$$,
    tests.id('B event')
  ),
  'the filtered list never shows another tenant''s event'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('B'));
select results_eq(
  'select id from api.list_events()', $$select tests.id('B event')$$, 'tenant B lists only its own event'
);
select tests.clear_context();

-- Key kinds.
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.clear_context();
select from tests.act_as(tests.key_secret('A pk'));
select throws_ok('select * from api.list_events()', 'LDNID', null, 'a publishable key cannot list events');
select tests.clear_context();
select from tests.act_as(tests.secret('agent'));
select throws_ok('select * from api.list_events()', 'LDNID', null, 'an agent token cannot list events');
select throws_ok(
  format('select api.get_event(event_id => %L)', tests.id('e1')),
  'LDNID', null, 'an agent token cannot read an event'
);
select tests.clear_context();
select * from finish();
rollback;
