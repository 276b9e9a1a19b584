-- Customers: create, get, list with filters, update (with clear), their
-- events, and two tenants.
begin;
select plan(40);

select from tests.create_account('A');
select from tests.create_account('B');

-- Test-local: ids by name, and the parameter an error names.
create temporary table saved (name text primary key, id uuid not null);
grant select, insert on saved to lic_app;

create function tests.saved(name text)
returns uuid
language sql
stable
as $$
  select s.id from saved as s where s.name = saved.name;
$$;
grant execute on function tests.saved(text) to lic_app;

create function tests.error_column(statement text)
returns text
language plpgsql
volatile
as $$
declare
  v_column text;
begin
  execute statement;
  return null;
exception
  when others then
    get stacked diagnostics v_column = column_name;
    return sqlstate || ' ' || v_column;
end;
$$;
grant execute on function tests.error_column(text) to lic_app;

-- Creating.
select from tests.act_as(tests.secret_key('A'));
insert into saved (name, id) values (
  'ada',
  (
    api.create_customer(
      email => 'Ada@Example.com', name => 'Ada', external_id => 'user-1', stripe_customer_id => 'cus_Ada1',
      metadata => '{"vip": true}'
    )
  ).id
);
insert into saved (name, id) values ('empty', (api.create_customer()).id);
insert into saved (name, id) values (
  'bob',
  (api.create_customer(email => 'bob@example.com', external_id => 'user-2')).id
);
insert into saved (name, id) values ('ada2', (api.create_customer(email => 'ada@example.COM', name => 'Ada again')).id);

select is(
  (
    select row(email, name, external_id, stripe_customer_id, metadata)::text
    from api.get_customer(customer_id => tests.saved('ada'))
  ),
  row('Ada@Example.com', 'Ada', 'user-1', 'cus_Ada1', '{"vip": true}'::jsonb)::text,
  'a customer keeps every field given, the email as typed'
);
select is(
  (
    select row(email, name, external_id, stripe_customer_id, metadata)::text
    from api.get_customer(customer_id => tests.saved('empty'))
  ),
  row(null::text, null::text, null::text, null::text, '{}'::jsonb)::text,
  'every field of a customer is optional'
);
select throws_ok(
  $$select api.create_customer(external_id => 'user-1')$$, '23505', null,
  'a second customer with the same external_id raises 23505 (409)'
);
select throws_ok(
  $$select api.create_customer(stripe_customer_id => 'cus_Ada1')$$, '23505', null,
  'a second customer with the same stripe_customer_id raises 23505 (409)'
);
insert into saved (name, id) values ('ada3', (api.create_customer(email => 'ADA@example.com')).id);
select throws_ok(
  $$select api.create_customer(email => 'not-an-email')$$, 'LINVL', null, 'an email without @ raises LINVL'
);
select throws_ok(
  $$select api.create_customer(email => 'a b@example.com')$$, 'LINVL', null,
  'an email with a space raises LINVL'
);
select throws_ok(
  format('select api.create_customer(email => %L)', repeat('a', 320) || '@x.io'), 'LINVL', null,
  'an email over 320 characters raises LINVL'
);
select throws_ok(
  $$select api.create_customer(name => '')$$, 'LINVL', null, 'an empty name raises LINVL'
);
select throws_ok(
  $$select api.create_customer(external_id => '')$$, 'LINVL', null, 'an empty external_id raises LINVL'
);
select throws_ok(
  $$select api.create_customer(stripe_customer_id => 'sub_123')$$, 'LINVL', null,
  'a stripe_customer_id that is not cus_… raises LINVL'
);
select throws_ok(
  $$select api.create_customer(metadata => '[1]')$$, 'LINVL', null, 'metadata that is not an object raises LINVL'
);
select is_empty(
  $$
    select s.statement from (
      values
      ('select api.create_customer(email => ''x'')', 'LINVL email'),
      ('select api.create_customer(name => '''')', 'LINVL name'),
      ('select api.create_customer(external_id => '''')', 'LINVL external_id'),
      ('select api.create_customer(stripe_customer_id => ''x'')', 'LINVL stripe_customer_id'),
      ('select api.create_customer(metadata => ''2'')', 'LINVL metadata')
    ) as s (statement, expected)
    where tests.error_column(s.statement) is distinct from s.expected
  $$,
  'each LINVL names the parameter at fault'
);

-- Getting and listing.
select is(
  (api.get_customer(external_id => 'user-2')).id, tests.saved('bob'), 'a customer is found by external_id'
);
select throws_ok(
  $$select api.get_customer()$$, 'LINVL', null, 'api.get_customer with neither id nor external_id raises LINVL'
);
select throws_ok(
  format('select api.get_customer(customer_id => %L, external_id => %L)', tests.saved('bob'), 'user-2'),
  'LINVL', null,
  'api.get_customer with both raises LINVL'
);
select throws_ok(
  format('select api.get_customer(customer_id => %L)', gen_random_uuid()), 'LNTFD', null,
  'api.get_customer with an unknown id raises LNTFD'
);
select throws_ok(
  $$select api.get_customer(external_id => 'user-404')$$, 'LNTFD', null,
  'api.get_customer with an unknown external_id raises LNTFD'
);
select is(
  (select count(*)::integer from api.list_customers(page_limit => 100)), 5,
  'api.list_customers lists every customer of the account'
);
select results_eq(
  $$select name from api.list_customers(email => 'ADA@EXAMPLE.COM') where name is not null$$,
  array['Ada again', 'Ada'],
  'the email filter matches whatever the case, newest first'
);
select is(
  (select count(*)::integer from api.list_customers(email => 'ada@example.com')), 3,
  'the email filter finds every customer with that email: emails need not be unique'
);
select results_eq(
  $$select id from api.list_customers(external_id => 'user-1')$$,
  array[tests.saved('ada')],
  'the external_id filter matches exactly'
);
select is_empty(
  $$select id from api.list_customers(external_id => 'USER-1')$$,
  'external_id is compared exactly (case matters)'
);
select results_eq(
  format(
    'select id from api.list_customers(page_limit => 1, email => %L, starting_after => %L)', 'ADA@example.com',
    tests.saved('ada2')
  ),
  array[tests.saved('ada')],
  'filters combine with starting_after'
);
select results_eq(
  format(
    'select id from api.list_customers(page_limit => 1, email => %L, ending_before => %L)', 'ada@example.com',
    tests.saved('ada')
  ),
  array[tests.saved('ada3'), tests.saved('ada2')],
  'filters combine with ending_before, one row past the page'
);
select throws_ok(
  format(
    'select * from api.list_customers(starting_after => %L, ending_before => %L)', tests.saved('ada'),
    tests.saved('bob')
  ),
  'LINVL', null,
  'two cursors at once raise LINVL'
);

-- Updating.
select is(
  (
    select row(email, name, external_id, stripe_customer_id, metadata)::text
    from api.update_customer(
      customer_id => tests.saved('bob'), name => 'Bob', stripe_customer_id => 'cus_Bob', metadata => '{"a": 1}'
    )
  ),
  row('bob@example.com', 'Bob', 'user-2', 'cus_Bob', '{"a": 1}'::jsonb)::text,
  'an update changes the given fields and leaves the others'
);
select is(
  (
    select row(email, external_id)::text
    from api.update_customer(customer_id => tests.saved('bob'), clear => '{email,external_id}')
  ),
  row(null::text, null::text)::text,
  'clear sets fields to null'
);
select throws_ok(
  format('select api.update_customer(customer_id => %L, clear => %L)', tests.saved('bob'), '{metadata}'),
  'LINVL', null,
  'clearing metadata raises LINVL'
);
select throws_ok(
  format(
    'select api.update_customer(customer_id => %L, email => %L, clear => %L)',
    tests.saved('bob'), 'b@x.io', '{email}'
  ),
  'LINVL', null,
  'giving and clearing the same field raises LINVL'
);
select throws_ok(
  format('select api.update_customer(customer_id => %L, external_id => %L)', tests.saved('bob'), 'user-1'),
  '23505', null,
  'taking another customer''s external_id raises 23505 (409)'
);
select throws_ok(
  format('select api.update_customer(customer_id => %L, email => %L)', tests.saved('bob'), 'nope'),
  'LINVL', null,
  'an update to an invalid email raises LINVL'
);
select throws_ok(
  format('select api.update_customer(customer_id => %L, name => %L)', gen_random_uuid(), 'x'),
  'LNTFD', null,
  'updating an unknown customer raises LNTFD'
);
select is(
  api.update_customer(customer_id => tests.saved('ada'), email => 'Ada@Example.com'),
  api.get_customer(customer_id => tests.saved('ada')),
  'an update with nothing to change returns the customer as it is'
);

-- Events.
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.events as e
    where e.account_id = tests.account_id('A') and e.type = 'customer.created'
  ),
  5,
  'each created customer emits customer.created'
);
select is(
  (
    select array_agg(e.previous_attributes order by e.id) from lic.events as e
    where e.account_id = tests.account_id('A') and e.type = 'customer.updated'
  ),
  array[
    '{"name": null, "stripe_customer_id": null, "metadata": {}}',
    '{"email": "bob@example.com", "external_id": "user-2"}'
  ]::jsonb[],
  'each update that changed something emits customer.updated with the old values'
);

-- Two tenants.
select from tests.act_as(tests.secret_key('B'));
select lives_ok(
  $$select api.create_customer(external_id => 'user-1', stripe_customer_id => 'cus_Ada1')$$,
  'another account may use the same external_id and stripe_customer_id'
);
select is(
  (select count(*)::integer from api.list_customers(email => 'ada@example.com')), 0,
  'B''s email filter finds none of A''s customers'
);
select throws_ok(
  format('select api.get_customer(customer_id => %L)', tests.saved('ada')), 'LNTFD', null,
  'B cannot get A''s customer'
);
select throws_ok(
  format('select api.update_customer(customer_id => %L, name => %L)', tests.saved('ada'), 'Mine'),
  'LNTFD', null,
  'B cannot update A''s customer'
);
select tests.clear_context();
select is(
  (
    select name from lic.customers
    where id = tests.saved('ada')
  ), 'Ada', 'A''s customer is unchanged'
);

select * from finish();
rollback;
