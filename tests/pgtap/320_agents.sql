-- Agent identities: tokens (format, storage, shown once), authentication as
-- kind agent and what that kind may reach, the tenant plan's agent limit,
-- revoking, rolling, updating, listing, events and tenant isolation.
begin;
select plan(69);

select from tests.create_account('A');
select from tests.create_account('B');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('A'), 'std', 'Standard');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('B'), 'std', 'Standard');

select from tests.act_as(tests.secret_key('B'));
select tests.remember('BL', (api.create_license(policy_code => 'std')).id);
select tests.remember('B agent', (api.create_agent(name => 'b bot')).id);
select tests.clear_context();

select from tests.act_as(tests.secret_key('A'));
select tests.remember('L', (api.create_license(policy_code => 'std')).id);
select
  tests.remember_secret('one', a.token) as token,
  tests.remember('one', a.id) as id
from api.create_agent(name => 'one', license_id => tests.id('L'), metadata => '{"model": "x"}') as a;

-- The token: lic_ak_, the account id, 40 random hex, an 8-hex checksum; shown once.
select matches(
  tests.secret('one'), '^lic_ak_' || replace(tests.account_id('A')::text, '-', '') || '[0-9a-f]{48}$',
  'an agent token is lic_ak_, the account id and 48 hex'
);
select is(
  (
    select row(a.name, a.license_id, a.status, a.redacted, a.metadata, a.revoked_at, a.token)::text
    from api.get_agent(agent_id => tests.id('one')) as a
  ),
  row(
    'one', tests.id('L'), 'active', left(tests.secret('one'), 7) || '…' || right(tests.secret('one'), 4),
    '{"model": "x"}'::jsonb, null::timestamptz, null::text
  )::text,
  'api.get_agent shows the agent, its token redacted and never in clear'
);
select is_empty(
  'select id from api.list_agents() where token is not null',
  'api.list_agents never shows a token'
);
select is(
  tests.event_count('agent.created', jsonb_build_object('id', tests.id('one'), 'name', 'one')), 1,
  'creating an agent emits agent.created'
);
select tests.clear_context();
select is(
  private.token_checksum(left(tests.secret('one'), -8)), right(tests.secret('one'), 8),
  'an agent token ends with the checksum of the rest'
);
select is(
  (
    select a.token_hash from lic.agents as a
    where a.id = tests.id('one')
  ),
  sha256(convert_to(tests.secret('one'), 'UTF8')),
  'an agent token is stored as its sha256'
);
select is_empty(
  $$
    select a.id from lic.agents as a where strpos(a::text, substr(tests.secret('one'), 40, 40)) > 0
    union all
    select e.id from lic.events as e where strpos(e::text, substr(tests.secret('one'), 40, 40)) > 0
  $$,
  'neither the agent row nor any event holds the clear token'
);

-- Authenticating with the token: kind agent, and only api.get_current_agent.
select is(
  (select row(c.kind, c.agent_id)::text from tests.act_as(tests.secret('one')) as c),
  row('agent', tests.id('one'))::text,
  'an agent token authenticates as kind agent with the agent''s id'
);
select is(
  (api.get_current_agent()).id, tests.id('one'),
  'api.get_current_agent returns the agent that authenticated'
);
select is(
  (api.get_current_agent()).token, null,
  'api.get_current_agent does not show the token'
);
select
  throws_ok(
    s.statement, 'LDNID', null, format('an agent token may not call %s', s.statement)
  )
from unnest(array[
  'select api.get_account()',
  'select * from api.list_api_keys()',
  $$select api.create_api_key(kind => 'secret')$$,
  $$select api.create_license(policy_code => 'std')$$,
  'select * from api.list_agents()',
  $$select api.create_agent(name => 'child')$$,
  format('select api.get_agent(agent_id => %L)', tests.id('one')),
  format('select api.revoke_agent(agent_id => %L)', tests.id('one')),
  format('select api.roll_agent_token(agent_id => %L)', tests.id('one')),
  format('select api.update_agent(agent_id => %L, name => %L)', tests.id('one'), 'x'),
  'select * from api.list_events()'
]) as s (statement);
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  'select api.get_current_agent()', 'LDNID', null, 'a secret key may not call api.get_current_agent'
);
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select tests.clear_context();
select from tests.act_as(tests.key_secret('A pk'));
select throws_ok(
  'select api.get_current_agent()', 'LDNID', null, 'a publishable key may not call api.get_current_agent'
);
select throws_ok(
  $$select api.create_agent(name => 'pk')$$, 'LDNID', null, 'a publishable key may not create an agent'
);
select tests.clear_context();

-- Bad input.
select from tests.act_as(tests.secret_key('A'));
select
  throws_ok(
    s.statement, 'LINVL', null, format('%s raises LINVL', s.statement)
  )
from unnest(array[
  'select api.create_agent(name => null)',
  $$select api.create_agent(name => '')$$,
  format('select api.create_agent(name => %L)', repeat('n', 201)),
  format('select api.update_agent(agent_id => %L, name => %L)', tests.id('one'), ''),
  format('select api.update_agent(agent_id => %L, metadata => %L)', tests.id('one'), '[1]'),
  $$select * from api.list_agents(status => 'gone')$$
]) as s (statement);
select throws_ok(
  format('select api.create_agent(name => %L, license_id => %L)', 'lost', gen_random_uuid()),
  'LNTFD', null, 'an agent for an unknown license raises LNTFD'
);
select throws_ok(
  format('select api.create_agent(name => %L, license_id => %L)', 'lost', tests.id('BL')),
  'LNTFD', null, 'an agent for another tenant''s license raises LNTFD'
);

-- The free plan allows 5 active agents.
select is((api.get_account()).usage ->> 'agents', '1', 'the account counts its active agent');
select tests.remember('agent ' || i, (api.create_agent(name => 'agent ' || i)).id) from generate_series(2, 5) as i;
select is((api.get_account()).usage ->> 'agents', '5', 'the account counts five active agents');
select throws_ok(
  $$select api.create_agent(name => 'sixth')$$,
  'LPLAN', null, 'a sixth agent on the free plan raises LPLAN'
);
select is(
  tests.event_count('agent.created', jsonb_build_object('name', 'sixth')), 0,
  'a refused agent emits no event'
);

-- Revoking.
select is(
  (
    select row(a.status, a.revoked_at)::text from api.revoke_agent(agent_id => tests.id('agent 2')) as a
  ),
  row('revoked', now())::text,
  'a revoked agent has status revoked and revoked_at'
);
select is(
  tests.event_count('agent.revoked', jsonb_build_object('id', tests.id('agent 2'), 'status', 'revoked')), 1,
  'revoking emits agent.revoked'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes ->> 'status' from lic.events as e
    where e.type = 'agent.revoked' and e.object ->> 'id' = tests.id('agent 2')::text
  ),
  'active',
  'agent.revoked names the previous status'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.revoke_agent(agent_id => tests.id('agent 2'))).revoked_at, now(),
  'revoking again returns the agent unchanged'
);
select is(
  tests.event_count('agent.revoked', jsonb_build_object('id', tests.id('agent 2'))), 1,
  'revoking again emits no event'
);
select is((api.get_account()).usage ->> 'agents', '4', 'a revoked agent no longer counts');
select tests.remember('sixth', (api.create_agent(name => 'sixth')).id);
select is(
  (api.get_agent(agent_id => tests.id('sixth'))).status, 'active',
  'revoking an agent frees a place in the plan'
);
select throws_ok(
  $$select api.create_agent(name => 'seventh')$$,
  'LPLAN', null, 'and the plan is full again'
);
select tests.clear_context();

-- A revoked agent's token stops working at once.
select from tests.act_as(tests.secret_key('A'));
select tests.remember_secret('two', (api.roll_agent_token(agent_id => tests.id('agent 3'))).token);
select from api.revoke_agent(agent_id => tests.id('agent 3'));
select tests.clear_context();
select throws_ok(
  format('select tests.act_as(%L)', tests.secret('two')),
  'LAUTH', null, 'a revoked agent''s token does not authenticate'
);
select tests.clear_context();

-- Rolling: a new token, the old one invalid at once.
select from tests.act_as(tests.secret_key('A'));
select tests.remember_secret('one rolled', r.token)
from api.roll_agent_token(agent_id => tests.id('one')) as r;
select isnt(tests.secret('one rolled'), tests.secret('one'), 'rolling gives a new token');
select is(
  (api.get_agent(agent_id => tests.id('one'))).redacted,
  left(tests.secret('one rolled'), 7) || '…' || right(tests.secret('one rolled'), 4),
  'the agent shows the new token redacted'
);
select is(
  tests.event_count('agent.token_rolled', jsonb_build_object('id', tests.id('one'))), 1,
  'rolling emits agent.token_rolled'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes ->> 'redacted' from lic.events as e
    where e.type = 'agent.token_rolled' and e.object ->> 'id' = tests.id('one')::text
  ),
  left(tests.secret('one'), 7) || '…' || right(tests.secret('one'), 4),
  'agent.token_rolled names the previous redacted token'
);
select throws_ok(
  format('select tests.act_as(%L)', tests.secret('one')),
  'LAUTH', null, 'the old token stops working at once'
);
select tests.clear_context();
select is(
  (select c.agent_id from tests.act_as(tests.secret('one rolled')) as c), tests.id('one'),
  'the new token authenticates as the same agent'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.roll_agent_token(agent_id => %L)', tests.id('agent 2')),
  'LSTAT', null, 'a revoked agent''s token cannot be rolled'
);
select throws_ok(
  format('select api.roll_agent_token(agent_id => %L)', gen_random_uuid()),
  'LNTFD', null, 'rolling the token of an unknown agent raises LNTFD'
);

-- Updating.
select is(
  (
    select row(a.name, a.metadata, a.license_id)::text
    from api.update_agent(agent_id => tests.id('one'), name => 'renamed') as a
  ),
  row('renamed', '{"model": "x"}'::jsonb, tests.id('L'))::text,
  'updating the name keeps the metadata and the license'
);
select is(
  (api.update_agent(agent_id => tests.id('one'), metadata => '{"model": "y"}')).metadata, '{"model": "y"}'::jsonb,
  'updating the metadata replaces it'
);
select is(
  tests.event_count('agent.updated', jsonb_build_object('id', tests.id('one'))), 2,
  'each update that changes something emits agent.updated'
);
select from api.update_agent(agent_id => tests.id('one'), name => 'renamed');
select is(
  tests.event_count('agent.updated', jsonb_build_object('id', tests.id('one'))), 2,
  'an update that changes nothing emits no event'
);
select throws_ok(
  format('select api.update_agent(agent_id => %L, name => %L)', gen_random_uuid(), 'x'),
  'LNTFD', null, 'updating an unknown agent raises LNTFD'
);

-- Listing.
select results_eq(
  'select id from api.list_agents(page_limit => 100)',
  $$
    select * from unnest(array[
      tests.id('sixth'), tests.id('agent 5'), tests.id('agent 4'), tests.id('agent 3'), tests.id('agent 2'),
      tests.id('one')
    ])
  $$,
  'the list shows the account''s agents, newest first'
);
select results_eq(
  $$select id from api.list_agents(status => 'revoked')$$,
  $$select * from unnest(array[tests.id('agent 3'), tests.id('agent 2')])$$,
  'the list filters by status'
);
select results_eq(
  format($$select id from api.list_agents(status => 'active', starting_after => %L)$$, tests.id('agent 5')),
  $$select * from unnest(array[tests.id('agent 4'), tests.id('one')])$$,
  'starting_after walks on from the cursor, within the status'
);
select results_eq(
  format('select id from api.list_agents(page_limit => 1, ending_before => %L)', tests.id('agent 3')),
  $$select * from unnest(array[tests.id('agent 5'), tests.id('agent 4')])$$,
  'ending_before walks back from the cursor, one row past the page'
);

-- Tenant isolation.
select
  throws_ok(
    s.statement, 'LNTFD', null, format('%s on another tenant''s agent raises LNTFD', s.fn)
  )
from (
  values
  ('api.get_agent', format('select api.get_agent(agent_id => %L)', tests.id('B agent'))),
  ('api.update_agent', format('select api.update_agent(agent_id => %L, name => %L)', tests.id('B agent'), 'x')),
  ('api.revoke_agent', format('select api.revoke_agent(agent_id => %L)', tests.id('B agent'))),
  ('api.roll_agent_token', format('select api.roll_agent_token(agent_id => %L)', tests.id('B agent')))
) as s (fn, statement);
select is_empty(
  format('select id from api.list_agents() where id = %L', tests.id('B agent')),
  'the list never shows another tenant''s agent'
);
select tests.clear_context();
select is(
  (
    select row(a.name, a.status)::text from lic.agents as a
    where a.id = tests.id('B agent')
  ),
  row('b bot', 'active')::text,
  'tenant B''s agent is unchanged'
);
select from tests.act_as(tests.secret_key('B'));
select results_eq(
  'select id from api.list_agents()', $$select tests.id('B agent')$$, 'tenant B lists only its own agent'
);
select tests.clear_context();
select * from finish();
rollback;
