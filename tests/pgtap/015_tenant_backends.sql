-- The two ways a tenant's own backend reaches Licentric over SQL (decisions
-- 50 and 52), tried as an attacker holding one tenant's credentials would:
-- logged in as lic_app with A's key, or as A's bound login lic_tenant_<A>.
-- Every api function it can execute is called with B's ids; none answers a
-- row of B or changes one. And nothing it can execute takes an account, a
-- slug or a hash from its caller.
begin;
select plan(19);

select from tests.create_account('A', 'starter');
select from tests.create_account('B', 'growth');
select tests.seed_licensing(tests.account_id('A'));
select tests.seed_licensing(tests.account_id('B'));
insert into private.portal_slugs (slug, account_id) values ('b-portal', tests.account_id('B'));

-- B's identifiers, by the parameter names the api functions use for them.
create temporary table b_values (param text, value text);
insert into b_values (param, value)
select
  m.param,
  m.value
from (
  select
    'api_key_id' as param,
    k.id::text as value
  from lic.api_keys as k
  where k.account_id = tests.account_id('B')
  union all
  select
    'license_id' as param,
    l.id::text as value
  from lic.licenses as l
  where l.account_id = tests.account_id('B')
  union all
  select
    'key' as param,
    l.key as value
  from lic.licenses as l
  where l.account_id = tests.account_id('B')
  union all
  select
    'customer_id' as param,
    c.id::text as value
  from lic.customers as c
  where c.account_id = tests.account_id('B')
  union all
  select
    'machine_id' as param,
    m.id::text as value
  from lic.machines as m
  where m.account_id = tests.account_id('B')
  union all
  select
    'agent_id' as param,
    a.id::text as value
  from lic.agents as a
  where a.account_id = tests.account_id('B')
  union all
  select
    p.param,
    lp.id::text as value
  from lic.license_policies as lp, unnest(array['policy_id', 'license_policy_id']) as p (param)
  where lp.account_id = tests.account_id('B')
  union all
  select
    'entitlement_id' as param,
    e.id::text as value
  from lic.entitlements as e
  where e.account_id = tests.account_id('B')
  union all
  select
    'meter_id' as param,
    m.id::text as value
  from lic.meters as m
  where m.account_id = tests.account_id('B')
  union all
  select
    'budget_id' as param,
    b.id::text as value
  from lic.budgets as b
  where b.account_id = tests.account_id('B')
  union all
  select
    'event_id' as param,
    e.id::text as value
  from lic.events as e
  where e.account_id = tests.account_id('B')
  union all
  select
    'stripe_event_id' as param,
    e.id::text as value
  from lic.stripe_events as e
  where e.account_id = tests.account_id('B')
  union all
  select
    'mapping_id' as param,
    m.id::text as value
  from lic.stripe_mappings as m
  where m.account_id = tests.account_id('B')
  union all
  select
    p.param,
    w.id::text as value
  from lic.webhook_endpoints as w, unnest(array['webhook_endpoint_id', 'endpoint_id']) as p (param)
  where w.account_id = tests.account_id('B')
  union all
  select
    p.param,
    d.id::text as value
  from lic.webhook_deliveries as d, unnest(array['webhook_delivery_id', 'delivery_id']) as p (param)
  where d.account_id = tests.account_id('B')
  union all
  select
    'account_id' as param,
    tests.account_id('B')::text as value
  union all
  select
    'slug' as param,
    'b-portal' as value
) as m (param, value);
grant select on b_values to lic_app;

-- What B holds, to compare after every call has been tried.
create temporary table b_before as
select
  t::text as tbl,
  tests.rows_of(t, tests.account_id('B')) as rows
from tests.tenant_tables() as t;

-- The call of fn with B's value for each parameter named like one of B's
-- identifiers and null for the others; its answer as text, or the SQLSTATE
-- it raised.
create function pg_temp.try_with_b(fn regprocedure)
returns text
language plpgsql
volatile
as $$
declare
  v_call text;
  v_answer text;
begin
  select format(
    'select coalesce(jsonb_agg(to_jsonb(r))::text, ''[]'') from %s.%s(%s) as r',
    quote_ident(n.nspname), quote_ident(p.proname),
    coalesce(string_agg(
      format(
        '%I => %s::%s', a.name,
        coalesce(quote_literal((select b.value from b_values as b where b.param = a.name limit 1)), 'null'),
        format_type(a.type, null)
      ),
      ', ' order by a.pos
    ) filter (where a.name is not null), '')
  ) into v_call
  from pg_catalog.pg_proc as p
  inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
  left join lateral unnest(p.proargnames[1:p.pronargs], p.proargtypes::oid []) with ordinality
    as a (name, type, pos) on true
  where p.oid = fn
  group by n.nspname, p.proname;
  execute v_call into v_answer;
  return v_answer;
exception
  when others then
    return 'error ' || sqlstate;
end;
$$;

-- The api functions a login may execute, and which of them leak B: an
-- answer that holds any of B's identifiers.
create temporary view callable as
select p.oid::regprocedure as fn
from pg_catalog.pg_proc as p
inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
where
  n.nspname in ('api', 'service', 'worker', 'private') and has_function_privilege(p.oid, 'execute')
  and p.proname <> 'authenticate';
grant execute on function pg_temp.try_with_b(regprocedure) to lic_app;
create temporary view leaks as
select
  c.fn::text as fn,
  pg_temp.try_with_b(c.fn) as answer
from callable as c;
-- Each login's answers, kept: every call is tried once.
create temporary table tried (login text, fn text, answer text);
grant select on callable, leaks to lic_app;
grant select, insert on tried to lic_app;

-- Nothing a tenant's backend may execute takes the account, a portal slug or
-- a token hash from its caller: those belong to the web process (service).
select is_empty(
  $$
    select p.oid::regprocedure::text
    from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    cross join lateral unnest(p.proargnames[1:p.pronargs]) as a (name)
    where
      n.nspname in ('api', 'service', 'worker', 'private', 'lic')
      and has_function_privilege('lic_app', p.oid, 'execute')
      and (
        a.name = 'account_id' or a.name like '%\_hash'
        -- A tenant may set its own portal's slug; no function may take one to find an account.
        or (a.name = 'slug' and strpos(p.prosrc, 'private.require_account(') = 0)
      )
  $$,
  'lic_app can execute no function that takes an account, a slug or a hash from its caller'
);
select is(
  (
    select count(*)::integer from b_values
    where param in ('license_id', 'key', 'customer_id', 'meter_id')
  ), 4,
  'B''s identifiers are there to be tried'
);

-- 1. Logged in as lic_app, authenticated with A's secret key.
set local session authorization lic_app;
select is(session_user::text, 'lic_app', 'the session logged in as lic_app');
select from api.authenticate(secret => tests.secret_key('A'));
select cmp_ok(
  (select count(*)::integer from callable), '>=', 90, 'lic_app with A''s key tries every api function it may call'
);
select is_empty(
  $$select fn::text from callable where fn::text !~ '^api\.'$$,
  'lic_app may call nothing outside api'
);
insert into tried (login, fn, answer) select
  'lic_app' as login,
  l.fn,
  l.answer
from leaks as l;
select is_empty(
  $$
    select t.fn || ': ' || t.answer from tried as t
    where t.login = 'lic_app' and exists (select from b_values as b where strpos(t.answer, b.value) > 0)
  $$,
  'no api function called with B''s ids answers anything of B (each refuses or answers only A''s)'
);
select is_empty(
  $$
    select t.fn || ': ' || t.answer from tried as t
    where t.answer like 'error %' and t.answer !~ '^error L' and t.answer <> 'error 23505'
  $$,
  'every call answers or refuses with one of Licentric''s own codes or 23505 (409: B''s slug is taken)'
);
-- No service-wide counts through the statistics (decision 54).
select is_empty(
  $$
    select q.statement from (values
      ('select n_live_tup from pg_catalog.pg_stat_user_tables'),
      ('select pg_catalog.pg_stat_get_live_tuples(''lic.licenses''::regclass)'),
      ('select calls from pg_catalog.pg_stat_user_functions'),
      ('select query from pg_catalog.pg_stat_activity'),
      ('select heap_blks_read from pg_catalog.pg_statio_user_tables')
    ) as q (statement)
    where tests.sqlstate_of(q.statement) is distinct from '42501'
  $$,
  'lic_app reads no table, function or session statistics'
);
reset session authorization;
select is_empty(
  $$
    select b.tbl from b_before as b
    where b.rows is distinct from tests.rows_of(b.tbl::regclass, tests.account_id('B'))
  $$,
  'every one of B''s rows is as it was'
);

-- 2. A login bound to A: no key, the login is the proof.
select private.create_account_login(tests.account_id('A'), 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5');
select set_config('session_authorization', private.account_login_role(tests.account_id('A')), true);
select is((api.get_account()).id, tests.account_id('A'), 'a bound login acts for its account without a key');
insert into tried (login, fn, answer) select
  'bound' as login,
  l.fn,
  l.answer
from leaks as l;
select is_empty(
  $$
    select t.fn || ': ' || t.answer from tried as t
    where t.login = 'bound' and exists (select from b_values as b where strpos(t.answer, b.value) > 0)
  $$,
  'called by A''s bound login with B''s ids, no api function answers anything of B'
);
select set_config('lic.account_id', tests.account_id('B')::text, true);
select throws_ok(
  'select api.get_account()', 'LAUTH', null,
  'a bound login that names another account in lic.account_id is refused, not shown that account'
);
select set_config('lic.account_id', '', true);
select throws_ok(
  format('select api.authenticate(secret => %L)', tests.secret_key('B')), 'LAUTH', null,
  'a bound login cannot authenticate with another account''s key'
);
select lives_ok(
  format('select api.authenticate(secret => %L)', tests.secret_key('A')),
  'it may authenticate with a key of its own account'
);
reset session authorization;
select is_empty(
  $$
    select b.tbl from b_before as b
    where b.rows is distinct from tests.rows_of(b.tbl::regclass, tests.account_id('B'))
  $$,
  'after the bound login''s tries too, every one of B''s rows is as it was'
);

-- 3. lic_app without a key has no account, whatever it writes.
set local session authorization lic_app;
select set_config('lic.account_id', tests.account_id('B')::text, true);
select throws_ok('select api.get_account()', 'LAUTH', null, 'lic_app naming an account without a key is refused');
reset session authorization;
select is(
  (
    select private.drop_account_login(tests.account_id('A'))
  ),
  true,
  'an account''s bound login can be dropped'
);

-- Only Licentric's logins connect, each with its timeouts (sql/0022).
select is_empty(
  $$
    select r.rolname::text from pg_catalog.pg_roles as r
    where
      (r.rolname in ('lic_app', 'lic_web', 'lic_worker', 'lic_reporting')
        and not has_database_privilege(r.oid, current_database(), 'connect'))
      or (r.rolname in ('lic_owner', 'lic_definer', 'lic_maint')
        and has_database_privilege(r.oid, current_database(), 'connect'))
  $$,
  'PUBLIC may not connect to the database; the four login roles may'
);
select is_empty(
  $$
    select r.role from (values ('lic_app'), ('lic_web'), ('lic_worker'), ('lic_reporting')) as r (role)
    where not exists (
      select from pg_catalog.pg_db_role_setting as s
      inner join pg_catalog.pg_database as d on s.setdatabase = d.oid
      where
        s.setrole = r.role::regrole and d.datname = current_database()
        and s.setconfig @> array['idle_in_transaction_session_timeout=60s']
        and exists (select from unnest(s.setconfig) as c (setting) where c.setting like 'statement\_timeout=%')
    )
  $$,
  'every login role has a statement timeout and an idle-in-transaction timeout in this database'
);

select * from finish();
rollback;
