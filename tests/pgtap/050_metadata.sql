-- Metadata caps (decision 58): private.write_metadata, which every writer of
-- metadata calls, and every api function that writes it. A row already over
-- the caps stays readable and changeable in everything but its metadata;
-- Stripe's own metadata is never capped, so no Stripe event fails on it.
begin;
select plan(48);

select
  (select jsonb_object_agg('k' || n, 'v') from generate_series(1, 50) as n) as most,
  (select jsonb_object_agg('k' || n, 'v') from generate_series(1, 51) as n) as too_many,
  (select jsonb_object_agg('k' || n, 'v') from generate_series(1, 60) as n) as oversized,
  jsonb_build_object(repeat('k', 41), 'v') as long_key,
  jsonb_build_object('k', repeat('v', 501)) as long_value
\gset

-- The helper: caps, types, merge.
select is(
  private.write_metadata('{}', jsonb_build_object(repeat('k', 40), repeat('é', 500), 'n', 1, 'b', true, 'z', null)),
  jsonb_build_object(repeat('k', 40), repeat('é', 500), 'n', 1, 'b', true, 'z', null),
  'a key of 40 characters, a string of 500 characters, numbers, booleans and null are accepted'
);
select is(private.write_metadata('{}', :'most'), :'most'::jsonb, '50 keys are accepted');
select throws_ok(
  format('select private.write_metadata(%L, %L)', '{}', :'too_many'), 'LINVL', null, '51 keys are refused'
);
select throws_ok(
  format('select private.write_metadata(%L, %L)', '{}', :'long_key'), 'LINVL', null,
  'a key of 41 characters is refused'
);
select throws_ok(
  format('select private.write_metadata(%L, %L)', '{}', :'long_value'), 'LINVL', null,
  'a string value of 501 characters is refused'
);
select is(
  private.write_metadata('{}', '{"tags": ["a", "b"], "nested": {"ok": true}}'),
  '{"tags": ["a", "b"], "nested": {"ok": true}}'::jsonb,
  'arrays and objects as values are accepted (the API has always taken them)'
);
select throws_ok(
  format(
    'select private.write_metadata(%L, %L)', '{}', jsonb_build_object('deep', jsonb_build_array(repeat('v', 500)))
  ),
  'LINVL', null,
  'a value that is not a string is held to 500 characters of its JSON text'
);
select throws_ok(
  $$select private.write_metadata('{}', '["not", "an", "object"]')$$, 'LINVL', null, 'an array is refused'
);
select is(
  private.write_metadata(:'oversized', null), :'oversized'::jsonb,
  'no metadata given: the current metadata stays as it is, even over the caps'
);
select is(
  private.write_metadata('{"a": 1, "b": 2}', '{"a": null, "c": 3}', merge => true), '{"b": 2, "c": 3}'::jsonb,
  'a merge sets the given keys and removes the keys given as null'
);
select throws_ok(
  format('select private.write_metadata(%L, %L, merge => true)', :'most', '{"one": "more"}'), 'LINVL', null,
  'a merge that leaves more than 50 keys is refused'
);
select is(
  private.write_metadata(
    :'oversized', (select jsonb_object_agg('k' || n, null) from generate_series(51, 60) as n), merge => true
  ),
  :'most'::jsonb,
  'a merge that brings a row over the caps back within them is accepted'
);
-- The error names the column and the limit.
create function pg_temp.metadata_error(metadata jsonb)
returns text[]
language plpgsql
as $$
declare
  v_column text;
  v_message text;
begin
  perform private.write_metadata('{}', metadata);
  return null;
exception when sqlstate 'LINVL' then
  get stacked diagnostics v_column = column_name, v_message = message_text;
  return array[v_column, v_message];
end;
$$;
select is(
  pg_temp.metadata_error(:'too_many'), array['metadata', 'metadata may have at most 50 keys (this has 51)'],
  'too many keys: column metadata, and the message names the limit'
);
select is(
  pg_temp.metadata_error(:'long_key'),
  array['metadata', format('metadata key "%s…" is longer than 40 characters', repeat('k', 40))],
  'a long key: the message names the key (cut short) and the limit'
);
select is(
  pg_temp.metadata_error(:'long_value'),
  array['metadata', 'the value of metadata key "k" is longer than 500 characters'],
  'a long value: the message names its key and the limit'
);

-- Every writer, named by a catalog check (so a new one cannot skip the
-- helper) and each tried below.
select is_empty(
  $$
    select p.oid::regprocedure::text from pg_catalog.pg_proc as p
    where
      p.pronamespace = 'api'::regnamespace
      and 'metadata' = any(p.proargnames)
      and strpos(p.prosrc, 'private.write_metadata(') = 0
  $$,
  'every api function that takes metadata writes it through private.write_metadata'
);

-- Setup as A: one of each resource.
select from tests.create_account('A');
select from tests.act_as(tests.secret_key('A'));
select tests.remember('policy', (api.create_license_policy(code => 'std', name => 'Standard')).id);
select tests.remember('entitlement', (api.create_entitlement(code => 'sso', name => 'SSO')).id);
select tests.remember('customer', (api.create_customer(email => 'a@example.com')).id);
select tests.remember('license', (api.create_license(policy_code => 'std')).id);
select tests.remember('machine', (api.activate_machine(license_id => tests.id('license'), fingerprint => 'f1')).id);
select tests.remember('agent', (api.create_agent(name => 'bot')).id);
select tests.remember('meter', (api.create_meter(code => 'tokens', name => 'Tokens', aggregation => 'sum')).id);
-- Positional: a day's limit of 10 tokens for the agent.
select tests.remember('budget', (api.create_budget('day', 10, null, 'tokens', tests.id('agent'))).id);

select throws_ok(
  format('select api.create_license_policy(code => %L, name => %L, metadata => %L)', 'big', 'Big', :'too_many'),
  'LINVL', null, 'api.create_license_policy refuses metadata over the caps'
);
select throws_ok(
  format('select api.create_entitlement(code => %L, name => %L, metadata => %L)', 'big', 'Big', :'long_key'),
  'LINVL', null, 'api.create_entitlement refuses metadata over the caps'
);
select throws_ok(
  format('select api.create_customer(metadata => %L)', :'long_value'),
  'LINVL', null, 'api.create_customer refuses metadata over the caps'
);
select throws_ok(
  format('select api.create_license(policy_code => %L, metadata => %L)', 'std', :'too_many'),
  'LINVL', null, 'api.create_license refuses metadata over the caps'
);
select throws_ok(
  format(
    'select api.activate_machine(license_id => %L, fingerprint => %L, metadata => %L)',
    tests.id('license'), 'f2', :'too_many'
  ),
  'LINVL', null, 'api.activate_machine refuses metadata over the caps'
);
select throws_ok(
  format('select api.create_agent(name => %L, metadata => %L)', 'big', :'too_many'),
  'LINVL', null, 'api.create_agent refuses metadata over the caps'
);
select throws_ok(
  format(
    'select api.create_meter(code => %L, name => %L, aggregation => %L, metadata => %L)', 'big', 'Big', 'sum',
    :'too_many'
  ),
  'LINVL', null, 'api.create_meter refuses metadata over the caps'
);
select throws_ok(
  format(
    'select api.create_budget(period => %L, "limit" => 1, meter_code => %L, license_id => %L, metadata => %L)',
    'day', 'tokens', tests.id('license'), :'too_many'
  ),
  'LINVL', null, 'api.create_budget refuses metadata over the caps'
);

select throws_ok(
  format('select api.update_license_policy(license_policy_id => %L, metadata => %L)', tests.id('policy'), :'too_many'),
  'LINVL', null, 'api.update_license_policy refuses metadata over the caps'
);
select throws_ok(
  format('select api.update_entitlement(entitlement_id => %L, metadata => %L)', tests.id('entitlement'), :'too_many'),
  'LINVL', null, 'api.update_entitlement refuses metadata over the caps'
);
select throws_ok(
  format('select api.update_customer(customer_id => %L, metadata => %L)', tests.id('customer'), :'too_many'),
  'LINVL', null, 'api.update_customer refuses metadata over the caps'
);
select throws_ok(
  format('select api.update_agent(agent_id => %L, metadata => %L)', tests.id('agent'), :'too_many'),
  'LINVL', null, 'api.update_agent refuses metadata over the caps'
);
select lives_ok(
  format('select api.update_license(license_id => %L, metadata => %L)', tests.id('license'), :'most'),
  'api.update_license takes 50 keys'
);
select throws_ok(
  format('select api.update_license(license_id => %L, metadata => %L)', tests.id('license'), '{"one": "more"}'),
  'LINVL', null, 'api.update_license refuses a merge that would leave 51 keys'
);
select lives_ok(
  format('select api.update_meter(meter_id => %L, metadata => %L)', tests.id('meter'), :'most'),
  'api.update_meter takes 50 keys'
);
select throws_ok(
  format('select api.update_meter(meter_id => %L, metadata => %L)', tests.id('meter'), '{"one": "more"}'),
  'LINVL', null, 'api.update_meter refuses a merge that would leave 51 keys'
);
select throws_ok(
  format('select api.update_budget(budget_id => %L, metadata => %L)', tests.id('budget'), :'long_value'),
  'LINVL', null, 'api.update_budget refuses metadata over the caps'
);

-- Rows written over the caps before there were caps: readable, and every
-- change that leaves their metadata alone still works.
select tests.clear_context();
update lic.license_policies set metadata = :'oversized'
where id = tests.id('policy');
update lic.entitlements set metadata = :'oversized'
where id = tests.id('entitlement');
update lic.customers set metadata = :'oversized'
where id = tests.id('customer');
update lic.licenses set metadata = :'oversized'
where id = tests.id('license');
update lic.agents set metadata = :'oversized'
where id = tests.id('agent');
update lic.meters set metadata = :'oversized'
where id = tests.id('meter');
update lic.budgets set metadata = :'oversized'
where id = tests.id('budget');
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.get_license(license_id => tests.id('license'))).metadata, :'oversized'::jsonb,
  'a license over the caps is read as it is'
);
select lives_ok(
  format('select api.update_license_policy(license_policy_id => %L, name => %L)', tests.id('policy'), 'Renamed'),
  'a policy over the caps may be renamed'
);
select lives_ok(
  format('select api.update_entitlement(entitlement_id => %L, name => %L)', tests.id('entitlement'), 'Renamed'),
  'an entitlement over the caps may be renamed'
);
select lives_ok(
  format('select api.update_customer(customer_id => %L, name => %L)', tests.id('customer'), 'Renamed'),
  'a customer over the caps may be renamed'
);
select lives_ok(
  format('select api.update_license(license_id => %L, clear_expiry => true)', tests.id('license')),
  'a license over the caps may change its expiry'
);
select lives_ok(
  format('select api.suspend_license(license_id => %L)', tests.id('license')),
  'a license over the caps may be suspended'
);
select lives_ok(
  format('select api.update_agent(agent_id => %L, name => %L)', tests.id('agent'), 'renamed'),
  'an agent over the caps may be renamed'
);
select lives_ok(
  format('select api.update_meter(meter_id => %L, name => %L)', tests.id('meter'), 'Renamed'),
  'a meter over the caps may be renamed'
);
select lives_ok(
  format('select api.update_budget(budget_id => %L, "limit" => 20)', tests.id('budget')),
  'a budget over the caps may change its limit'
);
select throws_ok(
  format('select api.update_license(license_id => %L, metadata => %L)', tests.id('license'), '{"k1": "changed"}'),
  'LINVL', null, 'but a metadata change that leaves it over the caps is refused'
);
select lives_ok(
  format(
    'select api.update_license(license_id => %L, metadata => %L)', tests.id('license'),
    (select jsonb_object_agg('k' || n, null) from generate_series(51, 60) as n)
  ),
  'and one that brings it within them is accepted'
);
select is(
  (api.get_license(license_id => tests.id('license'))).metadata, :'most'::jsonb,
  '... leaving the 50 keys kept'
);
select tests.clear_context();

-- Stripe's metadata is Stripe's: never capped here, so no event fails on it,
-- and a Stripe change to a license over the caps applies.
select from tests.stripe_map('A', 'price_std', null, 'std');
select is(
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_m1', 'cus_m1', 'active', '[{"id": "si_m1", "price": "price_std"}]',
        extra => jsonb_build_object('metadata', :'oversized'::jsonb || :'long_key'::jsonb)
      ),
      0, 'evt_m1'
    )
  ) ->> 'outcome',
  'applied',
  'a subscription whose metadata is beyond Licentric''s caps is applied'
);
update lic.licenses set metadata = :'oversized'
where id = (tests.stripe_license('sub_m1')).id;
select is(
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_m1', 'cus_m1', 'canceled', '[{"id": "si_m1", "price": "price_std"}]'),
      10, 'evt_m2'
    )
  ) ->> 'outcome',
  'applied',
  'a Stripe change to a license whose metadata is over the caps is applied'
);
select is((tests.stripe_license('sub_m1')).status, 'canceled', '... and the license follows it');

select * from finish();
rollback;
