-- Two tenants, A and B: no read or write path of one reaches the other, at
-- the api level (lic_app with an API key) or the table level (lic_definer
-- with a tenant context). Table checks loop over every lic table with an
-- account_id, so a new table is covered as soon as it is seeded below.
begin;
select plan(44);

-- No context: a new session has never set one. Rows written by the
-- superuser (who bypasses RLS) set none either.
select is(current_setting('lic.account_id', true), null, 'a new session has no tenant context');

insert into lic.accounts (account_id, name) values ('01890000-0000-7000-8000-000000000000', 'Raw');
insert into lic.api_keys (account_id, kind, key_hash, redacted)
values ('01890000-0000-7000-8000-000000000000', 'secret', sha256('raw'), 'raw');
insert into lic.idempotency_keys (account_id, principal_kind, principal_id, key, request_fingerprint, response_status)
values ('01890000-0000-7000-8000-000000000000', 'secret', private.uuid_v7(), 'raw', 'raw', 200);

set local role lic_definer;
select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where has_table_privilege(t, 'select') and tests.count_rows(t, null, false) > 0
  $$,
  'without a tenant context lic_definer sees no row of any tenant table'
);
set local role lic_web;
select is_empty(
  $$
    with api_functions as materialized (
      select p.oid::regprocedure as fn
      from pg_catalog.pg_proc as p
      inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
      where n.nspname = 'api' and p.proname <> 'authenticate'
    )
    select fn::text from api_functions
    where tests.sqlstate_of(tests.call_with_nulls(fn)) is distinct from 'LAUTH'
  $$,
  'without a tenant context every api function but authenticate raises LAUTH'
);
select is_empty(
  $$
    select p.oid::regprocedure::text
    from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where
      n.nspname = 'service' and strpos(p.prosrc, 'private.stripe_begin(') > 0
      and tests.sqlstate_of(tests.call_with_nulls(p.oid::regprocedure)) is distinct from 'LNTFD'
  $$,
  'Stripe''s deliveries (the account comes from the URL) raise LNTFD for no account'
);
select is_empty(
  $$
    select p.oid::regprocedure::text
    from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where
      n.nspname = 'service' and strpos(p.prosrc, 'private.portal_begin(') > 0
      and tests.sqlstate_of(tests.call_with_nulls(p.oid::regprocedure)) is distinct from 'LNTFD'
  $$,
  'the portal visitor''s functions (the account comes from the slug) raise LNTFD for no portal'
);
select throws_ok(
  'select * from api.list_api_keys()', 'LAUTH', null, 'api.list_api_keys without a context raises LAUTH'
);

-- An empty context ('' as left by a cleared transaction) is no context.
select tests.clear_context();
set local role lic_definer;
select is(current_setting('lic.account_id', true), '', 'the context is now the empty string');
select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where has_table_privilege(t, 'select') and tests.count_rows(t, null, false) > 0
  $$,
  'with an empty tenant context lic_definer sees no row of any tenant table'
);
set local role lic_app;
select is_empty(
  $$
    with api_functions as materialized (
      select p.oid::regprocedure as fn
      from pg_catalog.pg_proc as p
      inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
      where n.nspname = 'api' and p.proname <> 'authenticate'
    )
    select fn::text from api_functions
    where tests.sqlstate_of(tests.call_with_nulls(fn)) is distinct from 'LAUTH'
  $$,
  'with an empty tenant context every api function but authenticate raises LAUTH'
);
select tests.clear_context();

-- Two tenants, each with its first secret key, a publishable key, a second
-- secret key and a stored idempotent response.
select from tests.create_account('A', 'starter');
select from tests.create_account('B', 'growth');

select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A web', api.create_api_key(kind => 'publishable', name => 'web'));
select from tests.remember_key('A backend', api.create_api_key(kind => 'secret', name => 'backend'));
select from api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-a');
select from api.save_idempotent_response(key => 'order-1', fingerprint => 'fp-a', status => 201, body => '{"t": "A"}');

select from tests.act_as(tests.secret_key('B'));
select from tests.remember_key('B web', api.create_api_key(kind => 'publishable', name => 'web'));
select from tests.remember_key('B backend', api.create_api_key(kind => 'secret', name => 'backend'));
select from api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-b');
select from api.save_idempotent_response(key => 'order-1', fingerprint => 'fp-b', status => 201, body => '{"t": "B"}');
select tests.clear_context();
select tests.seed_licensing(tests.account_id('A'));
select tests.seed_licensing(tests.account_id('B'));
-- A request each, counted by the rate limit (lic.request_counts).
select from service.authenticate_request(tests.secret_key('A'), sha256('client'::bytea), 10);
select from service.authenticate_request(tests.secret_key('B'), sha256('client'::bytea), 10);
select tests.clear_context();

select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where tests.count_rows(t, tests.account_id('A')) = 0 or tests.count_rows(t, tests.account_id('B')) = 0
  $$,
  'every tenant table holds rows of both tenants, so the checks below are not vacuous (seed a new table above)'
);

create temporary table b_keys_before as
select k.* from lic.api_keys as k
where k.account_id = tests.account_id('B');

-- API level: lic_app authenticated as A.
select from tests.act_as(tests.secret_key('A'));
select results_eq(
  'select id from api.list_api_keys() order by id',
  $$select * from tests.key_ids('A', 'A web', 'A backend') as id order by id$$,
  'api.list_api_keys shows only the authenticated tenant''s keys'
);
select results_eq(
  format('select id from api.list_api_keys(ending_before => %L) order by id', '00000000-0000-0000-0000-000000000000'),
  $$select * from tests.key_ids('A', 'A web', 'A backend') as id order by id$$,
  'api.list_api_keys paging back shows only the authenticated tenant''s keys'
);
select throws_ok(
  format('select api.get_api_key(api_key_id => %L)', tests.key_id('B backend')),
  'LNTFD', null,
  'api.get_api_key on another tenant''s key raises LNTFD'
);
select throws_ok(
  format('select api.roll_api_key(api_key_id => %L)', tests.key_id('B backend')),
  'LNTFD', null,
  'api.roll_api_key on another tenant''s key raises LNTFD'
);
select throws_ok(
  format('select api.revoke_api_key(api_key_id => %L)', tests.key_id('B backend')),
  'LNTFD', null,
  'api.revoke_api_key on another tenant''s key raises LNTFD'
);
select throws_ok(
  format('select api.revoke_api_key(api_key_id => %L)', tests.key_id('B web')),
  'LNTFD', null,
  'api.revoke_api_key on another tenant''s publishable key raises LNTFD'
);
select is(
  (api.get_account()).id, tests.account_id('A'),
  'api.get_account returns the authenticated tenant'
);
select is(
  (api.get_account()).usage ->> 'api_keys', '3',
  'api.get_account counts only the authenticated tenant''s keys'
);
select is(
  api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-a'), row(201, '{"t": "A"}')::api.idempotent_response,
  'api.claim_idempotency_key finds the tenant''s own stored response'
);
select tests.clear_context();
select results_eq(
  $$select k.* from lic.api_keys as k where k.account_id = tests.account_id('B') order by k.id$$,
  'select * from b_keys_before order by id',
  'tenant B''s keys are unchanged after tenant A tried to read, roll and revoke them'
);

-- Table level: lic_definer with A's context.
select tests.act_as_definer(tests.account_id('A'));
select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where has_table_privilege(t, 'select') and tests.count_rows(t, tests.account_id('A'), false) > 0
  $$,
  'with tenant A''s context lic_definer sees no other tenant''s row in any tenant table'
);
select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where has_table_privilege(t, 'select') and tests.count_rows(t, tests.account_id('A')) = 0
  $$,
  'with tenant A''s context lic_definer sees A''s own rows in every tenant table'
);
select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where has_table_privilege(t, 'update') and tests.touch_rows(t, 'update', tests.account_id('B')) <> 0
  $$,
  'with tenant A''s context updating B''s rows affects none in any tenant table'
);
select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where has_table_privilege(t, 'update') and tests.touch_rows(t, 'update', tests.account_id('A')) = 0
  $$,
  'with tenant A''s context the same update reaches A''s own rows'
);
select is_empty(
  $$
    select t::text from tests.tenant_tables() as t
    where has_table_privilege(t, 'delete') and tests.touch_rows(t, 'delete', tests.account_id('B')) <> 0
  $$,
  'with tenant A''s context deleting B''s rows affects none in any tenant table'
);
select throws_ok(
  format(
    'insert into lic.accounts (account_id, name) values (%L, %L)', tests.account_id('B'), 'x'
  ),
  '42501', null,
  'with tenant A''s context lic_definer cannot insert an account row for B'
);
select throws_ok(
  format('insert into lic.accounts (name) values (%L)', 'new'),
  '42501', null,
  'with tenant A''s context lic_definer cannot insert a new account'
);
select throws_ok(
  format(
    $$insert into lic.api_keys (account_id, kind, key_hash, redacted) values (%L, 'secret', sha256('x'), 'x')$$,
    tests.account_id('B')
  ),
  '42501', null,
  'with tenant A''s context lic_definer cannot insert an API key for B'
);
select throws_ok(
  format(
    $$
      insert into lic.idempotency_keys (account_id, key, request_fingerprint, response_status)
      values (%L, 'k', 'f', 200)
    $$,
    tests.account_id('B')
  ),
  '42501', null,
  'with tenant A''s context lic_definer cannot insert an idempotency key for B'
);
select throws_ok(
  format(
    'update lic.idempotency_keys set account_id = %L', tests.account_id('B')
  ),
  '42501', null,
  'with tenant A''s context lic_definer cannot move A''s rows to B'
);
select tests.clear_context();

-- lic_app reaches no table directly, whatever it is authenticated as.
select from tests.act_as(tests.secret_key('A'));
select throws_ok('select * from lic.api_keys', '42501', null, 'lic_app cannot select from lic.api_keys');
select is_empty(
  $$
    with lic_relations as materialized (
      select c.oid::regclass as rel
      from pg_catalog.pg_class as c
      inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
      where n.nspname = 'lic' and c.relkind in ('r', 'p', 'v', 'm')
    )
    select rel::text from lic_relations
    where tests.sqlstate_of(format('select from %s', rel)) is distinct from '42501'
  $$,
  'lic_app cannot select from any lic table'
);
select throws_ok(
  $$insert into lic.idempotency_keys (account_id, key, request_fingerprint, response_status)
    values (current_setting('lic.account_id')::uuid, 'k', 'f', 200)$$,
  '42501', null,
  'lic_app cannot insert into lic tables even for its own tenant'
);
select throws_ok(
  $$select private.set_context(account_id => null, kind => 'secret')$$,
  '42501', null,
  'lic_app cannot call private.set_context'
);

-- The context cannot be forged: lic.* settings are writable by any role, so
-- only a context written by private.set_context counts.
select tests.clear_context();
set local role lic_app;
select from set_config('lic.account_id', tests.account_id('B')::text, true);
select from set_config('lic.key_kind', 'secret', true);
select throws_ok(
  'select api.get_account()', 'LAUTH', null,
  'lic_app cannot name a tenant by setting lic.account_id itself'
);
select throws_ok(
  'select * from api.create_api_key(kind => ''secret'')', 'LAUTH', null,
  'lic_app cannot mint a key for a tenant it names by setting lic.account_id itself'
);
select from tests.act_as(tests.secret_key('A'));
select from set_config('lic.account_id', tests.account_id('B')::text, true);
select throws_ok(
  'select * from api.list_api_keys()', 'LAUTH', null,
  'lic_app authenticated as A cannot switch to B by overwriting lic.account_id'
);
select from tests.act_as(tests.key_secret('A web'));
select from set_config('lic.key_kind', 'secret', true);
select throws_ok(
  'select * from api.list_api_keys()', 'LAUTH', null,
  'lic_app authenticated with a publishable key cannot promote it by overwriting lic.key_kind'
);

-- A publishable key authenticates but reaches only client-safe functions.
select is(
  (tests.act_as(tests.key_secret('A web'))).kind, 'publishable',
  'a publishable key authenticates'
);
select throws_ok('select * from api.list_api_keys()', 'LDNID', null, 'a publishable key cannot list keys');
select throws_ok(
  $$select * from api.create_api_key(kind => 'secret')$$, 'LDNID', null, 'a publishable key cannot create keys'
);
select throws_ok(
  format('select * from api.revoke_api_key(api_key_id => %L)', tests.key_id('A web')),
  'LDNID', null,
  'a publishable key cannot revoke keys, not even itself'
);
select throws_ok('select api.get_account()', 'LDNID', null, 'a publishable key cannot read the account');
select lives_ok(
  $$select api.claim_idempotency_key(key => 'pk-1', fingerprint => 'fp')$$,
  'a publishable key may claim an idempotency key (client-safe)'
);

select * from finish();
rollback;
