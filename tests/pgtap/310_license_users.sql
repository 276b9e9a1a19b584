-- Team seats: the owner seat, adding by customer or by email (finding or
-- creating the customer), max_users, idempotent adds, removal, listing,
-- events, tenant isolation and key kinds.
begin;
select plan(47);

select from tests.create_account('A');
select from tests.create_account('B');

insert into lic.license_policies (account_id, code, name, max_users) values (tests.account_id('A'), 'team', 'Team', 3);
insert into lic.license_policies (account_id, code, name) values (tests.account_id('A'), 'open', 'Open');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('B'), 'b', 'B');
with c as (
  insert into lic.customers (account_id, email, name)
  values (tests.account_id('A'), 'Owner@Example.com', 'Olivia Owner')
  returning id
)

select tests.remember('owner', c.id) from c;
with c as (
  insert into lic.customers (account_id, email, name)
  values (tests.account_id('A'), 'member@example.com', 'Max Member')
  returning id
)

select tests.remember('member', c.id) from c;
with c as (
  insert into lic.customers (account_id, email) values (tests.account_id('A'), 'third@example.com') returning id
)

select tests.remember('third', c.id) from c;
with c as (
  insert into lic.customers (account_id, email) values (tests.account_id('B'), 'member@example.com') returning id
)

select tests.remember('bcust', c.id) from c;

select from tests.act_as(tests.secret_key('B'));
select tests.remember('BL', (api.create_license(policy_code => 'b', customer_id => tests.id('bcust'))).id);
select tests.clear_context();

select from tests.act_as(tests.secret_key('A'));
select tests.remember('LT', (api.create_license(policy_code => 'team', customer_id => tests.id('owner'))).id);
select tests.remember('LO', (api.create_license(policy_code => 'open', customer_id => tests.id('owner'))).id);
select tests.remember('LNC', (api.create_license(policy_code => 'team')).id);

-- The license's customer holds the owner seat.
select is(
  (
    select row(u.license_id, u.customer_id, u.email, u.name, u.role)::text
    from api.list_license_users(tests.id('LT')) as u
  ),
  row(tests.id('LT'), tests.id('owner'), 'Owner@Example.com', 'Olivia Owner', 'owner')::text,
  'a license made for a customer has one seat: the customer, as owner, with email and name'
);
select is_empty(
  format('select * from api.list_license_users(license_id => %L)', tests.id('LNC')),
  'a license without a customer has no seat'
);

-- Adding by customer id.
select is(
  (
    select row(u.license_id, u.customer_id, u.email, u.name, u.role, u.created_at)::text
    from api.add_license_user(license_id => tests.id('LT'), customer_id => tests.id('member')) as u
  ),
  row(tests.id('LT'), tests.id('member'), 'member@example.com', 'Max Member', 'member', now())::text,
  'a customer added by id gets a member seat'
);
select is(
  tests.event_count(
    'license.user_added',
    jsonb_build_object('license_id', tests.id('LT'), 'customer_id', tests.id('member'), 'role', 'member')
  ),
  1,
  'adding a seat emits license.user_added with the seat'
);
select is(
  (api.add_license_user(license_id => tests.id('LT'), customer_id => tests.id('member'), role => 'owner')).role,
  'member',
  'adding a customer who has a seat returns the seat unchanged'
);
select is(
  (api.add_license_user(license_id => tests.id('LT'), email => 'MEMBER@example.COM')).customer_id,
  tests.id('member'),
  'adding by email finds the account''s customer with that address, whatever its case'
);
select is(
  tests.event_count('license.user_added', jsonb_build_object('customer_id', tests.id('member'))), 1,
  'adding an existing seat again emits no event'
);

-- Adding by email a customer that does not exist yet.
select tests.remember(
  'new', (api.add_license_user(license_id => tests.id('LT'), email => 'new@example.com')).customer_id
);
select tests.clear_context();
select is(
  (
    select row(c.email, c.name)::text from lic.customers as c
    where c.id = tests.id('new')
  ),
  row('new@example.com', null::text)::text,
  'adding by an unknown email creates the customer'
);
select is(
  (
    select c.account_id from lic.customers as c
    where c.id = tests.id('new')
  ),
  tests.account_id('A'),
  'the new customer belongs to the account'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  tests.event_count('customer.created', jsonb_build_object('id', tests.id('new'), 'email', 'new@example.com')), 1,
  'a customer created by adding a seat emits customer.created'
);
select is(
  tests.event_count('license.user_added', jsonb_build_object('customer_id', tests.id('new'), 'role', 'member')), 1,
  'and its seat emits license.user_added'
);

-- max_users counts every seat, the owner's too.
select throws_ok(
  format('select api.add_license_user(license_id => %L, customer_id => %L)', tests.id('LT'), tests.id('third')),
  'LSTAT', null, 'a fourth seat on a license that allows three users raises LSTAT'
);
select throws_ok(
  format('select api.add_license_user(license_id => %L, email => %L)', tests.id('LT'), 'fourth@example.com'),
  'LSTAT', null, 'a fourth seat by email raises LSTAT too'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.customers as c
    where c.email = 'fourth@example.com'
  ),
  0,
  'a refused seat by email leaves no customer behind'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.add_license_user(license_id => tests.id('LT'), customer_id => tests.id('member'))).customer_id,
  tests.id('member'),
  'a customer who has a seat on a full license still gets it back'
);
select is(
  (
    select count(*)::integer
    from (values ('a'), ('b'), ('c'), ('d'), ('e')) as v (n)
    cross join lateral api.add_license_user(license_id => tests.id('LO'), email => v.n || '@open.example')
  ),
  5,
  'a policy without max_users takes any number of seats'
);
select is(
  (api.add_license_user(license_id => tests.id('LO'), customer_id => tests.id('third'), role => 'owner')).role,
  'owner',
  'a seat can be added with the role owner'
);

-- Removal.
select is(
  (api.remove_license_user(license_id => tests.id('LT'), customer_id => tests.id('member'))).customer_id,
  tests.id('member'),
  'removing a seat returns it'
);
select is(
  tests.event_count(
    'license.user_removed',
    jsonb_build_object('license_id', tests.id('LT'), 'customer_id', tests.id('member'), 'email', 'member@example.com')
  ),
  1,
  'removing a seat emits license.user_removed with the seat'
);
select results_eq(
  format('select customer_id from api.list_license_users(license_id => %L) order by customer_id', tests.id('LT')),
  $$select * from unnest(array[tests.id('owner'), tests.id('new')]) as c order by c$$,
  'a removed seat is gone from the list'
);
select lives_ok(
  format('select api.add_license_user(license_id => %L, customer_id => %L)', tests.id('LT'), tests.id('third')),
  'a removed seat frees a place'
);
select throws_ok(
  format('select api.remove_license_user(license_id => %L, customer_id => %L)', tests.id('LT'), tests.id('member')),
  'LNTFD', null, 'removing a seat that is not there raises LNTFD'
);
select throws_ok(
  format('select api.remove_license_user(license_id => %L, customer_id => %L)', tests.id('LT'), tests.id('owner')),
  'LSTAT', null, 'the license''s customer''s owner seat cannot be removed'
);
select lives_ok(
  format('select api.remove_license_user(license_id => %L, customer_id => %L)', tests.id('LO'), tests.id('third')),
  'another owner seat can be removed'
);
select throws_ok(
  format('select api.remove_license_user(license_id => %L, customer_id => %L)', gen_random_uuid(), tests.id('owner')),
  'LNTFD', null, 'removing a seat of an unknown license raises LNTFD'
);

-- Bad input.
select throws_ok(
  format('select api.add_license_user(license_id => %L)', tests.id('LNC')),
  'LINVL', null, 'a seat without customer_id or email raises LINVL'
);
select throws_ok(
  format(
    'select api.add_license_user(license_id => %L, customer_id => %L, email => %L)',
    tests.id('LNC'), tests.id('third'), 'third@example.com'
  ),
  'LINVL', null, 'a seat with both customer_id and email raises LINVL'
);
select throws_ok(
  format(
    'select api.add_license_user(license_id => %L, customer_id => %L, role => %L)',
    tests.id('LNC'),
    tests.id('third'),
    'admin'
  ),
  'LINVL', null, 'a role other than owner or member raises LINVL'
);
select throws_ok(
  format('select api.add_license_user(license_id => %L, email => %L)', tests.id('LNC'), 'not an address'),
  'LINVL', null, 'an email that is not an address raises LINVL'
);
select throws_ok(
  format('select api.add_license_user(license_id => %L, customer_id => %L)', tests.id('LNC'), gen_random_uuid()),
  'LNTFD', null, 'an unknown customer raises LNTFD'
);
select throws_ok(
  format('select api.add_license_user(license_id => %L, customer_id => %L)', gen_random_uuid(), tests.id('third')),
  'LNTFD', null, 'an unknown license raises LNTFD'
);
select throws_ok(
  format('select * from api.list_license_users(license_id => %L)', gen_random_uuid()),
  'LNTFD', null, 'listing the seats of an unknown license raises LNTFD'
);

-- Listing: keyset by customer id, newest customer first.
select results_eq(
  format('select customer_id from api.list_license_users(license_id => %L)', tests.id('LT')),
  $$select * from unnest(array[tests.id('new'), tests.id('third'), tests.id('owner')])$$,
  'the seats are listed by customer id, newest customer first'
);
select results_eq(
  format('select customer_id from api.list_license_users(license_id => %L, page_limit => 1)', tests.id('LT')),
  $$select * from unnest(array[tests.id('new'), tests.id('third')])$$,
  'a page of one fetches one row more, which says that more exist'
);
select results_eq(
  format(
    'select customer_id from api.list_license_users(license_id => %L, starting_after => %L)',
    tests.id('LT'), tests.id('new')
  ),
  $$select * from unnest(array[tests.id('third'), tests.id('owner')])$$,
  'starting_after walks on from the cursor'
);
select results_eq(
  format(
    'select customer_id from api.list_license_users(license_id => %L, ending_before => %L)',
    tests.id('LT'), tests.id('owner')
  ),
  $$select * from unnest(array[tests.id('new'), tests.id('third')])$$,
  'ending_before walks back from the cursor'
);
select throws_ok(
  format('select * from api.list_license_users(license_id => %L, page_limit => 101)', tests.id('LT')),
  'LINVL', null, 'a page of 101 raises LINVL'
);

-- Tenant isolation.
select throws_ok(
  format('select * from api.list_license_users(license_id => %L)', tests.id('BL')),
  'LNTFD', null, 'api.list_license_users of another tenant''s license raises LNTFD'
);
select throws_ok(
  format('select api.add_license_user(license_id => %L, customer_id => %L)', tests.id('BL'), tests.id('third')),
  'LNTFD', null, 'api.add_license_user on another tenant''s license raises LNTFD'
);
select throws_ok(
  format('select api.add_license_user(license_id => %L, customer_id => %L)', tests.id('LO'), tests.id('bcust')),
  'LNTFD', null, 'api.add_license_user with another tenant''s customer raises LNTFD'
);
select throws_ok(
  format('select api.remove_license_user(license_id => %L, customer_id => %L)', tests.id('BL'), tests.id('bcust')),
  'LNTFD', null, 'api.remove_license_user on another tenant''s license raises LNTFD'
);
select isnt(
  (api.add_license_user(license_id => tests.id('LO'), email => 'member@example.com')).customer_id,
  tests.id('bcust'),
  'adding by email never finds another tenant''s customer with that address'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('B'));
select results_eq(
  format('select customer_id from api.list_license_users(license_id => %L)', tests.id('BL')),
  $$select tests.id('bcust')$$,
  'tenant B''s license still has its own seat only'
);
select tests.clear_context();

-- Key kinds.
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.remember_secret('agent', (api.create_agent(name => 'seat bot')).token);
select tests.clear_context();
select from tests.act_as(tests.key_secret('A pk'));
select throws_ok(
  format('select api.add_license_user(license_id => %L, email => %L)', tests.id('LNC'), 'pk@example.com'),
  'LDNID', null, 'a publishable key cannot add a seat'
);
select tests.clear_context();
select from tests.act_as(tests.secret('agent'));
select throws_ok(
  format('select api.add_license_user(license_id => %L, email => %L)', tests.id('LNC'), 'agent@example.com'),
  'LDNID', null, 'an agent token cannot add a seat'
);
select throws_ok(
  format('select * from api.list_license_users(license_id => %L)', tests.id('LT')),
  'LDNID', null, 'an agent token cannot list seats'
);
select throws_ok(
  format('select api.remove_license_user(license_id => %L, customer_id => %L)', tests.id('LT'), tests.id('new')),
  'LDNID', null, 'an agent token cannot remove a seat'
);
select tests.clear_context();
select * from finish();
rollback;
