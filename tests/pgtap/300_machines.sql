-- Machines: activation within max_machines, idempotent re-activation,
-- unusable licenses, heartbeats and dead machines, deactivation, transfer,
-- listing, events, tenant isolation and key kinds.
begin;
select plan(74);

select from tests.create_account('A');
select from tests.create_account('B');

-- Policies and customers, written as the superuser.
with p as (
  insert into lic.license_policies (account_id, code, name, max_machines)
  values (tests.account_id('A'), 'three', 'Three machines', 3)
  returning id
)

select tests.remember('three', p.id) from p;
insert into lic.license_policies (account_id, code, name, max_machines, heartbeat_interval)
values (tests.account_id('A'), 'heartbeat', 'Two live machines', 2, interval '10 minutes');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('A'), 'open', 'Unlimited');
insert into lic.license_policies (account_id, code, name, max_machines) values (tests.account_id('B'), 'b', 'B', 3);
with c as (
  insert into lic.customers (account_id, email) values (tests.account_id('A'), 'one@example.com') returning id
)

select tests.remember('cust1', c.id) from c;
with c as (
  insert into lic.customers (account_id, email) values (tests.account_id('A'), 'two@example.com') returning id
)

select tests.remember('cust2', c.id) from c;
with c as (
  insert into lic.customers (account_id, email) values (tests.account_id('B'), 'b@example.com') returning id
)

select tests.remember('bcust', c.id) from c;

select from tests.act_as(tests.secret_key('A'));
select tests.remember(
  'L1', (api.create_license(policy_code => 'three', customer_id => tests.id('cust1'))).id
);
select tests.remember(
  'L2', (api.create_license(policy_code => 'three', customer_id => tests.id('cust1'))).id
);
select tests.remember(
  'L3', (api.create_license(policy_code => 'three', customer_id => tests.id('cust2'))).id
);
select tests.remember('LN', (api.create_license(policy_code => 'three')).id);
select tests.remember(
  'LHB', (api.create_license(policy_code => 'heartbeat', customer_id => tests.id('cust1'))).id
);
select tests.remember(
  'LOPEN', (api.create_license(policy_code => 'open', customer_id => tests.id('cust1'))).id
);
select
  tests.remember(
    l.name, (api.create_license(policy_code => 'three', customer_id => tests.id('cust1'))).id
  )
from unnest(array['suspended', 'expired', 'canceled', 'overdue', 'grace']) as l (name);
select tests.remember('A agent', (api.create_agent(name => 'bot')).id);
select tests.clear_context();

-- The unusable licenses, as a sweep or Stripe would leave them.
update lic.licenses set status = 'suspended'
where id = tests.id('suspended');
update lic.licenses set expires_at = now() - interval '1 day'
where id = tests.id('expired');
update lic.licenses set status = 'canceled', canceled_at = now()
where id = tests.id('canceled');
update lic.licenses set status = 'past_due', grace_ends_at = now() - interval '1 hour'
where id = tests.id('overdue');
update lic.licenses set status = 'past_due', grace_ends_at = now() + interval '1 day'
where id = tests.id('grace');

-- Tenant B: a license with one machine.
select from tests.act_as(tests.secret_key('B'));
select tests.remember('BL', (api.create_license(policy_code => 'b', customer_id => tests.id('bcust'))).id);
select tests.remember('BM', (api.activate_machine(license_id => tests.id('BL'), fingerprint => 'b-1')).id);
select tests.clear_context();

-- Activation.
select from tests.act_as(tests.secret_key('A'));
select tests.remember(
  'm1',
  (
    api.activate_machine(
      license_id => tests.id('L1'), fingerprint => 'fp-1', name => 'laptop', platform => 'linux',
      metadata => '{"team": "core"}'
    )
  ).id
);
select is(
  (
    select row(m.license_id, m.fingerprint, m.name, m.platform, m.metadata, m.alive, m.last_heartbeat_at)::text
    from api.get_machine(machine_id => tests.id('m1')) as m
  ),
  row(tests.id('L1'), 'fp-1', 'laptop', 'linux', '{"team": "core"}'::jsonb, true, now())::text,
  'an activated machine has its license, fingerprint, name, platform, metadata and is alive'
);
select is(
  tests.event_count('machine.activated', jsonb_build_object('id', tests.id('m1'), 'license_id', tests.id('L1'))), 1,
  'activation emits machine.activated with the machine'
);
select is(
  (api.activate_machine(license_id => tests.id('L1'), fingerprint => 'fp-1', name => 'other')).id, tests.id('m1'),
  'activating the same fingerprint again returns the same machine'
);
select is(
  (api.get_machine(machine_id => tests.id('m1'))).name, 'laptop',
  'activating the same fingerprint again changes nothing of the machine'
);
select is(
  tests.event_count('machine.activated', jsonb_build_object('id', tests.id('m1'))), 1,
  'activating the same fingerprint again emits no event'
);
select tests.clear_context();
update lic.machines set last_heartbeat_at = now() - interval '1 hour'
where id = tests.id('m1');
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.activate_machine(license_id => tests.id('L1'), fingerprint => 'fp-1')).last_heartbeat_at, now(),
  'activating the same fingerprint again counts as a heartbeat'
);

select tests.remember('m2', (api.activate_machine(license_id => tests.id('L1'), fingerprint => 'fp-2')).id);
select tests.remember('m3', (api.activate_machine(license_id => tests.id('L1'), fingerprint => 'fp-3')).id);
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('L1'), 'fp-4'),
  'LSTAT', null,
  'a fourth machine on a license that allows three raises LSTAT'
);
select is(
  tests.event_count('machine.activated', jsonb_build_object('fingerprint', 'fp-4')), 0,
  'a refused activation emits no event'
);
select lives_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('L1'), 'fp-1'),
  'a machine already on a full license can still re-activate'
);
select lives_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('L2'), 'fp-4'),
  'another license has its own machine limit'
);
select is(
  (api.activate_machine(license_id => tests.id('L2'), fingerprint => 'fp-1')).license_id, tests.id('L2'),
  'the same fingerprint may be activated on two licenses'
);

-- Usable licenses only.
select
  throws_ok(
    format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id(s.name), 'fp-x'),
    'LSTAT', null,
    format('activation on a %s license raises LSTAT', s.name)
  )
from unnest(array['suspended', 'expired', 'canceled', 'overdue']) as s (name);
select is(
  (api.activate_machine(license_id => tests.id('grace'), fingerprint => 'fp-x')).license_id, tests.id('grace'),
  'activation on a past_due license within its grace period succeeds'
);

-- Bad input and unknown licenses.
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => null)', tests.id('L2')),
  'LINVL', null, 'activation without a fingerprint raises LINVL'
);
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('L2'), ''),
  'LINVL', null, 'activation with an empty fingerprint raises LINVL'
);
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('L2'), repeat('f', 501)),
  'LINVL', null, 'activation with a fingerprint of 501 characters raises LINVL'
);
select throws_ok(
  format(
    'select api.activate_machine(license_id => %L, fingerprint => %L, name => %L)',
    tests.id('L2'),
    'x',
    repeat('n', 201)
  ),
  '23514', null, 'activation with a name of 201 characters is refused by the table'
);
select throws_ok(
  format(
    'select api.activate_machine(license_id => %L, fingerprint => %L, metadata => %L)', tests.id('L2'), 'fp-m', '[]'
  ),
  'LINVL', null, 'activation with metadata that is not an object is refused'
);
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', gen_random_uuid(), 'fp-1'),
  'LNTFD', null, 'activation on an unknown license raises LNTFD'
);
select is(
  (
    select count(*)::integer
    from generate_series(1, 12) as i
    cross join lateral api.activate_machine(license_id => tests.id('LOPEN'), fingerprint => 'open-' || i)
  ),
  12,
  'a policy without max_machines takes any number of machines'
);

-- Deactivation frees a place.
select is(
  (api.deactivate_machine(machine_id => tests.id('m2'))).id, tests.id('m2'),
  'deactivation returns the machine'
);
select throws_ok(
  format('select api.get_machine(machine_id => %L)', tests.id('m2')),
  'LNTFD', null, 'a deactivated machine is gone'
);
select is(
  tests.event_count('machine.deactivated', jsonb_build_object('id', tests.id('m2'), 'fingerprint', 'fp-2')), 1,
  'deactivation emits machine.deactivated with the machine'
);
select throws_ok(
  format('select api.deactivate_machine(machine_id => %L)', tests.id('m2')),
  'LNTFD', null, 'deactivating it again raises LNTFD'
);
select tests.remember('m4', (api.activate_machine(license_id => tests.id('L1'), fingerprint => 'fp-4')).id);
select is(
  (api.get_machine(machine_id => tests.id('m4'))).license_id, tests.id('L1'),
  'the place a deactivated machine freed can be taken'
);

-- Heartbeats.
select tests.clear_context();
update lic.machines set last_heartbeat_at = now() - interval '1 day'
where id = tests.id('m1');
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.get_machine(machine_id => tests.id('m1'))).alive, true,
  'a machine whose policy has no heartbeat interval stays alive in silence'
);
select is(
  (api.heartbeat_machine(machine_id => tests.id('m1'))).last_heartbeat_at, now(),
  'a heartbeat records the time'
);
select is(
  tests.event_count('machine.activated', jsonb_build_object('id', tests.id('m1')))
  + tests.event_count('machine.deactivated', jsonb_build_object('id', tests.id('m1')))
  + tests.event_count('machine.transferred', jsonb_build_object('id', tests.id('m1'))),
  1,
  'a heartbeat emits no event (the machine has only its activation)'
);
select throws_ok(
  format('select api.heartbeat_machine(machine_id => %L)', gen_random_uuid()),
  'LNTFD', null, 'a heartbeat of an unknown machine raises LNTFD'
);

-- Dead machines: silent past the policy's heartbeat interval.
select tests.remember('h1', (api.activate_machine(license_id => tests.id('LHB'), fingerprint => 'h-1')).id);
select tests.remember('h2', (api.activate_machine(license_id => tests.id('LHB'), fingerprint => 'h-2')).id);
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('LHB'), 'h-3'),
  'LSTAT', null, 'a third live machine on a license that allows two raises LSTAT'
);
select tests.clear_context();
update lic.machines set last_heartbeat_at = now() - interval '11 minutes'
where id in (tests.id('h1'), tests.id('h2'));
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.get_machine(machine_id => tests.id('h1'))).alive, false,
  'a machine silent past its policy''s heartbeat interval is not alive'
);
select is(
  (select array_agg(m.alive) from api.list_machines(license_id => tests.id('LHB')) as m),
  array[false, false],
  'the list shows dead machines as not alive'
);
select is(
  (api.heartbeat_machine(machine_id => tests.id('h2'))).alive, true,
  'a heartbeat brings a dead machine that is still activated back to life'
);
select tests.remember('h3', (api.activate_machine(license_id => tests.id('LHB'), fingerprint => 'h-3')).id);
select throws_ok(
  format('select api.get_machine(machine_id => %L)', tests.id('h1')),
  'LNTFD', null, 'an activation deletes the license''s dead machines to make room'
);
select is(
  tests.event_count('machine.deactivated', jsonb_build_object('id', tests.id('h1'), 'alive', false)), 1,
  'a dead machine deleted by an activation emits machine.deactivated'
);
select throws_ok(
  format('select api.heartbeat_machine(machine_id => %L)', tests.id('h1')),
  'LNTFD', null, 'a deleted dead machine cannot heartbeat: it must activate again'
);
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('LHB'), 'h-1'),
  'LSTAT', null, 'and activating again counts against the limit like any new machine'
);
select tests.clear_context();
update lic.machines set last_heartbeat_at = now() - interval '1 hour'
where id = tests.id('h2');
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.activate_machine(license_id => tests.id('LHB'), fingerprint => 'h-2')).id, tests.id('h2'),
  'activating the fingerprint of a dead machine still on the license revives that machine'
);

-- Listing.
select results_eq(
  format('select id from api.list_machines(license_id => %L)', tests.id('L1')),
  $$select * from unnest(array[tests.id('m4'), tests.id('m3'), tests.id('m1')])$$,
  'the list shows the license''s machines, newest first'
);
select results_eq(
  format('select id from api.list_machines(license_id => %L, page_limit => 1)', tests.id('L1')),
  $$select * from unnest(array[tests.id('m4'), tests.id('m3')])$$,
  'a page of one fetches one row more, which says that more exist'
);
select results_eq(
  format('select id from api.list_machines(license_id => %L, starting_after => %L)', tests.id('L1'), tests.id('m4')),
  $$select * from unnest(array[tests.id('m3'), tests.id('m1')])$$,
  'starting_after walks on from the cursor'
);
select results_eq(
  format('select id from api.list_machines(license_id => %L, ending_before => %L)', tests.id('L1'), tests.id('m1')),
  $$select * from unnest(array[tests.id('m4'), tests.id('m3')])$$,
  'ending_before walks back from the cursor'
);
select throws_ok(
  format('select * from api.list_machines(license_id => %L, page_limit => 0)', tests.id('L1')),
  'LINVL', null, 'a page of zero raises LINVL'
);
select throws_ok(
  format('select * from api.list_machines(license_id => %L)', gen_random_uuid()),
  'LNTFD', null, 'listing the machines of an unknown license raises LNTFD'
);

-- Transfer between licenses of one customer.
select is(
  (api.transfer_machine(machine_id => tests.id('m3'), license_id => tests.id('L2'))).license_id, tests.id('L2'),
  'a machine moves to another license of the same customer'
);
select is(
  (api.get_machine(machine_id => tests.id('m3'))).license_id, tests.id('L2'),
  'the transferred machine is on its new license'
);
select is(
  tests.event_count('machine.transferred', jsonb_build_object('id', tests.id('m3'), 'license_id', tests.id('L2'))), 1,
  'a transfer emits machine.transferred with the machine on its new license'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes ->> 'license_id' from lic.events as e
    where e.type = 'machine.transferred' and e.object ->> 'id' = tests.id('m3')::text
  ),
  tests.id('L1')::text,
  'machine.transferred names the previous license in previous_attributes'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.transfer_machine(machine_id => tests.id('m3'), license_id => tests.id('L2'))).license_id, tests.id('L2'),
  'transferring a machine to its own license changes nothing'
);
select is(
  tests.event_count('machine.transferred', jsonb_build_object('id', tests.id('m3'))), 1,
  'transferring a machine to its own license emits no event'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('m4'), tests.id('L3')),
  'LSTAT', null, 'a transfer to another customer''s license raises LSTAT'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('m4'), tests.id('LN')),
  'LSTAT', null, 'a transfer to a license without a customer raises LSTAT'
);
select tests.remember('mn', (api.activate_machine(license_id => tests.id('LN'), fingerprint => 'n-1')).id);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('mn'), tests.id('L2')),
  'LSTAT', null, 'a transfer from a license without a customer raises LSTAT'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('m4'), tests.id('suspended')),
  'LSTAT', null, 'a transfer to a suspended license raises LSTAT'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('m1'), tests.id('L2')),
  'LSTAT', null, 'a transfer to a license that has the fingerprint already raises LSTAT'
);
-- L2 now holds fp-4, fp-1 and the transferred fp-3: full.
select tests.remember('m5', (api.activate_machine(license_id => tests.id('L1'), fingerprint => 'fp-5')).id);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('m5'), tests.id('L2')),
  'LSTAT', null, 'a transfer to a license whose machines fill max_machines raises LSTAT'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('m5'), gen_random_uuid()),
  'LNTFD', null, 'a transfer to an unknown license raises LNTFD'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', gen_random_uuid(), tests.id('L2')),
  'LNTFD', null, 'a transfer of an unknown machine raises LNTFD'
);

-- Tenant isolation: A cannot reach B's machine or license.
select throws_ok(
  format('select api.get_machine(machine_id => %L)', tests.id('BM')),
  'LNTFD', null, 'api.get_machine on another tenant''s machine raises LNTFD'
);
select throws_ok(
  format('select api.heartbeat_machine(machine_id => %L)', tests.id('BM')),
  'LNTFD', null, 'api.heartbeat_machine on another tenant''s machine raises LNTFD'
);
select throws_ok(
  format('select api.deactivate_machine(machine_id => %L)', tests.id('BM')),
  'LNTFD', null, 'api.deactivate_machine on another tenant''s machine raises LNTFD'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('BM'), tests.id('L2')),
  'LNTFD', null, 'api.transfer_machine of another tenant''s machine raises LNTFD'
);
select throws_ok(
  format('select api.transfer_machine(machine_id => %L, license_id => %L)', tests.id('m5'), tests.id('BL')),
  'LNTFD', null, 'api.transfer_machine to another tenant''s license raises LNTFD'
);
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('BL'), 'steal'),
  'LNTFD', null, 'api.activate_machine on another tenant''s license raises LNTFD'
);
select throws_ok(
  format('select * from api.list_machines(license_id => %L)', tests.id('BL')),
  'LNTFD', null, 'api.list_machines of another tenant''s license raises LNTFD'
);
select tests.clear_context();
select is(
  (
    select row(m.license_id, m.fingerprint)::text from lic.machines as m
    where m.id = tests.id('BM')
  ),
  row(tests.id('BL'), 'b-1')::text,
  'tenant B''s machine is still there, on its license'
);
select from tests.act_as(tests.secret_key('B'));
select results_eq(
  format('select id from api.list_machines(license_id => %L)', tests.id('BL')),
  $$select tests.id('BM')$$,
  'tenant B lists only its own machine'
);
select tests.clear_context();

-- Key kinds: a publishable key and an agent token reach none of this.
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.remember_secret('agent', (api.create_agent(name => 'machine bot')).token);
select tests.clear_context();
select from tests.act_as(tests.key_secret('A pk'));
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('L1'), 'pk'),
  'LDNID', null, 'a publishable key cannot activate a machine'
);
select tests.clear_context();
select from tests.act_as(tests.secret('agent'));
select throws_ok(
  format('select api.activate_machine(license_id => %L, fingerprint => %L)', tests.id('L1'), 'agent'),
  'LDNID', null, 'an agent token cannot activate a machine'
);
select throws_ok(
  format('select api.get_machine(machine_id => %L)', tests.id('m1')),
  'LDNID', null, 'an agent token cannot read a machine'
);
select throws_ok(
  format('select * from api.list_machines(license_id => %L)', tests.id('L1')),
  'LDNID', null, 'an agent token cannot list machines'
);
select tests.clear_context();
select * from finish();
rollback;
