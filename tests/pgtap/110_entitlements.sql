-- Entitlements: create, get, list, update, their events, and two tenants.
-- Attaching them to license policies is in 100_license_policies.sql.
begin;
select plan(32);

select from tests.create_account('A');
select from tests.create_account('B');

-- Test-local: ids by name.
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

-- Creating.
select from tests.act_as(tests.secret_key('A'));
insert into saved (name, id) values ('sso', (api.create_entitlement(code => 'sso', name => 'Single sign-on')).id);
insert into saved (name, id) values (
  'api',
  (api.create_entitlement(code => 'api:write', name => 'API write', metadata => '{"beta": true}')).id
);
insert into saved (name, id) values (
  'export',
  (api.create_entitlement(code => 'export.csv_v2', name => 'CSV export')).id
);

select is(
  (select row(code, name, metadata)::text from api.get_entitlement(entitlement_id => tests.saved('sso'))),
  row('sso', 'Single sign-on', '{}'::jsonb)::text,
  'an entitlement is made with its code and name, and empty metadata by default'
);
select is(
  (api.get_entitlement(code => 'api:write')).metadata, '{"beta": true}'::jsonb,
  'metadata is kept, and an entitlement is found by its code (which may hold a colon)'
);
select is(
  (api.create_entitlement(code => 'nulls', name => 'Nulls', metadata => null)).metadata, '{}'::jsonb,
  'null metadata means an empty object'
);
select throws_ok(
  $$select api.create_entitlement(code => 'sso', name => 'Again')$$, '23505', null,
  'a second entitlement with the same code raises 23505 (409)'
);
select throws_ok(
  $$select api.create_entitlement(code => 'SSO', name => 'x')$$, 'LINVL', null, 'an uppercase code raises LINVL'
);
select throws_ok(
  $$select api.create_entitlement(code => 'has space', name => 'x')$$, 'LINVL', null,
  'a code with a space raises LINVL'
);
select throws_ok(
  format('select api.create_entitlement(code => %L, name => %L)', repeat('a', 65), 'x'), 'LINVL', null,
  'a code over 64 characters raises LINVL'
);
select throws_ok(
  $$select api.create_entitlement(code => null, name => 'x')$$, 'LINVL', null, 'a null code raises LINVL'
);
select throws_ok(
  $$select api.create_entitlement(code => 'x', name => null)$$, 'LINVL', null, 'a null name raises LINVL'
);
select throws_ok(
  format('select api.create_entitlement(code => %L, name => %L)', 'x', repeat('n', 201)), 'LINVL', null,
  'a name over 200 characters raises LINVL'
);
select throws_ok(
  $$select api.create_entitlement(code => 'x', name => 'x', metadata => '"text"')$$, 'LINVL', null,
  'metadata that is not an object raises LINVL'
);

-- Getting and listing.
select throws_ok(
  $$select api.get_entitlement()$$, 'LINVL', null, 'api.get_entitlement with neither id nor code raises LINVL'
);
select throws_ok(
  format('select api.get_entitlement(entitlement_id => %L, code => %L)', tests.saved('sso'), 'sso'),
  'LINVL', null,
  'api.get_entitlement with both id and code raises LINVL'
);
select throws_ok(
  format('select api.get_entitlement(entitlement_id => %L)', gen_random_uuid()), 'LNTFD', null,
  'api.get_entitlement with an unknown id raises LNTFD'
);
select throws_ok(
  $$select api.get_entitlement(code => 'nope')$$, 'LNTFD', null,
  'api.get_entitlement with an unknown code raises LNTFD'
);
select results_eq(
  'select code from api.list_entitlements()',
  array['nulls', 'export.csv_v2', 'api:write', 'sso'],
  'api.list_entitlements lists the account''s entitlements newest first'
);
select results_eq(
  format('select code from api.list_entitlements(page_limit => 2, starting_after => %L)', tests.saved('export')),
  array['api:write', 'sso'],
  'starting_after pages forward'
);
select results_eq(
  format('select code from api.list_entitlements(page_limit => 1, ending_before => %L)', tests.saved('api')),
  array['nulls', 'export.csv_v2'],
  'ending_before pages back, one row past the page'
);
select throws_ok(
  $$select * from api.list_entitlements(page_limit => 101)$$, 'LINVL', null, 'a page_limit over 100 raises LINVL'
);

-- Updating.
select is(
  (
    select row(code, name, metadata)::text
    from api.update_entitlement(entitlement_id => tests.saved('sso'), name => 'SSO (SAML)')
  ),
  row('sso', 'SSO (SAML)', '{}'::jsonb)::text,
  'an update changes the name and leaves the rest'
);
select is(
  (api.update_entitlement(entitlement_id => tests.saved('api'), metadata => '{"ga": true}')).metadata,
  '{"ga": true}'::jsonb,
  'metadata is replaced as a whole'
);
select is(
  api.update_entitlement(entitlement_id => tests.saved('api')),
  api.get_entitlement(code => 'api:write'),
  'an update with nothing to change returns the entitlement as it is'
);
select throws_ok(
  format('select api.update_entitlement(entitlement_id => %L, name => %L)', tests.saved('api'), ''),
  'LINVL', null,
  'an update to an empty name raises LINVL'
);
select throws_ok(
  format('select api.update_entitlement(entitlement_id => %L, name => %L)', gen_random_uuid(), 'x'),
  'LNTFD', null,
  'updating an unknown entitlement raises LNTFD'
);

-- Events.
select tests.clear_context();
select is(
  (
    select array_agg(e.object ->> 'code' order by e.id) from lic.events as e
    where e.account_id = tests.account_id('A') and e.type = 'entitlement.created'
  ),
  array['sso', 'api:write', 'export.csv_v2', 'nulls'],
  'each created entitlement emits entitlement.created with the entitlement'
);
select is(
  (
    select array_agg(e.previous_attributes order by e.id) from lic.events as e
    where e.account_id = tests.account_id('A') and e.type = 'entitlement.updated'
  ),
  array['{"name": "Single sign-on"}', '{"metadata": {"beta": true}}']::jsonb[],
  'each update that changed something emits entitlement.updated with the old values'
);

-- Two tenants.
select from tests.act_as(tests.secret_key('B'));
select lives_ok(
  $$select api.create_entitlement(code => 'sso', name => 'B SSO')$$, 'another account may use the same code'
);
select results_eq(
  'select code from api.list_entitlements()', array['sso'], 'B lists only its own entitlements'
);
select is((api.get_entitlement(code => 'sso')).name, 'B SSO', 'B finds its own entitlement by code');
select throws_ok(
  format('select api.get_entitlement(entitlement_id => %L)', tests.saved('sso')), 'LNTFD', null,
  'B cannot get A''s entitlement'
);
select throws_ok(
  format('select api.update_entitlement(entitlement_id => %L, name => %L)', tests.saved('sso'), 'Mine'),
  'LNTFD', null,
  'B cannot update A''s entitlement'
);
select tests.clear_context();
select is(
  (
    select name from lic.entitlements
    where id = tests.saved('sso')
  ),
  'SSO (SAML)',
  'A''s entitlement is unchanged after B''s attempt'
);

select * from finish();
rollback;
