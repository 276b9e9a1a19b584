-- worker.expire_licenses: the cross-tenant expiry sweep, run as lic_worker
-- (the function runs as its owner lic_maint). Validation never waits for it.
begin;
select plan(22);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'monthly');
select from tests.fx_policy('B', 'monthly');
select from tests.fx_license('A', 'a lapsed', 'monthly', 'active', now() - interval '1 hour');
select
from
  tests.fx_license('A', 'a grace lapsed', 'monthly', 'past_due', now() - interval '2 hours', now() + interval '1 day');
select from tests.fx_license('A', 'a suspended', 'monthly', 'suspended', now() - interval '1 hour');
select from tests.fx_license('A', 'a canceled', 'monthly', 'canceled', now() - interval '1 hour');
select from tests.fx_license('A', 'a soon', 'monthly', 'active', now() + interval '1 day');
select from tests.fx_license('A', 'a perpetual', 'monthly', 'active', null);
select from tests.fx_license('B', 'b lapsed', 'monthly', 'active', now() - interval '3 hours');
select from tests.fx_license('B', 'b later', 'monthly', 'active', now() + interval '10 days');

-- Before the sweep: stored active, yet validation answers EXPIRED.
select tests.act_as(tests.secret_key('A'));
select is(
  (api.validate_license(tests.fx_key('a lapsed'))).code, 'EXPIRED',
  'validation says EXPIRED before the sweep has run'
);
select is(
  (api.get_license(tests.fx_id('a lapsed'))).status, 'active', '... while the stored status is still active'
);
select tests.clear_context();
select is(
  (
    select a.active_licenses from lic.accounts as a
    where a.account_id = tests.account_id('A')
  ),
  4,
  'A counts 4 active or past_due licenses before the sweep'
);

-- The function: definer, owned by lic_maint, pinned search_path; lic_worker may run it, lic_app may not.
select ok(
  (
    select
      p.prosecdef and p.proowner = 'lic_maint'::regrole
      and 'search_path=pg_catalog, pg_temp' = any(p.proconfig)
    from pg_catalog.pg_proc as p
    where p.oid = 'worker.expire_licenses(integer)'::regprocedure
  ),
  'worker.expire_licenses is security definer, owned by lic_maint, with a pinned search_path'
);
select ok(
  has_function_privilege('lic_worker', 'worker.expire_licenses(integer)', 'execute')
  and not has_function_privilege('lic_app', 'worker.expire_licenses(integer)', 'execute'),
  'lic_worker may run the sweep, lic_app may not'
);

-- The candidates come from licenses__expires_at_idx.
set local enable_seqscan = off;
select alike(
  (
    select string_agg(line, e'\n') from tests.explain_lines(
      $q$
        select l.id from lic.licenses as l
        where l.expires_at <= now() and l.expires_at is not null and l.status in ('active', 'past_due')
        order by l.expires_at limit 1000 for update skip locked
      $q$
    ) as line
  ),
  '%licenses__expires_at_idx%',
  'the sweep''s candidates are read from licenses__expires_at_idx'
);
set local enable_seqscan = on;

-- A batch of one takes the oldest expiry first.
set local role lic_worker;
select is(worker.expire_licenses(batch_size => 1), 1, 'a batch of one expires one license');
select tests.clear_context();
select is(
  (
    select l.status from lic.licenses as l
    where l.id = tests.fx_id('b lapsed')
  ),
  'expired',
  'the oldest expiry goes first, whatever its account'
);
set local role lic_worker;
select is(worker.expire_licenses(), 2, 'the next run expires the other two due licenses, across tenants');
select is(worker.expire_licenses(), 0, 'a run with nothing due expires nothing');
select throws_ok(
  'select worker.expire_licenses(batch_size => 0)', 'LINVL', null, 'a batch size below 1 is refused'
);
select tests.clear_context();

select results_eq(
  $$
    select f.name, l.status from tests.fx_licenses as f inner join lic.licenses as l on f.id = l.id
    order by f.name
  $$,
  $$
    values
    ('a canceled', 'canceled'), ('a grace lapsed', 'expired'), ('a lapsed', 'expired'), ('a perpetual', 'active'),
    ('a soon', 'active'), ('a suspended', 'suspended'), ('b lapsed', 'expired'), ('b later', 'active')
  $$,
  'only active or past_due licenses past their expiry were expired'
);
select results_eq(
  $$
    select e.account_id, e.object ->> 'id', e.object ->> 'status', e.previous_attributes ->> 'status'
    from lic.events as e where e.type = 'license.expired' order by e.object ->> 'id'
  $$,
  format(
    $$
      values
      (%L::uuid, %L, 'expired', 'active'), (%L::uuid, %L, 'expired', 'past_due'),
      (%L::uuid, %L, 'expired', 'active')
    $$,
    tests.account_id('A'), tests.fx_id('a lapsed'), tests.account_id('A'), tests.fx_id('a grace lapsed'),
    tests.account_id('B'), tests.fx_id('b lapsed')
  ),
  'one license.expired event per license, in the license''s account, with its previous status'
);
select is(
  (
    select a.active_licenses from lic.accounts as a
    where a.account_id = tests.account_id('A')
  ),
  2,
  'the sweep frees A''s plan usage'
);
select is(
  (
    select a.active_licenses from lic.accounts as a
    where a.account_id = tests.account_id('B')
  ),
  1,
  'and B''s'
);

-- After the sweep: still EXPIRED; renewal brings it back.
select tests.act_as(tests.secret_key('A'));
select is(
  (api.validate_license(tests.fx_key('a lapsed'))).code, 'EXPIRED', 'validation still says EXPIRED after the sweep'
);
select is(
  (api.renew_license(tests.fx_id('a lapsed'))).status, 'active', 'renewing an expired license makes it active'
);
select is(
  (api.validate_license(tests.fx_key('a lapsed'))).code, 'VALID', 'and it validates again'
);
select tests.clear_context();

-- The sweep reads the clock; its helper, run as the sweep runs (lic_maint),
-- takes the instant: a sweep for a later one expires what will be due by then.
set local role lic_maint;
select is(
  private.expire_licenses(at => now() + interval '2 days', batch_size => 1000), 1,
  'at chooses the instant: a license due tomorrow is expired for a sweep at the day after'
);
select tests.clear_context();
select is(
  (
    select l.status from lic.licenses as l
    where l.id = tests.fx_id('a soon')
  ),
  'expired',
  'that license is the one due by then'
);

-- No tenant context is needed, and none is left behind.
select is(current_setting('lic.account_id', true), '', 'the sweep ran without a tenant context');
select throws_ok(
  $$set local role lic_worker; select * from api.list_licenses()$$, '42501', null,
  'lic_worker cannot call api functions'
);

select * from finish();
rollback;
