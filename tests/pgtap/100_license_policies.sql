-- License policies: create, get, list, update (with clear), archive,
-- attaching and detaching entitlements, their events, and two tenants.
begin;
select plan(78);

select from tests.create_account('A');
select from tests.create_account('B');

-- Test-local: ids by name, and the parameter an error names.
create temporary table saved (name text primary key, id uuid not null);
grant select, insert on saved to lic_app;

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
insert into saved (name, id) values ('basic', (api.create_license_policy(code => 'basic', name => 'Basic')).id);
insert into saved (name, id) values (
  'pro',
  (
    api.create_license_policy(
      code => 'pro', name => 'Pro', duration => 'P1Y', max_machines => 3, max_users => 5,
      require_fingerprint => true, heartbeat_interval => 'PT10M', grace_period => 'P14D',
      refund_action => 'none', dispute_action => 'suspend', metadata => '{"tier": 2}'
    )
  ).id
);

select is(
  (
    select
      row(
        code, name, duration, max_machines, max_users, require_fingerprint, heartbeat_interval, grace_period,
        refund_action, dispute_action, entitlements, metadata, archived_at
      )::text
    from api.get_license_policy(license_policy_id => tests.saved('basic'))
  ),
  row(
    'basic', 'Basic', null::text, null::integer, null::integer, false, null::text, 'P7D', 'suspend', 'suspend',
    '{}'::text[], '{}'::jsonb, null::timestamptz
  )::text,
  'a policy made with code and name only is perpetual, unlimited, without heartbeat, 7 days of grace, suspends'
);
select is(
  (
    select
      row(
        code, name, duration, max_machines, max_users, require_fingerprint, heartbeat_interval, grace_period,
        refund_action, dispute_action, metadata
      )::text
    from api.get_license_policy(code => 'pro')
  ),
  row('pro', 'Pro', 'P1Y', 3, 5, true, 'PT10M', 'P14D', 'none', 'suspend', '{"tier": 2}'::jsonb)::text,
  'every field given at creation is kept, durations shown as ISO 8601'
);
select is(
  (api.create_license_policy(code => 'monthly', name => 'Monthly', duration => '1 month')).duration, 'P1M',
  'a duration given in another notation is shown as ISO 8601'
);
select is(
  (
    select row(grace_period, refund_action, dispute_action, require_fingerprint, metadata)::text
    from api.create_license_policy(
      code => 'nulls', name => 'Nulls', grace_period => null, refund_action => null, dispute_action => null,
      require_fingerprint => null, metadata => null
    )
  ),
  row('P7D', 'suspend', 'suspend', false, '{}'::jsonb)::text,
  'a null where the policy has a default means that default'
);
select throws_ok(
  $$select api.create_license_policy(code => 'pro', name => 'Another pro')$$,
  '23505', null,
  'a second policy with the same code raises 23505 (409)'
);

-- Bad values raise LINVL and name the parameter.
select throws_ok(
  $$select api.create_license_policy(code => 'Pro', name => 'x')$$, 'LINVL', null,
  'an uppercase code raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => '-pro', name => 'x')$$, 'LINVL', null,
  'a code starting with a dash raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => null, name => 'x')$$, 'LINVL', null, 'a null code raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => '')$$, 'LINVL', null, 'an empty name raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', duration => '0')$$, 'LINVL', null,
  'a zero duration raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', duration => '-1 day')$$, 'LINVL', null,
  'a negative duration raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', max_machines => 0)$$, 'LINVL', null,
  'max_machines 0 raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', max_users => -1)$$, 'LINVL', null,
  'negative max_users raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', heartbeat_interval => 'PT30S')$$, 'LINVL', null,
  'a heartbeat interval under a minute raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', grace_period => '-1 day')$$, 'LINVL', null,
  'a negative grace period raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', refund_action => 'refund')$$, 'LINVL', null,
  'an unknown refund action raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', dispute_action => 'cancel')$$, 'LINVL', null,
  'an unknown dispute action raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', metadata => '[]')$$, 'LINVL', null,
  'metadata that is not an object raises LINVL'
);
select throws_ok(
  $$select api.create_license_policy(code => 'x', name => 'x', duration => 'P1X')$$, '22007', null,
  'a malformed ISO 8601 duration raises 22007 (422)'
);
select is_empty(
  $$
    select s.statement from (
      values
      ('select api.create_license_policy(code => ''Pro'', name => ''x'')', 'LINVL code'),
      ('select api.create_license_policy(code => ''x'', name => '''')', 'LINVL name'),
      ('select api.create_license_policy(code => ''x'', name => ''x'', duration => ''0'')', 'LINVL duration'),
      ('select api.create_license_policy(code => ''x'', name => ''x'', max_machines => 0)', 'LINVL max_machines'),
      ('select api.create_license_policy(code => ''x'', name => ''x'', max_users => 0)', 'LINVL max_users'),
      (
        'select api.create_license_policy(code => ''x'', name => ''x'', heartbeat_interval => ''PT1S'')',
        'LINVL heartbeat_interval'
      ),
      (
        'select api.create_license_policy(code => ''x'', name => ''x'', grace_period => ''-1 second'')',
        'LINVL grace_period'
      ),
      ('select api.create_license_policy(code => ''x'', name => ''x'', refund_action => ''x'')', 'LINVL refund_action'),
      (
        'select api.create_license_policy(code => ''x'', name => ''x'', dispute_action => ''x'')',
        'LINVL dispute_action'
      ),
      ('select api.create_license_policy(code => ''x'', name => ''x'', metadata => ''1'')', 'LINVL metadata')
    ) as s (statement, expected)
    where tests.error_column(s.statement) is distinct from s.expected
  $$,
  'each LINVL names the parameter at fault'
);

-- Getting.
select throws_ok(
  $$select api.get_license_policy()$$, 'LINVL', null, 'api.get_license_policy with neither id nor code raises LINVL'
);
select throws_ok(
  format('select api.get_license_policy(license_policy_id => %L, code => %L)', tests.saved('pro'), 'pro'),
  'LINVL', null,
  'api.get_license_policy with both id and code raises LINVL'
);
select throws_ok(
  format('select api.get_license_policy(license_policy_id => %L)', gen_random_uuid()),
  'LNTFD', null,
  'api.get_license_policy with an unknown id raises LNTFD'
);
select throws_ok(
  $$select api.get_license_policy(code => 'gold')$$, 'LNTFD', null,
  'api.get_license_policy with an unknown code raises LNTFD'
);
select is(
  (api.get_license_policy(code => 'pro')).id, tests.saved('pro'), 'a policy is found by its code'
);

-- Listing.
select results_eq(
  'select code from api.list_license_policies()',
  array['nulls', 'monthly', 'pro', 'basic'],
  'api.list_license_policies lists the account''s policies newest first'
);
select results_eq(
  format('select code from api.list_license_policies(page_limit => 2, starting_after => %L)', tests.saved('pro')),
  array['basic'],
  'starting_after pages forward'
);
select results_eq(
  format('select code from api.list_license_policies(page_limit => 1, ending_before => %L)', tests.saved('basic')),
  array['monthly', 'pro'],
  'ending_before pages back, one row past the page'
);
select throws_ok(
  $$select * from api.list_license_policies(page_limit => 0)$$, 'LINVL', null, 'a page_limit of 0 raises LINVL'
);

-- Updating.
select is(
  (
    select row(name, duration, max_machines, grace_period, metadata)::text
    from api.update_license_policy(
      license_policy_id => tests.saved('pro'), name => 'Pro plus', duration => 'P30D', grace_period => 'P3D',
      metadata => '{"new": true}'
    )
  ),
  row('Pro plus', 'P30D', 3, 'P3D', '{"new": true}'::jsonb)::text,
  'an update changes the given fields, leaves the others, and replaces metadata'
);
select is(
  (api.update_license_policy(license_policy_id => tests.saved('pro'), clear => '{max_machines,duration}')).duration,
  null,
  'clear sets a nullable field to null'
);
select is(
  (api.get_license_policy(code => 'pro')).max_machines, null, 'clear can name several fields'
);
select throws_ok(
  format('select api.update_license_policy(license_policy_id => %L, clear => %L)', tests.saved('pro'), '{name}'),
  'LINVL', null,
  'clearing a field that cannot be null raises LINVL'
);
select throws_ok(
  format(
    'select api.update_license_policy(license_policy_id => %L, max_users => 2, clear => %L)',
    tests.saved('pro'), '{max_users}'
  ),
  'LINVL', null,
  'giving and clearing the same field raises LINVL'
);
select throws_ok(
  format('select api.update_license_policy(license_policy_id => %L, max_users => 0)', tests.saved('pro')),
  'LINVL', null,
  'an update to an invalid value raises LINVL'
);
select throws_ok(
  format('select api.update_license_policy(license_policy_id => %L, name => %L)', gen_random_uuid(), 'x'),
  'LNTFD', null,
  'updating an unknown policy raises LNTFD'
);
select is(
  api.update_license_policy(license_policy_id => tests.saved('basic'), name => 'Basic'),
  api.get_license_policy(code => 'basic'),
  'an update that changes nothing returns the policy as it is'
);
select is(
  (api.get_license_policy(code => 'pro')).max_users, 5, 'a refused update changed nothing'
);

-- Entitlements on a policy.
select from api.create_entitlement(code => 'sso', name => 'SSO');
select from api.create_entitlement(code => 'api:write', name => 'API write');
select from api.create_entitlement(code => 'export', name => 'Export');
select is(
  (api.attach_entitlement(license_policy_id => tests.saved('pro'), code => 'sso')).entitlements, array['sso'],
  'api.attach_entitlement adds the entitlement to the policy'
);
select from api.attach_entitlement(license_policy_id => tests.saved('pro'), code => 'export');
select is(
  (api.attach_entitlement(license_policy_id => tests.saved('pro'), code => 'api:write')).entitlements,
  array['api:write', 'export', 'sso'],
  'a policy''s entitlements are its codes, sorted'
);
select is(
  (api.attach_entitlement(license_policy_id => tests.saved('pro'), code => 'sso')).entitlements,
  array['api:write', 'export', 'sso'],
  'attaching an attached entitlement again changes nothing'
);
select is(
  (api.detach_entitlement(license_policy_id => tests.saved('pro'), code => 'export')).entitlements,
  array['api:write', 'sso'],
  'api.detach_entitlement removes it'
);
select is(
  (api.detach_entitlement(license_policy_id => tests.saved('pro'), code => 'export')).entitlements,
  array['api:write', 'sso'],
  'detaching an entitlement the policy does not grant changes nothing'
);
select throws_ok(
  format('select api.attach_entitlement(license_policy_id => %L, code => %L)', tests.saved('pro'), 'nope'),
  'LNTFD', null,
  'attaching an unknown entitlement raises LNTFD'
);
select throws_ok(
  format('select api.detach_entitlement(license_policy_id => %L, code => %L)', tests.saved('pro'), 'nope'),
  'LNTFD', null,
  'detaching an unknown entitlement raises LNTFD'
);
select throws_ok(
  format('select api.attach_entitlement(license_policy_id => %L, code => %L)', gen_random_uuid(), 'sso'),
  'LNTFD', null,
  'attaching to an unknown policy raises LNTFD'
);
select throws_ok(
  format('select api.detach_entitlement(license_policy_id => %L, code => %L)', gen_random_uuid(), 'sso'),
  'LNTFD', null,
  'detaching from an unknown policy raises LNTFD'
);
select is(
  tests.error_column(
    format('select api.attach_entitlement(license_policy_id => %L, code => %L)', tests.saved('pro'), 'nope')
  ),
  'LNTFD code',
  'an unknown entitlement is named by its parameter, code'
);

-- Archiving.
insert into saved (name, id) values ('license', (api.create_license(policy_code => 'basic')).id);
select isnt(
  (api.archive_license_policy(license_policy_id => tests.saved('basic'))).archived_at, null,
  'an archived policy has archived_at'
);
select is(
  (api.archive_license_policy(license_policy_id => tests.saved('basic'))).archived_at,
  (api.get_license_policy(code => 'basic')).archived_at,
  'archiving it again returns it unchanged'
);
select throws_ok(
  $$select api.create_license(policy_code => 'basic')$$, 'LSTAT', null,
  'an archived policy takes no new license (LSTAT)'
);
select throws_ok(
  format('select api.archive_license_policy(license_policy_id => %L)', gen_random_uuid()),
  'LNTFD', null,
  'archiving an unknown policy raises LNTFD'
);
select results_eq(
  'select code from api.list_license_policies()',
  array['nulls', 'monthly', 'pro'],
  'api.list_license_policies leaves archived policies out'
);
select results_eq(
  'select code from api.list_license_policies(include_archived => true)',
  array['nulls', 'monthly', 'pro', 'basic'],
  'include_archived lists them too'
);
select results_eq(
  format('select code from api.list_license_policies(ending_before => %L)', tests.saved('basic')),
  array['nulls', 'monthly', 'pro'],
  'paging back leaves archived policies out too'
);
select is(
  (api.update_license_policy(license_policy_id => tests.saved('basic'), name => 'Legacy basic')).name,
  'Legacy basic',
  'an archived policy can still be updated (for its existing licenses)'
);
select tests.clear_context();
select is(
  (
    select status from lic.licenses
    where id = tests.saved('license')
  ),
  'active',
  'an existing license of an archived policy stays active'
);

-- Events: A's events of one type, oldest first, numbered.
create function tests.policy_events(event_type text)
returns table (n bigint, object jsonb, previous_attributes jsonb)
language sql
stable
as $$
  select row_number() over (order by e.id), e.object, e.previous_attributes
  from lic.events as e
  where e.account_id = tests.account_id('A') and e.type = event_type
  order by e.id;
$$;

select is(
  (select count(*)::integer from tests.policy_events('license_policy.created')),
  4,
  'each created policy emits license_policy.created'
);
select is(
  (
    select e.object ->> 'code'
    from tests.policy_events('license_policy.created') as e
    where e.n = 1
  ),
  'basic',
  'license_policy.created carries the policy'
);
select is(
  (
    select e.previous_attributes
    from tests.policy_events('license_policy.updated') as e
    where e.n = 1
  ),
  '{"name": "Pro", "duration": "P1Y", "grace_period": "P14D", "metadata": {"tier": 2}}'::jsonb,
  'license_policy.updated carries the old values of what changed'
);
select is(
  (
    select e.previous_attributes
    from tests.policy_events('license_policy.updated') as e
    where e.n = 2
  ),
  '{"duration": "P30D", "max_machines": 3}'::jsonb,
  'an update that clears fields emits their old values'
);
select is(
  (select count(*)::integer from tests.policy_events('license_policy.updated')),
  3,
  'an update that changes nothing or is refused emits no event'
);
select is(
  (select array_agg(e.previous_attributes -> 'archived_at') from tests.policy_events('license_policy.archived') as e),
  array['null'::jsonb],
  'archiving emits one license_policy.archived, with archived_at null before'
);
select is(
  (
    select array_agg(e.previous_attributes -> 'entitlements' order by e.n)
    from tests.policy_events('license_policy.entitlement_attached') as e
  ),
  array['[]', '["sso"]', '["export", "sso"]']::jsonb[],
  'each attachment that changed the policy emits license_policy.entitlement_attached with the old list'
);
select is(
  (select array_agg(e.object -> 'entitlements') from tests.policy_events('license_policy.entitlement_detached') as e),
  array['["api:write", "sso"]']::jsonb[],
  'the detachment that changed the policy emits one license_policy.entitlement_detached'
);

-- Publishable keys may not manage policies.
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A web', api.create_api_key(kind => 'publishable'));
select from tests.act_as(tests.key_secret('A web'));
select throws_ok(
  $$select api.create_license_policy(code => 'web', name => 'Web')$$, 'LDNID', null,
  'a publishable key cannot create a policy (LDNID)'
);
select throws_ok(
  $$select * from api.list_license_policies()$$, 'LDNID', null,
  'a publishable key cannot list policies (LDNID)'
);

-- Two tenants: B sees and touches none of A's policies.
select from tests.act_as(tests.secret_key('B'));
select lives_ok(
  $$select api.create_license_policy(code => 'pro', name => 'B pro')$$,
  'another account may use the same code'
);
select from api.create_entitlement(code => 'sso', name => 'B SSO');
select results_eq(
  'select code from api.list_license_policies(include_archived => true)',
  array['pro'],
  'B lists only its own policies'
);
select is(
  (api.get_license_policy(code => 'pro')).name, 'B pro', 'B finds its own policy by a code A uses too'
);
select throws_ok(
  format('select api.get_license_policy(license_policy_id => %L)', tests.saved('pro')),
  'LNTFD', null,
  'B cannot get A''s policy'
);
select throws_ok(
  $$select api.get_license_policy(code => 'monthly')$$, 'LNTFD', null, 'B cannot get A''s policy by code'
);
select throws_ok(
  format('select api.update_license_policy(license_policy_id => %L, name => %L)', tests.saved('pro'), 'Mine'),
  'LNTFD', null,
  'B cannot update A''s policy'
);
select throws_ok(
  format('select api.archive_license_policy(license_policy_id => %L)', tests.saved('pro')),
  'LNTFD', null,
  'B cannot archive A''s policy'
);
select throws_ok(
  format('select api.attach_entitlement(license_policy_id => %L, code => %L)', tests.saved('pro'), 'sso'),
  'LNTFD', null,
  'B cannot attach to A''s policy'
);
select throws_ok(
  format('select api.detach_entitlement(license_policy_id => %L, code => %L)', tests.saved('pro'), 'sso'),
  'LNTFD', null,
  'B cannot detach from A''s policy'
);
select throws_ok(
  format(
    'select api.attach_entitlement(license_policy_id => %L, code => %L)',
    (api.get_license_policy(code => 'pro')).id, 'export'
  ),
  'LNTFD', null,
  'B cannot attach A''s entitlement to its own policy'
);
select tests.clear_context();
select is(
  (
    select row(name, archived_at, max_users)::text from lic.license_policies
    where id = tests.saved('pro')
  ),
  row('Pro plus', null::timestamptz, 5)::text,
  'A''s policy is unchanged after B''s attempts'
);

select * from finish();
rollback;
