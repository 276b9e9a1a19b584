-- Outbound webhooks (functions/80_webhooks.sql): endpoint rules and errors,
-- the fan-out from lic.events (from requests and from a worker sweep), the
-- worker's claim (fair across tenants), record, release and purge with the
-- clock fixed through the private helpers' `at` (the worker functions read
-- now()), the retry schedule and its jitter, disabling (410, five
-- days of failure, by the account), the delivery log, retry and replay,
-- secret rotation, and two tenants.
begin;
select plan(237);
\ir licensing_fixtures.sql

select from tests.create_account('A', 'growth');
select from tests.create_account('B', 'growth');
select from tests.fx_policy('A', 'monthly');
select from tests.fx_policy('B', 'monthly');

-- The worker's claim and record at a chosen instant: the private helpers the
-- worker functions call with now(), as their owner lic_maint, from the
-- superuser's context; each helper switches role for the call only. Claimed
-- leases are remembered so a test records an attempt by delivery id.
create table tests.wh_leases (delivery_id uuid primary key, account_id uuid not null, lease_id uuid not null);
grant select, insert, update on tests.wh_leases to lic_maint;
create type tests.wh_claim as (
  delivery_id uuid,
  account_id uuid,
  endpoint_id uuid,
  lease_id uuid,
  url text,
  secrets bytea [],
  event_id uuid,
  event_type text,
  payload text,
  attempt integer
);

create function tests.wh_claim(
  batch_size integer default 100,
  at timestamptz default now(),
  lease interval default '60 seconds'
)
returns setof tests.wh_claim
language plpgsql
volatile
as $$
declare
  v_row tests.wh_claim;
begin
  perform set_config('role', 'lic_maint', true);
  for v_row in
    select * from private.claim_webhook_deliveries(
      batch_size => wh_claim.batch_size, lease => wh_claim.lease, at => wh_claim.at
    )
  loop
    insert into tests.wh_leases as l (delivery_id, account_id, lease_id)
    values (v_row.delivery_id, v_row.account_id, v_row.lease_id)
    on conflict (delivery_id) do update set lease_id = excluded.lease_id;
    return next v_row;
  end loop;
  perform set_config('role', 'none', true);
end;
$$;

create function tests.wh_record(
  delivery_id uuid,
  status_code integer,
  at timestamptz default now(),
  retry_after_seconds integer default null,
  error_class text default null,
  response_body text default 'ok',
  lease_id uuid default null
)
returns text
language plpgsql
volatile
as $$
declare
  v_lease tests.wh_leases;
  v_outcome text;
begin
  select l.* into v_lease from tests.wh_leases as l where l.delivery_id = wh_record.delivery_id;
  perform set_config('role', 'lic_maint', true);
  v_outcome := private.record_webhook_attempt(
    delivery_id => wh_record.delivery_id,
    account_id => v_lease.account_id,
    lease_id => coalesce(wh_record.lease_id, v_lease.lease_id),
    started_at => wh_record.at,
    latency_ms => 10,
    status_code => wh_record.status_code,
    error_class => wh_record.error_class,
    response_body => wh_record.response_body,
    retry_after_seconds => wh_record.retry_after_seconds,
    at => wh_record.at
  );
  perform set_config('role', 'none', true);
  return v_outcome;
end;
$$;

-- Claim at each due time and answer status_code until the delivery is
-- finished; the outcomes in order.
create function tests.wh_walk(delivery_id uuid, status_code integer)
returns text[]
language plpgsql
volatile
as $$
declare
  v_outcomes text [] := '{}';
  v_at timestamptz;
begin
  loop
    select d.next_attempt_at into v_at from lic.webhook_deliveries as d where d.id = wh_walk.delivery_id;
    exit when v_at is null or cardinality(v_outcomes) >= 20;
    perform from tests.wh_claim(at => v_at);
    v_outcomes := v_outcomes || tests.wh_record(wh_walk.delivery_id, wh_walk.status_code, at => v_at);
  end loop;
  return v_outcomes;
end;
$$;

-- Read as the superuser.
create function tests.wh(delivery_id uuid)
returns lic.webhook_deliveries
language sql
stable
as $$
  select d from lic.webhook_deliveries as d where d.id = delivery_id;
$$;
create function tests.wh_endpoint(endpoint_id uuid)
returns lic.webhook_endpoints
language sql
stable
as $$
  select e from lic.webhook_endpoints as e where e.id = endpoint_id;
$$;
-- The newest delivery of an event type to an endpoint.
create function tests.wh_of(endpoint_id uuid, event_type text)
returns uuid
language sql
stable
as $$
  select d.id from lic.webhook_deliveries as d
  where d.endpoint_id = wh_of.endpoint_id and d.event_type = wh_of.event_type
  order by d.id desc
  limit 1;
$$;
-- Every pending delivery fails, so a section starts with nothing due.
create function tests.wh_settle()
returns void
language sql
volatile
as $$
  update lic.webhook_deliveries
  set status = 'failed', next_attempt_at = null, lease_id = null, leased_until = null
  where status = 'pending';
$$;

-- ---------------------------------------------------------------------------
-- The surface.
select is(
  (
    select count(*)::integer from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where n.nspname = 'worker' and p.proname like '%webhook%'
  ),
  4,
  'four worker functions: claim, record, release, purge'
);
select is_empty(
  $$
    select p.oid::regprocedure::text
    from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where
      n.nspname = 'worker' and p.proname like '%webhook%'
      and not (
        p.prosecdef and p.proowner = 'lic_maint'::regrole
        and has_function_privilege('lic_worker', p.oid, 'execute')
        and not has_function_privilege('lic_app', p.oid, 'execute')
      )
  $$,
  'the webhook worker functions are definer functions of lic_maint that lic_worker may run and lic_app may not'
);
select is_empty(
  $$
    select p.oid::regprocedure::text
    from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where n.nspname = 'worker' and p.proname like '%webhook%' and 'at' = any(p.proargnames)
  $$,
  'no webhook worker function takes the instant (at) from its caller: they read now()'
);
select ok(
  not has_function_privilege(
    'lic_worker', 'private.claim_webhook_deliveries(integer, interval, timestamptz)', 'execute'
  )
  and not has_schema_privilege('lic_worker', 'private', 'usage'),
  'lic_worker cannot reach the private helpers that take at'
);
select throws_ok(
  $$insert into lic.events (account_id, type, object) values ('01890000-0000-7000-8000-000000000001', 'pong', '{}')$$,
  '23514', null,
  'an event type is still dotted words ...'
);
select lives_ok(
  format($$insert into lic.events (account_id, type, object) values (%L, 'ping', '{}')$$, tests.account_id('B')),
  '... or the single word ping'
);

-- ---------------------------------------------------------------------------
-- Creating endpoints.
select from tests.act_as(tests.secret_key('A'));
select tests.remember(
  'all',
  (
    api.create_webhook_endpoint(
      url => 'https://hooks.example.com/all', secret_ciphertext => '\x0a01', description => 'everything'
    )
  ).id
);
select is(
  (
    select row(e.url, e.description, e.event_types, e.enabled, e.disabled_reason, e.disabled_at, e.secret_rotated_at)
    from api.get_webhook_endpoint(tests.id('all')) as e
  )::text,
  row(
    'https://hooks.example.com/all', 'everything', '{}'::text[], true, null::text, null::timestamptz,
    null::timestamptz
  )::text,
  'an endpoint keeps its url and description, subscribes to every type by default and starts enabled'
);
select tests.remember(
  'cust',
  (
    api.create_webhook_endpoint(
      url => 'https://hooks.example.com/cust', secret_ciphertext => '\x0a02',
      event_types => '{customer.updated,customer.created,customer.created}', description => ''
    )
  ).id
);
select is(
  (select row(e.event_types, e.description) from api.get_webhook_endpoint(tests.id('cust')) as e)::text,
  row('{customer.created,customer.updated}'::text[], null::text)::text,
  'event types are stored sorted without duplicates; an empty description is none'
);
select tests.remember(
  'lic',
  (
    api.create_webhook_endpoint(
      url => 'http://hooks.example.com/lic', secret_ciphertext => '\x0a03', event_types => '{license.created}'
    )
  ).id
);
select tests.remember(
  'off',
  (api.create_webhook_endpoint(url => 'https://hooks.example.com/off', secret_ciphertext => '\x0a04')).id
);
select from api.update_webhook_endpoint(tests.id('off'), enabled => false);
select is(
  tests.event_count('webhook_endpoint.created', jsonb_build_object('id', tests.id('all'))), 1,
  'creating an endpoint emits webhook_endpoint.created'
);
select ok(
  not to_jsonb(api.get_webhook_endpoint(tests.id('all'))) ?| array['secret_ciphertext', 'secret'],
  'the endpoint''s public shape carries no secret'
);
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  $$select api.create_webhook_endpoint(url => 'ftp://example.com/x', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'example.com/x', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'javascript:alert(1)', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'https://user:pass@example.com/x', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'https://user@example.com/x', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'https:///x', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'https://:443/x', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'https://exa mple.com/x', secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => null, secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/' || repeat('a', 2035), secret_ciphertext => '\x01')$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/x', secret_ciphertext => null)$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/x', secret_ciphertext => '\x')$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/x', secret_ciphertext => '\x01',
    event_types => '{nope.happened}')$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/x', secret_ciphertext => '\x01',
    event_types => '{ping}')$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/x', secret_ciphertext => '\x01',
    event_types => '{License.Created}')$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/x', secret_ciphertext => '\x01',
    event_types => '{NULL}')$$,
  $$select api.create_webhook_endpoint(url => 'https://e.com/x', secret_ciphertext => '\x01',
    description => repeat('d', 501))$$
]) as s (statement);
select lives_ok(
  $$select api.create_webhook_endpoint(url => 'https://e.com/' || repeat('a', 2034), secret_ciphertext => '\x01')$$,
  'a url of exactly 2,048 characters is accepted'
);
select lives_ok(
  $$select api.create_webhook_endpoint(url => 'HTTP://Example.com:8080/x?y=1#z', secret_ciphertext => '\x01')$$,
  'the scheme is case-insensitive; a port, query and fragment are accepted'
);
select lives_ok(
  $$select api.create_webhook_endpoint(url => 'http://[2001:db8::1]:8080/x', secret_ciphertext => '\x01')$$,
  'an IPv6 literal host is accepted (the addresses are judged in Python, at registration and at connect time)'
);
-- Those three go again, so the lists below see only the four named ones.
select tests.clear_context();
delete from lic.webhook_endpoints
where url not like 'http%://hooks.example.com/%';

-- ---------------------------------------------------------------------------
-- Reading endpoints.
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.get_webhook_endpoint(%L)', '01890000-0000-7000-8000-000000000009'),
  'LNTFD', null, 'api.get_webhook_endpoint of an unknown id raises LNTFD'
);
select results_eq(
  'select id from api.list_webhook_endpoints()',
  $$select unnest(array[tests.id('off'), tests.id('lic'), tests.id('cust'), tests.id('all')])$$,
  'api.list_webhook_endpoints lists the account''s endpoints newest first'
);
select results_eq(
  'select id from api.list_webhook_endpoints(page_limit => 2)',
  $$select unnest(array[tests.id('off'), tests.id('lic'), tests.id('cust')])$$,
  'a page of 2 fetches 3 rows: the extra one says that more exist'
);
select results_eq(
  format('select id from api.list_webhook_endpoints(starting_after => %L)', tests.id('lic')),
  $$select unnest(array[tests.id('cust'), tests.id('all')])$$,
  'starting_after pages on'
);
select results_eq(
  format('select id from api.list_webhook_endpoints(page_limit => 1, ending_before => %L)', tests.id('cust')),
  $$select unnest(array[tests.id('off'), tests.id('lic')])$$,
  'ending_before pages back, still newest first'
);
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  'select api.list_webhook_endpoints(page_limit => 0)',
  'select api.list_webhook_endpoints(page_limit => 101)',
  format(
    'select api.list_webhook_endpoints(starting_after => %L, ending_before => %L)', tests.id('all'), tests.id('off')
  )
]) as s (statement);

-- B: one endpoint for everything.
select from tests.act_as(tests.secret_key('B'));
select tests.remember(
  'b', (api.create_webhook_endpoint(url => 'https://hooks.example.com/b', secret_ciphertext => '\x0b01')).id
);
select results_eq(
  'select id from api.list_webhook_endpoints()',
  $$select tests.id('b')$$,
  'B lists only its own endpoint'
);
select tests.clear_context();

-- ---------------------------------------------------------------------------
-- Fan-out.
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select tests.remember('customer', (api.create_customer(email => 'fan@example.com')).id);
select tests.clear_context();
select tests.remember(
  'customer.created',
  (
    select e.id from lic.events as e
    where e.type = 'customer.created' and e.object ->> 'id' = tests.id('customer')::text
  )
);
select results_eq(
  $$
    select d.endpoint_id from lic.webhook_deliveries as d
    where d.event_id = tests.id('customer.created') order by d.endpoint_id
  $$,
  $$select unnest(array[tests.id('all'), tests.id('cust')]) as id order by id$$,
  'an event is delivered to each enabled endpoint of its account that subscribes to its type or to all: not '
  'to one subscribed to other types, not to a disabled one, not to another account''s'
);
select is(
  (
    select row(d.status, d.attempts, d.next_attempt_at, d.event_type, d.leased_until, d.lease_id)
    from lic.webhook_deliveries as d
    where d.event_id = tests.id('customer.created') and d.endpoint_id = tests.id('all')
  )::text,
  row('pending', 0, now(), 'customer.created', null::timestamptz, null::uuid)::text,
  'a new delivery is pending and due at once'
);
select is(
  (
    select count(*)::integer from lic.webhook_deliveries as d
    inner join lic.events as e on d.account_id = e.account_id and d.event_id = e.id
    where e.type in ('webhook_endpoint.created', 'webhook_endpoint.updated', 'webhook_endpoint.deleted')
  ),
  0,
  'an endpoint''s creation, updates and deletion are delivered to no endpoint'
);
insert into lic.events (account_id, type, object) values (tests.account_id('A'), 'ping', '{}');
select is(
  (
    select count(*)::integer from lic.webhook_deliveries as d
    inner join lic.events as e on d.account_id = e.account_id and d.event_id = e.id
    where e.type = 'ping'
  ),
  0,
  'a ping event is not fanned out'
);
-- An event emitted by a worker sweep, as lic_maint with no tenant context.
select from tests.fx_license('A', 'lapsed', 'monthly', 'active', now() - interval '1 hour');
select from tests.fx_license('B', 'b lapsed', 'monthly', 'active', now() - interval '1 hour');
set local role lic_worker;
select is(worker.expire_licenses(batch_size => 100), 2, 'the expiry sweep expires two licenses, A''s and B''s');
select tests.clear_context();
select results_eq(
  $$
    select d.endpoint_id from lic.webhook_deliveries as d
    where d.event_type = 'license.expired' order by d.endpoint_id
  $$,
  $$select unnest(array[tests.id('all'), tests.id('b')]) as id order by id$$,
  'an event a worker sweep emits (as lic_maint) is fanned out too, to each account''s own endpoints'
);

-- ---------------------------------------------------------------------------
-- Claiming.
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Fan');
select tests.clear_context();
select tests.remember('d all', tests.wh_of(tests.id('all'), 'customer.updated'));
select tests.remember('d cust', tests.wh_of(tests.id('cust'), 'customer.updated'));
update lic.webhook_deliveries set next_attempt_at = now() - interval '1 minute'
where id = tests.id('d cust');

set local role lic_worker;
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  'select worker.claim_webhook_deliveries(batch_size => 0)',
  'select worker.claim_webhook_deliveries(batch_size => null)',
  $$select worker.claim_webhook_deliveries(lease => '0 seconds')$$,
  $$select worker.claim_webhook_deliveries(lease => '-1 second')$$
]) as s (statement);
select tests.clear_context();

create temporary table claim_1 as select * from tests.wh_claim(batch_size => 1);
select results_eq(
  'select delivery_id from claim_1',
  $$select tests.id('d cust')$$,
  'a claim takes the delivery due first, up to batch_size'
);
select is(
  (select row(c.account_id, c.endpoint_id, c.url, c.secrets, c.event_type, c.attempt) from claim_1 as c)::text,
  row(
    tests.account_id('A'), tests.id('cust'), 'https://hooks.example.com/cust', array['\x0a02'::bytea],
    'customer.updated', 1
  )::text,
  'a claim returns the account, endpoint, url, the secret ciphertexts, the event type and the attempt to make'
);
select is(
  (select c.payload::jsonb - 'data' from claim_1 as c),
  (
    select
      jsonb_build_object(
        'id', e.id, 'object', 'event', 'type', 'customer.updated', 'created', floor(extract(epoch from e.created_at)),
        'account', tests.account_id('A')
      )
    from lic.events as e inner join claim_1 as c on e.id = c.event_id
  ),
  'the payload is the event''s envelope: id, object, type, created (unix seconds), account'
);
select is(
  (select c.payload::jsonb -> 'data' from claim_1 as c),
  (
    select jsonb_build_object('object', e.object, 'previous_attributes', jsonb_build_object('name', null))
    from lic.events as e inner join claim_1 as c on e.id = c.event_id
  ),
  '... and data: the object and its previous_attributes'
);
select is(
  (
    select row(d.lease_id, d.leased_until, d.next_attempt_at) from lic.webhook_deliveries as d
    where d.id = tests.id('d cust')
  )::text,
  (select row(c.lease_id, now() + interval '60 seconds', now() + interval '60 seconds') from claim_1 as c)::text,
  'the claim leases the delivery until now() + lease, which is also when it is due again'
);
select results_eq(
  'select delivery_id from tests.wh_claim()',
  $$select tests.id('d all')$$,
  'a second claim skips the leased delivery and takes the next'
);
select is_empty('select * from tests.wh_claim()', 'a third claim finds nothing: both are leased');
select is_empty(
  $$select * from tests.wh_claim(at => now() + interval '59 seconds')$$,
  'a leased delivery is not claimed again before its lease passes'
);
create temporary table claim_2 as select * from tests.wh_claim(at => now() + interval '61 seconds');
select results_eq(
  'select delivery_id from claim_2 order by delivery_id',
  $$select unnest(array[tests.id('d all'), tests.id('d cust')]) as id order by id$$,
  'once the lease passed, the delivery is claimed again (a worker that died loses nothing)'
);
select ok(
  (
    select bool_and(c2.lease_id <> c1.lease_id and c2.attempt = 1 and c2.payload = c1.payload)
    from claim_2 as c2 inner join claim_1 as c1 on c2.delivery_id = c1.delivery_id
  ),
  'the new claim has a new lease, the same attempt number and byte for byte the same payload'
);
select is(
  (
    select d.leased_until from lic.webhook_deliveries as d
    where d.id = tests.id('d all')
  ),
  now() + interval '61 seconds' + interval '60 seconds',
  'the lease runs from the claim''s at'
);
create temporary table claim_long as
select * from tests.wh_claim(at => now() + interval '1 day', lease => '5 minutes');
select is(
  (
    select d.leased_until from lic.webhook_deliveries as d
    where d.id = tests.id('d all')
  ),
  now() + interval '1 day 5 minutes',
  'the lease lasts as long as asked'
);
-- A pending delivery of a disabled endpoint is not claimed.
update lic.webhook_endpoints set enabled = false, disabled_at = now()
where id = tests.id('cust');
select is_empty(
  $$select * from tests.wh_claim(at => now() + interval '2 days') where delivery_id = tests.id('d cust')$$,
  'a delivery of a disabled endpoint is not claimed'
);
update lic.webhook_endpoints set enabled = true, disabled_at = null
where id = tests.id('cust');
select ok(
  (
    select p.prosrc ~* 'for update of x skip locked'
    from pg_catalog.pg_proc as p
    where p.oid = 'private.claim_webhook_deliveries(integer, interval, timestamptz)'::regprocedure
  ),
  'the claim locks with FOR UPDATE SKIP LOCKED, so concurrent workers never take the same delivery'
);
set local enable_seqscan = off;
select alike(
  (
    select string_agg(line, e'\n') from tests.explain_lines(
      format(
        $q$
          select x.id from lic.webhook_deliveries as x
          where x.account_id = %L and x.status = 'pending' and x.next_attempt_at <= now()
          order by x.next_attempt_at limit 100 for update of x skip locked
        $q$,
        tests.account_id('A')
      )
    ) as line
  ),
  '%webhook_deliveries__account_id_next_attempt_at_idx%',
  'an account''s share of a claim is read from webhook_deliveries__account_id_next_attempt_at_idx'
);
select alike(
  (
    select string_agg(line, e'\n') from tests.explain_lines(
      format(
        $q$
          select p.account_id from lic.webhook_deliveries as p
          where p.status = 'pending' and p.account_id > %L order by p.account_id limit 1
        $q$,
        tests.account_id('A')
      )
    ) as line
  ),
  '%webhook_deliveries__account_id_next_attempt_at_idx%',
  '... and the next account with pending deliveries is one probe of that index'
);
set local enable_seqscan = on;

-- ---------------------------------------------------------------------------
-- Fair across tenants: A has a backlog of 1,000 deliveries due for an hour, B
-- five that came due a minute ago.
select tests.wh_settle();
select from (
  select
    private.emit_event(
      tests.account_id('A'), 'license.suspended', jsonb_build_object('object', 'license', 'id', gen_random_uuid())
    )
  from generate_series(1, 1000)
) as e;
update lic.webhook_deliveries set next_attempt_at = now() - interval '1 hour'
where event_type = 'license.suspended' and status = 'pending';
select from (
  select
    private.emit_event(
      tests.account_id('B'), 'license.suspended', jsonb_build_object('object', 'license', 'id', gen_random_uuid())
    )
  from generate_series(1, 5)
) as e;
update lic.webhook_deliveries set next_attempt_at = now() - interval '1 minute'
where account_id = tests.account_id('B') and event_type = 'license.suspended' and status = 'pending';
select is(
  (
    select count(*)::integer from lic.webhook_deliveries
    where event_type = 'license.suspended' and status = 'pending'
  ),
  1005,
  'A has 1,000 deliveries due, B 5'
);
set local role lic_worker;
create temporary table fair_1 as select * from worker.claim_webhook_deliveries(batch_size => 64);
select tests.clear_context();
select is(
  (
    select
      row(count(*) filter (where c.account_id = tests.account_id('A')), count(*) filter (
        where c.account_id = tests.account_id('B')
      ))
    from fair_1 as c
  )::text,
  '(32,5)',
  'a claim of 64 takes all of B''s 5, though A''s 1,000 came due first: each account gets half of the claim'
);
set local role lic_worker;
create temporary table fair_2 as select * from worker.claim_webhook_deliveries(batch_size => 64);
select tests.clear_context();
select is(
  (
    select count(*)::integer from fair_2 as c
    where c.account_id = tests.account_id('A')
  ),
  64,
  'the next claim, with only A''s due, is all A''s: a backlog takes what the others leave'
);
select is(
  (select count(*)::integer from tests.wh_claim(batch_size => 1)),
  1,
  'a claim of one takes one (from the account waiting longest)'
);
delete from lic.webhook_deliveries
where event_type = 'license.suspended';

-- ---------------------------------------------------------------------------
-- Recording attempts.
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Record');
select tests.clear_context();
select tests.remember('r all', tests.wh_of(tests.id('all'), 'customer.updated'));
select tests.remember('r cust', tests.wh_of(tests.id('cust'), 'customer.updated'));
create temporary table claim_3 as select * from tests.wh_claim();
grant select on claim_3 to lic_worker;
select is(
  tests.wh_record(tests.id('r all'), 200, lease_id => '01890000-0000-7000-8000-00000000000a'), 'stale',
  'an attempt recorded with another lease is stale ...'
);
select is(
  (
    select row(d.attempts, d.status, d.lease_id) from lic.webhook_deliveries as d
    where d.id = tests.id('r all')
  )::text,
  (
    select row(0, 'pending', c.lease_id) from claim_3 as c
    where c.delivery_id = tests.id('r all')
  )::text,
  '... and changes nothing'
);
select is(
  (
    select count(*)::integer from lic.webhook_attempts as a
    where a.delivery_id = tests.id('r all')
  ), 0,
  '... not even the attempt log'
);
set local role lic_worker;
select is(
  worker.record_webhook_attempt(
    tests.id('r all'),
    tests.account_id('B'),
    (
      select c.lease_id from claim_3 as c
      where c.delivery_id = tests.id('r all')
    ),
    now(), 5, 200, null, 'ok'
  ),
  'stale',
  'an attempt recorded under another account is stale'
);
select tests.clear_context();

select is(
  tests.wh_record(tests.id('r all'), 204, response_body => repeat('x', 2000)), 'succeeded', 'a 2xx succeeds'
);
select is(
  (
    select
      row(
        d.status,
        d.attempts,
        d.succeeded_at,
        d.next_attempt_at,
        d.lease_id,
        d.leased_until,
        d.last_attempt_at,
        d.last_status_code
      )
    from lic.webhook_deliveries as d
    where d.id = tests.id('r all')
  )::text,
  row('succeeded', 1, now(), null::timestamptz, null::uuid, null::timestamptz, now(), 204)::text,
  'the delivery is succeeded, its lease cleared, with the attempt''s time and status'
);
select is(
  (
    select row(a.attempt, a.started_at, a.latency_ms, a.status_code, a.error_class, length(a.response_body))
    from lic.webhook_attempts as a
    where a.delivery_id = tests.id('r all')
  )::text,
  row(1, now(), 10, 204, null::text, 1024)::text,
  'the attempt is logged with the first 1,024 characters of the response'
);
select is(
  tests.wh_record(tests.id('r all'), 200), 'stale', 'recording again with the spent lease is stale'
);

select is(tests.wh_record(tests.id('r cust'), 500, response_body => 'boom'), 'retrying', 'a 500 is retried');
select ok(
  (
    select
      d.status = 'pending' and d.attempts = 1 and d.lease_id is null
      and d.next_attempt_at between now() + interval '4 seconds' and now() + interval '6 seconds'
    from lic.webhook_deliveries as d
    where d.id = tests.id('r cust')
  ),
  'the first retry is due 5 s later, ±20 %'
);
select is(
  (tests.wh_endpoint(tests.id('cust'))).failing_since, now(),
  'a failure starts the endpoint''s failure clock at the attempt'
);
select from tests.wh_claim(at => now() + interval '10 seconds');
select is(
  tests.wh_record(
    tests.id('r cust'), null, at => now() + interval '10 seconds', error_class => 'timeout', response_body => null
  ),
  'retrying',
  'no response (a timeout) is retried'
);
select is(
  (
    select row(a.status_code, a.error_class, a.response_body)
    from lic.webhook_attempts as a
    where a.delivery_id = tests.id('r cust') and a.attempt = 2
  )::text,
  row(null::integer, 'timeout', null::text)::text,
  'the attempt without a response is logged with its error class'
);
select is(
  (tests.wh_endpoint(tests.id('cust'))).failing_since, now(),
  'the failure clock keeps its start'
);
select ok(
  (
    select
      d.next_attempt_at between now() + interval '10 seconds' + interval '4 minutes'
      and now() + interval '10 seconds' + interval '6 minutes'
    from lic.webhook_deliveries as d
    where d.id = tests.id('r cust')
  ),
  'the second retry is due 5 min later, ±20 %'
);
select from tests.wh_claim(at => now() + interval '1 hour');
select is(
  tests.wh_record(tests.id('r cust'), 503, at => now() + interval '1 hour', retry_after_seconds => 7200),
  'retrying', 'a 503 with Retry-After is retried'
);
select is(
  (tests.wh(tests.id('r cust'))).next_attempt_at, now() + interval '3 hours',
  'Retry-After is honoured when it asks for longer than the schedule (30 min)'
);
select from tests.wh_claim(at => now() + interval '3 hours');
select is(
  tests.wh_record(tests.id('r cust'), 429, at => now() + interval '3 hours', retry_after_seconds => 10000000),
  'retrying', 'a 429 with a huge Retry-After is retried'
);
select is(
  (tests.wh(tests.id('r cust'))).next_attempt_at, now() + interval '27 hours',
  'Retry-After is capped at 24 hours'
);
select from tests.wh_claim(at => now() + interval '27 hours');
select is(
  tests.wh_record(tests.id('r cust'), 500, at => now() + interval '27 hours', retry_after_seconds => 60),
  'retrying', 'a 500 with a short Retry-After is retried'
);
select ok(
  (
    select
      d.next_attempt_at between now() + interval '27 hours' + interval '4 hours'
      and now() + interval '27 hours' + interval '6 hours'
    from lic.webhook_deliveries as d
    where d.id = tests.id('r cust')
  ),
  'a Retry-After shorter than the schedule does not bring the retry forward (5 h ±20 % after attempt 5)'
);
select from tests.wh_claim(at => now() + interval '33 hours');
select is(
  tests.wh_record(tests.id('r cust'), 200, at => now() + interval '33 hours'), 'succeeded',
  'a success after failures succeeds'
);
select is(
  (tests.wh_endpoint(tests.id('cust'))).failing_since, null,
  'a success stops the endpoint''s failure clock'
);
select is(
  (
    select array_agg(a.status_code order by a.attempt) from lic.webhook_attempts as a
    where a.delivery_id = tests.id('r cust')
  ),
  array[500, null, 503, 429, 500, 200],
  'every attempt is logged in order'
);

-- The schedule: Standard Webhooks' stretched to about three days, ±20 %.
select is(
  array(select private.webhook_retry_delay(n) from generate_series(0, 10) as n),
  array[
    null, '5 seconds', '5 minutes', '30 minutes', '2 hours', '5 hours', '10 hours', '10 hours', '24 hours',
    '24 hours', null
  ]::interval[],
  'the delays after attempts 1-9 are 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 24 h, 24 h; none after the 10th'
);
select is_empty(
  $$
    select s.n
    from (
      select g.n, min(g.delay) as lo, max(g.delay) as hi
      from (
        select n.n, private.webhook_next_attempt_at(n.n, null, '2030-01-01') - '2030-01-01'::timestamptz as delay
        from generate_series(1, 9) as n (n)
        cross join generate_series(1, 400) as i (i)
      ) as g
      group by g.n
    ) as s
    where
      s.lo < private.webhook_retry_delay(s.n) * 0.8
      or s.hi > private.webhook_retry_delay(s.n) * 1.2
      or s.hi - s.lo < private.webhook_retry_delay(s.n) * 0.3
  $$,
  'each delay is jittered within ±20 % (and the jitter spreads over that range)'
);
select is(
  private.webhook_next_attempt_at(10, 60, '2030-01-01'), null,
  'after the 10th attempt nothing is scheduled, Retry-After or not'
);

-- A delivery that always fails: ten attempts over about three days, then failed.
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Walk');
select tests.clear_context();
select tests.remember('walk', tests.wh_of(tests.id('cust'), 'customer.updated'));
select is(
  tests.wh_walk(tests.id('walk'), 500),
  array[
    'retrying', 'retrying', 'retrying', 'retrying', 'retrying', 'retrying', 'retrying', 'retrying', 'retrying', 'failed'
  ],
  'a delivery that always gets a 500 is retried 9 times, then fails when the schedule is spent'
);
select is(
  (
    select row(d.status, d.attempts, d.next_attempt_at, d.lease_id) from lic.webhook_deliveries as d
    where d.id = tests.id('walk')
  )::text,
  row('failed', 10, null::timestamptz, null::uuid)::text,
  'the spent delivery is failed after 10 attempts, with nothing scheduled'
);
select is_empty(
  $$
    select a.attempt
    from lic.webhook_attempts as a
    inner join lic.webhook_attempts as b on a.delivery_id = b.delivery_id and b.attempt = a.attempt + 1
    where
      a.delivery_id = tests.id('walk')
      and (b.started_at - a.started_at) not between private.webhook_retry_delay(a.attempt) * 0.8
      and private.webhook_retry_delay(a.attempt) * 1.2
  $$,
  'each attempt came after the scheduled delay, ±20 %'
);
select ok(
  (
    select max(a.started_at) - min(a.started_at) between interval '60 hours' and interval '91 hours'
    from lic.webhook_attempts as a
    where a.delivery_id = tests.id('walk')
  ),
  'the ten attempts span about three days'
);
select is(
  (tests.wh_endpoint(tests.id('cust'))).enabled, true,
  'three days of failure do not disable the endpoint'
);

-- 410 Gone disables the endpoint.
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select tests.remember(
  'gone',
  (api.create_webhook_endpoint(url => 'https://hooks.example.com/gone', secret_ciphertext => '\x0a05')).id
);
select from api.update_customer(tests.id('customer'), name => 'Gone');
select tests.clear_context();
select tests.remember('gone 1', tests.wh_of(tests.id('gone'), 'customer.updated'));
select from tests.wh_claim();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Gone again');
select tests.clear_context();
select tests.remember('gone 2', tests.wh_of(tests.id('gone'), 'customer.updated'));
select is(tests.wh_record(tests.id('gone 1'), 410), 'endpoint_disabled', 'a 410 disables the endpoint');
select is(
  (
    select row(e.enabled, e.disabled_reason, e.disabled_at) from lic.webhook_endpoints as e
    where e.id = tests.id('gone')
  )::text,
  row(false, 'the endpoint answered 410 Gone', now())::text,
  'the endpoint is disabled with the reason'
);
select is(
  array[(tests.wh(tests.id('gone 1'))).status, (tests.wh(tests.id('gone 2'))).status],
  array['failed', 'failed'],
  'the delivery fails, and so does the endpoint''s other pending delivery'
);
select is(
  (
    select e.previous_attributes from lic.events as e
    where e.type = 'webhook_endpoint.disabled' and e.object ->> 'id' = tests.id('gone')::text
  ),
  jsonb_build_object('enabled', true, 'disabled_at', null, 'disabled_reason', null),
  'webhook_endpoint.disabled is emitted, with what changed'
);
select results_eq(
  $$
    select d.endpoint_id from lic.webhook_deliveries as d
    inner join lic.events as e on d.account_id = e.account_id and d.event_id = e.id
    where e.type = 'webhook_endpoint.disabled' and e.object ->> 'id' = tests.id('gone')::text
  $$,
  $$select tests.id('all')$$,
  'webhook_endpoint.disabled (emitted by the worker) is delivered to the account''s other endpoints'
);

-- Five days without a success disable the endpoint.
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Five days');
select tests.clear_context();
select tests.remember('five all', tests.wh_of(tests.id('all'), 'customer.updated'));
select tests.remember('five cust', tests.wh_of(tests.id('cust'), 'customer.updated'));
update lic.webhook_endpoints set failing_since = now() - interval '4 days 23 hours'
where id = tests.id('all');
update lic.webhook_endpoints set failing_since = now() - interval '5 days'
where id = tests.id('cust');
select from tests.wh_claim();
select is(
  tests.wh_record(tests.id('five all'), 500), 'retrying', 'an endpoint failing for less than 5 days is retried'
);
select is(
  tests.wh_record(tests.id('five cust'), 500), 'endpoint_disabled',
  'an endpoint failing for 5 days is disabled'
);
select is(
  (
    select row(e.enabled, e.disabled_reason) from lic.webhook_endpoints as e
    where e.id = tests.id('cust')
  )::text,
  row(false, 'every attempt failed for 5 days')::text,
  '... with the reason'
);
select is(
  (tests.wh(tests.id('five cust'))).status, 'failed', '... and the delivery fails'
);
select is(
  tests.event_count('webhook_endpoint.disabled', jsonb_build_object('id', tests.id('cust'))), 1,
  '... and webhook_endpoint.disabled is emitted'
);
update lic.webhook_endpoints set failing_since = now() - interval '6 days'
where id = tests.id('all');
select from tests.wh_claim(at => now() + interval '1 hour');
select is(
  tests.wh_record(tests.id('five all'), 200, at => now() + interval '1 hour'), 'succeeded',
  'a success after 5 days of failure still succeeds'
);
select is(
  row((tests.wh_endpoint(tests.id('all'))).enabled, (tests.wh_endpoint(tests.id('all'))).failing_since)::text,
  row(true, null::timestamptz)::text,
  '... and stops the failure clock'
);

-- Leases and the endpoint changing under an attempt in flight.
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Lease');
select tests.clear_context();
select tests.remember('lease', tests.wh_of(tests.id('all'), 'customer.updated'));
create temporary table claim_old as select * from tests.wh_claim();
select from tests.wh_claim(at => now() + interval '2 minutes');
select is(
  tests.wh_record(
    tests.id('lease'), 200, at => now() + interval '3 minutes',
    lease_id => (
      select c.lease_id from claim_old as c
      where c.delivery_id = tests.id('lease')
    )
  ),
  'stale',
  'a worker whose lease passed and was claimed again by another records nothing'
);
select is(
  (
    select row(d.attempts, d.status) from lic.webhook_deliveries as d
    where d.id = tests.id('lease')
  )::text,
  row(0, 'pending')::text,
  '... the delivery is untouched'
);
select is(
  tests.wh_record(tests.id('lease'), 200, at => now() + interval '10 minutes'), 'succeeded',
  'a lease that passed but was not claimed again still records its attempt'
);

select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select tests.remember(
  'flight',
  (api.create_webhook_endpoint(url => 'https://hooks.example.com/flight', secret_ciphertext => '\x0a06')).id
);
select from api.update_customer(tests.id('customer'), name => 'Flight 1');
select tests.clear_context();
select tests.remember('flight 1', tests.wh_of(tests.id('flight'), 'customer.updated'));
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Flight 2');
select tests.clear_context();
select tests.remember('flight 2', tests.wh_of(tests.id('flight'), 'customer.updated'));
select from tests.wh_claim();
select from tests.act_as(tests.secret_key('A'));
select from api.update_webhook_endpoint(tests.id('flight'), enabled => false);
select tests.clear_context();
select is(
  (
    select row(d.status, d.next_attempt_at is null, d.lease_id is not null) from lic.webhook_deliveries as d
    where d.id = tests.id('flight 1')
  )::text,
  row('failed', true, true)::text,
  'disabling an endpoint fails its pending deliveries; one in flight keeps its lease'
);
select is(
  tests.wh_record(tests.id('flight 1'), 500), 'failed',
  'a failure in flight to an endpoint disabled meanwhile is not retried'
);
select is(
  tests.wh_record(tests.id('flight 2'), 200), 'succeeded',
  'a success in flight to an endpoint disabled meanwhile still succeeds'
);
select is(
  (
    select array_agg(a.attempt) from lic.webhook_attempts as a
    where a.delivery_id in (tests.id('flight 1'), tests.id('flight 2'))
  ),
  array[1, 1],
  'both attempts are logged'
);
select from tests.act_as(tests.secret_key('A'));
select from api.update_webhook_endpoint(tests.id('flight'), enabled => true);
select from api.update_customer(tests.id('customer'), name => 'Flight 3');
select tests.clear_context();
select tests.remember('flight 3', tests.wh_of(tests.id('flight'), 'customer.updated'));
select from tests.wh_claim();
select from tests.act_as(tests.secret_key('A'));
select from api.delete_webhook_endpoint(tests.id('flight'));
select tests.clear_context();
select is(
  tests.wh_record(tests.id('flight 3'), 200), 'stale',
  'an attempt in flight to an endpoint deleted meanwhile is stale'
);

-- ---------------------------------------------------------------------------
-- Release (graceful shutdown).
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Release');
select tests.clear_context();
select tests.remember('rel all', tests.wh_of(tests.id('all'), 'customer.updated'));
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Kept');
select tests.clear_context();
select tests.remember('kept', tests.wh_of(tests.id('all'), 'customer.updated'));
create temporary table claim_rel as select * from tests.wh_claim();
grant select on claim_rel to lic_worker;
select is((select count(*)::integer from claim_rel), 2, 'two deliveries claimed');
set local role lic_worker;
select is(
  worker.release_webhook_deliveries(
    array(
      select c.lease_id from claim_rel as c
      where c.delivery_id = tests.id('rel all')
    )
  ),
  1,
  'release gives back the leases it is handed'
);
select is(
  worker.release_webhook_deliveries(array['01890000-0000-7000-8000-00000000000b'::uuid]), 0,
  'an unknown lease releases nothing'
);
select is(worker.release_webhook_deliveries('{}'), 0, 'no lease releases nothing');
select tests.clear_context();
select is(
  (
    select row(d.status, d.lease_id, d.leased_until, d.next_attempt_at, d.attempts) from lic.webhook_deliveries as d
    where d.id = tests.id('rel all')
  )::text,
  row('pending', null::uuid, null::timestamptz, now(), 0)::text,
  'a released delivery is pending, due now, with no attempt counted'
);
select ok(
  (
    select d.leased_until > now() from lic.webhook_deliveries as d
    where d.id = tests.id('kept')
  ),
  'a delivery whose lease was not handed keeps it'
);
select results_eq(
  'select delivery_id from tests.wh_claim()',
  $$select tests.id('rel all')$$,
  'a released delivery is claimed again at once'
);

-- ---------------------------------------------------------------------------
-- Retention.
select tests.wh_settle();
create temporary table purge_before as select
  d.id,
  d.status
from lic.webhook_deliveries as d;
update lic.webhook_deliveries set created_at = now() - interval '31 days'
where id in (tests.id('r all'), tests.id('r cust'), tests.id('walk'));
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Old pending');
select tests.clear_context();
select tests.remember('old pending', tests.wh_of(tests.id('all'), 'customer.updated'));
update lic.webhook_deliveries set created_at = now() - interval '40 days'
where id = tests.id('old pending');
set local role lic_worker;
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  'select worker.purge_webhook_deliveries(retain_days => -1)',
  'select worker.purge_webhook_deliveries(retain_days => null)',
  'select worker.purge_webhook_deliveries(batch_size => 0)'
]) as s (statement);
select is(worker.purge_webhook_deliveries(batch_size => 2), 2, 'a purge deletes up to batch_size deliveries');
select is(worker.purge_webhook_deliveries(), 1, 'the next batch deletes the rest');
select is(worker.purge_webhook_deliveries(), 0, 'then nothing is left to purge');
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.webhook_deliveries
    where id in (tests.id('r all'), tests.id('r cust'), tests.id('walk'))
  ),
  0,
  'finished deliveries older than 30 days are purged'
);
select is(
  (
    select count(*)::integer from lic.webhook_attempts
    where delivery_id in (tests.id('r all'), tests.id('r cust'), tests.id('walk'))
  ),
  0,
  '... with their attempts'
);
select is(
  (tests.wh(tests.id('old pending'))).status, 'pending', 'a pending delivery is never purged, however old'
);
select is(
  (
    select count(*)::integer from purge_before as p
    where
      p.id not in (tests.id('r all'), tests.id('r cust'), tests.id('walk'))
      and not exists (
        select from lic.webhook_deliveries as d
        where d.id = p.id
      )
  ),
  0,
  'recent finished deliveries stay'
);

-- ---------------------------------------------------------------------------
-- The delivery log.
select from tests.act_as(tests.secret_key('A'));
select tests.remember(
  'log', (api.create_webhook_endpoint(url => 'https://hooks.example.com/log', secret_ciphertext => '\x0a07')).id
);
select tests.clear_context();
select tests.wh_settle();
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Log 1');
select tests.clear_context();
select tests.remember('log 1', tests.wh_of(tests.id('log'), 'customer.updated'));
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(tests.id('customer'), name => 'Log 2');
select tests.clear_context();
select tests.remember('log 2', tests.wh_of(tests.id('log'), 'customer.updated'));
select from tests.act_as(tests.secret_key('A'));
select from api.create_customer(email => 'log3@example.com');
select tests.clear_context();
select tests.remember('log 3', tests.wh_of(tests.id('log'), 'customer.created'));
update lic.webhook_deliveries set attempts = 9
where id = tests.id('log 3');
select from tests.wh_claim();
select is(
  array[
    tests.wh_record(tests.id('log 1'), 200),
    tests.wh_record(tests.id('log 2'), 500),
    tests.wh_record(tests.id('log 3'), 500)
  ],
  array['succeeded', 'retrying', 'failed'],
  'three deliveries to the log endpoint: succeeded, retrying, failed (its 10th attempt)'
);
select tests.remember('log 1 event', (tests.wh(tests.id('log 1'))).event_id);

select from tests.act_as(tests.secret_key('A'));
select is(
  (select d from api.list_webhook_deliveries(endpoint_id => tests.id('log'), status => 'succeeded') as d)::text,
  row(
    tests.id('log 1'), tests.id('log'), tests.id('log 1 event'), 'customer.updated', 'succeeded', 1,
    null::timestamptz, now(), 200, now(), now()
  )::api.webhook_delivery::text,
  'a delivery shows its endpoint, event, status, attempts, last attempt and success'
);
select results_eq(
  format('select id from api.list_webhook_deliveries(endpoint_id => %L, status => %L)', tests.id('log'), 'pending'),
  $$select tests.id('log 2')$$,
  'api.list_webhook_deliveries filters by endpoint and status'
);
select results_eq(
  format(
    'select id from api.list_webhook_deliveries(endpoint_id => %L, event_type => %L)',
    tests.id('log'),
    'customer.created'
  ),
  $$select tests.id('log 3')$$,
  '... and by event type'
);
select results_eq(
  format(
    'select id from api.list_webhook_deliveries(endpoint_id => %L, event_type => %L, page_limit => 1)',
    tests.id('log'), 'customer.updated'
  ),
  $$select unnest(array[tests.id('log 2'), tests.id('log 1')])$$,
  'deliveries are listed newest first, a page of 1 fetching 2 rows'
);
select results_eq(
  format(
    'select id from api.list_webhook_deliveries(endpoint_id => %L, starting_after => %L, event_type => %L)',
    tests.id('log'), tests.id('log 3'), 'customer.updated'
  ),
  $$select unnest(array[tests.id('log 2'), tests.id('log 1')])$$,
  'starting_after pages on'
);
select results_eq(
  format(
    'select id from api.list_webhook_deliveries(endpoint_id => %L, ending_before => %L, page_limit => 1)',
    tests.id('log'), tests.id('log 1')
  ),
  $$select unnest(array[tests.id('log 3'), tests.id('log 2')])$$,
  'ending_before pages back, newest first'
);
select ok(
  (
    select bool_and(d.endpoint_id in (tests.id('all'), tests.id('log')) and d.status = 'succeeded')
    from api.list_webhook_deliveries(status => 'succeeded', page_limit => 100) as d
  ),
  'without an endpoint every endpoint''s deliveries are listed'
);
select throws_ok(s.statement, 'LINVL', null, format('%s raises LINVL', regexp_replace(s.statement, '\s+', ' ', 'g')))
from unnest(array[
  $$select api.list_webhook_deliveries(status => 'done')$$,
  'select api.list_webhook_deliveries(page_limit => 0)'
]) as s (statement);
select is(
  api.get_webhook_delivery(tests.id('log 2')) - 'attempts',
  (
    select to_jsonb(d) - 'attempts'
    from api.list_webhook_deliveries(endpoint_id => tests.id('log'), status => 'pending') as d
  ),
  'api.get_webhook_delivery answers the delivery''s fields ...'
);
select is(
  api.get_webhook_delivery(tests.id('log 2')) -> 'attempts',
  jsonb_build_array(jsonb_build_object(
    'attempt', 1, 'started_at', now(), 'latency_ms', 10, 'status_code', 500, 'error_class', null, 'response_body', 'ok'
  )),
  '... and its attempts'
);
select is(
  jsonb_array_length(api.get_webhook_delivery(tests.id('log 3')) -> 'attempts'), 1,
  'only attempts that were logged are listed (the 9 earlier attempts of log 3 were made up)'
);
select throws_ok(
  format('select api.get_webhook_delivery(%L)', '01890000-0000-7000-8000-00000000000c'),
  'LNTFD', null, 'api.get_webhook_delivery of an unknown id raises LNTFD'
);

-- ---------------------------------------------------------------------------
-- Retry.
select is(
  (select row(d.status, d.next_attempt_at, d.attempts) from api.retry_webhook_delivery(tests.id('log 3')) as d)::text,
  row('pending', now(), 10)::text,
  'retrying a failed delivery makes it pending, due now; its attempts go on counting'
);
select tests.clear_context();
select is(
  (
    select c.attempt from tests.wh_claim() as c
    where c.delivery_id = tests.id('log 3')
  ),
  11,
  'the retried delivery is claimed for its 11th attempt'
);
select is(tests.wh_record(tests.id('log 3'), 200), 'succeeded', '... which can succeed');
select from tests.act_as(tests.secret_key('A'));
select is(
  (select row(d.status, d.succeeded_at) from api.retry_webhook_delivery(tests.id('log 1')) as d)::text,
  row('pending', null::timestamptz)::text,
  'a succeeded delivery can be sent again too'
);
select tests.clear_context();
select from tests.wh_claim();
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.retry_webhook_delivery(%L)', tests.id('log 1')),
  'LSTAT', null, 'a delivery being sent cannot be retried'
);
select throws_ok(
  format('select api.retry_webhook_delivery(%L)', tests.id('gone 1')),
  'LSTAT', null, 'a delivery to a disabled endpoint cannot be retried'
);
select throws_ok(
  format('select api.retry_webhook_delivery(%L)', '01890000-0000-7000-8000-00000000000c'),
  'LNTFD', null, 'api.retry_webhook_delivery of an unknown id raises LNTFD'
);

-- ---------------------------------------------------------------------------
-- Replay.
select tests.remember(
  'rp', (api.create_webhook_endpoint(url => 'https://hooks.example.com/rp', secret_ciphertext => '\x0a08')).id
);
select from api.update_customer(tests.id('customer'), name => 'Replay 1');
select from api.update_customer(tests.id('customer'), name => 'Replay 2');
select from api.update_customer(tests.id('customer'), name => 'Replay 3');
select from api.update_customer(tests.id('customer'), name => 'Replay 4');
select tests.clear_context();
delete from lic.webhook_deliveries
where endpoint_id = tests.id('rp') and event_type <> 'customer.updated';
create temporary table rp as
select
  d.id,
  row_number() over (order by d.id)::integer as n
from lic.webhook_deliveries as d
where d.endpoint_id = tests.id('rp');
grant select on rp to lic_app;
update lic.webhook_deliveries as d
set
  status = case rp.n when 3 then 'succeeded' else 'failed' end,
  succeeded_at = case when rp.n = 3 then now() end,
  next_attempt_at = null,
  created_at = case when rp.n = 1 then now() - interval '2 days' else d.created_at end
from rp
where d.id = rp.id and rp.n < 4;
select from tests.act_as(tests.secret_key('A'));
select is(
  api.replay_webhook_endpoint(tests.id('rp'), since => now() - interval '1 day'),
  '{"object": "webhook_replay", "replayed": 1}'::jsonb,
  'replay sends again the failed deliveries created since the given time'
);
select results_eq(
  format('select id from api.list_webhook_deliveries(endpoint_id => %L, status => %L)', tests.id('rp'), 'pending'),
  'select id from rp where n in (2, 4) order by id desc',
  '... which are pending again (the one before since is not)'
);
select is(
  api.replay_webhook_endpoint(tests.id('rp'), since => now() - interval '3 days', status => 'succeeded'),
  '{"object": "webhook_replay", "replayed": 1}'::jsonb,
  'status => succeeded replays the succeeded ones'
);
select is(
  api.replay_webhook_endpoint(tests.id('rp'), since => now() - interval '3 days', status => 'all'),
  '{"object": "webhook_replay", "replayed": 1}'::jsonb,
  'status => all replays every finished one (pending ones are left as they are)'
);
select is(
  (
    select array_agg(row(d.status, d.next_attempt_at, d.succeeded_at)::text order by d.id)
    from api.list_webhook_deliveries(endpoint_id => tests.id('rp')) as d
  ),
  array_fill(row('pending', now(), null::timestamptz)::text, array[4]),
  'every replayed delivery is pending, due now'
);
select is(
  api.replay_webhook_endpoint(tests.id('rp'), since => now() - interval '3 days', status => 'all'),
  '{"object": "webhook_replay", "replayed": 0}'::jsonb,
  'nothing is left to replay'
);
select throws_ok(s.statement, s.code, null, format('%s raises %s', s.statement, s.code))
from (
  values
  (format($$select api.replay_webhook_endpoint(%L, since => now(), status => 'pending')$$, tests.id('rp')), 'LINVL'),
  (format($$select api.replay_webhook_endpoint(%L, since => now(), status => null)$$, tests.id('rp')), 'LINVL'),
  (format('select api.replay_webhook_endpoint(%L, since => null)', tests.id('rp')), 'LINVL'),
  (format('select api.replay_webhook_endpoint(%L, since => now())', tests.id('gone')), 'LSTAT'),
  (format('select api.replay_webhook_endpoint(%L, since => now())', '01890000-0000-7000-8000-00000000000c'), 'LNTFD')
) as s (statement, code);

-- ---------------------------------------------------------------------------
-- Secret rotation.
select tests.remember(
  'rot', (api.create_webhook_endpoint(url => 'https://hooks.example.com/rot', secret_ciphertext => '\x0c01')).id
);
select results_eq(
  format('select secret_ciphertext, expires_at from api.webhook_endpoint_secrets(%L)', tests.id('rot')),
  $$values ('\x0c01'::bytea, null::timestamptz)$$,
  'a new endpoint has one secret, which does not expire'
);
select is(
  (api.rotate_webhook_endpoint_secret(tests.id('rot'), '\x0c02', overlap => '1 hour')).secret_rotated_at, now(),
  'rotating the secret records when'
);
select results_eq(
  format('select secret_ciphertext, expires_at from api.webhook_endpoint_secrets(%L)', tests.id('rot')),
  $$values ('\x0c02'::bytea, null::timestamptz), ('\x0c01'::bytea, now() + interval '1 hour')$$,
  'during the overlap both secrets are returned, the current one first'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes from lic.events as e
    where e.type = 'webhook_endpoint.updated' and e.object ->> 'id' = tests.id('rot')::text
  ),
  '{"secret_rotated_at": null}'::jsonb,
  'a rotation emits webhook_endpoint.updated'
);
select from tests.act_as(tests.secret_key('A'));
select from api.send_test_webhook(tests.id('rot'));
select tests.clear_context();
select is(
  (
    select c.secrets from tests.wh_claim() as c
    where c.endpoint_id = tests.id('rot') and c.event_type = 'ping'
  ),
  array['\x0c02', '\x0c01']::bytea[],
  'a claim during the overlap returns both secrets, the current one first'
);
select is(
  (
    select c.secrets from tests.wh_claim(at => now() + interval '2 hours') as c
    where c.endpoint_id = tests.id('rot') and c.event_type = 'ping'
  ),
  array['\x0c02']::bytea[],
  'a claim after the overlap returns the current secret only'
);
update lic.webhook_endpoints set previous_secret_expires_at = now()
where id = tests.id('rot');
select from tests.act_as(tests.secret_key('A'));
select results_eq(
  format('select secret_ciphertext from api.webhook_endpoint_secrets(%L)', tests.id('rot')),
  $$values ('\x0c02'::bytea)$$,
  'once the overlap is over only the current secret is returned'
);
select from api.rotate_webhook_endpoint_secret(tests.id('rot'), '\x0c03');
select results_eq(
  format('select secret_ciphertext, expires_at from api.webhook_endpoint_secrets(%L)', tests.id('rot')),
  $$values ('\x0c03'::bytea, null::timestamptz), ('\x0c02'::bytea, now() + interval '24 hours')$$,
  'the overlap is 24 hours by default'
);
select from api.rotate_webhook_endpoint_secret(tests.id('rot'), '\x0c04', overlap => '7 days');
select results_eq(
  format('select secret_ciphertext, expires_at from api.webhook_endpoint_secrets(%L)', tests.id('rot')),
  $$values ('\x0c04'::bytea, null::timestamptz), ('\x0c03'::bytea, now() + interval '7 days')$$,
  'rotating again during an overlap keeps only the secret it replaces; 7 days is the longest overlap'
);
select from api.rotate_webhook_endpoint_secret(tests.id('rot'), '\x0c05', overlap => '0 seconds');
select results_eq(
  format('select secret_ciphertext, expires_at from api.webhook_endpoint_secrets(%L)', tests.id('rot')),
  $$values ('\x0c05'::bytea, null::timestamptz)$$,
  'an overlap of 0 drops the old secret at once'
);
select throws_ok(s.statement, s.code, null, format('%s raises %s', s.statement, s.code))
from (
  values
  (format($$select api.rotate_webhook_endpoint_secret(%L, '\x01', overlap => '-1 second')$$, tests.id('rot')), 'LINVL'),
  (
    format($$select api.rotate_webhook_endpoint_secret(%L, '\x01', overlap => '7 days 1 second')$$, tests.id('rot')),
    'LINVL'
  ),
  (format($$select api.rotate_webhook_endpoint_secret(%L, '\x01', overlap => null)$$, tests.id('rot')), 'LINVL'),
  (format('select api.rotate_webhook_endpoint_secret(%L, null)', tests.id('rot')), 'LINVL'),
  (format($$select api.rotate_webhook_endpoint_secret(%L, '\x01')$$, '01890000-0000-7000-8000-00000000000c'), 'LNTFD'),
  (format('select api.webhook_endpoint_secrets(%L)', '01890000-0000-7000-8000-00000000000c'), 'LNTFD')
) as s (statement, code);

-- ---------------------------------------------------------------------------
-- Updating and deleting endpoints.
select tests.remember(
  'upd',
  (
    api.create_webhook_endpoint(
      url => 'https://hooks.example.com/upd', secret_ciphertext => '\x0a09', description => 'before'
    )
  ).id
);
select is(
  (
    select row(e.url, e.event_types, e.description, e.updated_at)
    from api.update_webhook_endpoint(
      tests.id('upd'), url => 'https://hooks.example.com/upd2', event_types => '{license.created,customer.created}',
      description => 'after'
    ) as e
  )::text,
  row('https://hooks.example.com/upd2', '{customer.created,license.created}'::text[], 'after', now())::text,
  'api.update_webhook_endpoint changes the url, event types and description'
);
select tests.clear_context();
select is(
  (
    select e.previous_attributes from lic.events as e
    where e.type = 'webhook_endpoint.updated' and e.object ->> 'id' = tests.id('upd')::text
  ),
  '{"url": "https://hooks.example.com/upd", "event_types": [], "description": "before"}'::jsonb,
  'webhook_endpoint.updated carries what changed'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.update_webhook_endpoint(tests.id('upd'), url => 'https://hooks.example.com/upd2')).url,
  'https://hooks.example.com/upd2',
  'an update that changes nothing returns the endpoint ...'
);
select is(
  tests.event_count('webhook_endpoint.updated', jsonb_build_object('id', tests.id('upd'))), 1,
  '... and emits nothing'
);
select is(
  (api.update_webhook_endpoint(tests.id('upd'), description => '', event_types => '{}')).description, null,
  'an empty description clears it; empty event types subscribe to all'
);
select is(
  (
    select row(e.enabled, e.disabled_reason, e.disabled_at)
    from api.update_webhook_endpoint(tests.id('upd'), enabled => false) as e
  )::text,
  row(false, 'disabled by the account', now())::text,
  'enabled => false disables the endpoint, saying the account did'
);
select is(
  tests.event_count('webhook_endpoint.updated', jsonb_build_object('id', tests.id('upd'), 'enabled', false)), 1,
  'disabling emits webhook_endpoint.updated'
);
select lives_ok(
  format('select api.update_webhook_endpoint(%L, enabled => false)', tests.id('upd')),
  'disabling a disabled endpoint changes nothing'
);
select is(
  tests.event_count('webhook_endpoint.updated', jsonb_build_object('id', tests.id('upd'), 'enabled', false)), 1,
  '... and emits nothing'
);
select is(
  (
    select row(e.enabled, e.disabled_reason, e.disabled_at)
    from api.update_webhook_endpoint(tests.id('cust'), enabled => true) as e
  )::text,
  row(true, null::text, null::timestamptz)::text,
  'enabled => true enables an endpoint the worker disabled, clearing the reason'
);
select tests.clear_context();
select is((tests.wh_endpoint(tests.id('cust'))).failing_since, null, '... and its failure clock');
select from tests.act_as(tests.secret_key('A'));
select throws_ok(s.statement, s.code, null, format('%s raises %s', s.statement, s.code))
from (
  values
  (format($$select api.update_webhook_endpoint(%L, url => 'ftp://x.example.com')$$, tests.id('upd')), 'LINVL'),
  (format($$select api.update_webhook_endpoint(%L, event_types => '{nope.nope}')$$, tests.id('upd')), 'LINVL'),
  (format('select api.update_webhook_endpoint(%L, description => repeat(%L, 501))', tests.id('upd'), 'd'), 'LINVL'),
  (format('select api.update_webhook_endpoint(%L, enabled => true)', '01890000-0000-7000-8000-00000000000c'), 'LNTFD')
) as s (statement, code);

select tests.remember(
  'del', (api.create_webhook_endpoint(url => 'https://hooks.example.com/del', secret_ciphertext => '\x0a0a')).id
);
select from api.update_customer(tests.id('customer'), name => 'Delete');
select tests.clear_context();
select tests.remember('del 1', tests.wh_of(tests.id('del'), 'customer.updated'));
select from tests.wh_claim();
select from tests.wh_record(tests.id('del 1'), 500);
select from tests.act_as(tests.secret_key('A'));
create temporary table del_before as select * from api.get_webhook_endpoint(tests.id('del'));
grant select on del_before to lic_app;
select is(
  to_jsonb(api.delete_webhook_endpoint(tests.id('del'))),
  (select to_jsonb(d) from del_before as d),
  'api.delete_webhook_endpoint returns the endpoint as it was'
);
select throws_ok(
  format('select api.get_webhook_endpoint(%L)', tests.id('del')), 'LNTFD', null, 'a deleted endpoint is gone'
);
select throws_ok(
  format('select api.delete_webhook_endpoint(%L)', tests.id('del')), 'LNTFD', null,
  'deleting it again raises LNTFD'
);
select is(
  tests.event_count('webhook_endpoint.deleted', jsonb_build_object('id', tests.id('del'))), 1,
  'deleting an endpoint emits webhook_endpoint.deleted'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.webhook_deliveries
    where endpoint_id = tests.id('del')
  )
  + (
    select count(*)::integer from lic.webhook_attempts
    where delivery_id = tests.id('del 1')
  ),
  0,
  'its deliveries and their attempts go with it'
);

-- ---------------------------------------------------------------------------
-- Test deliveries.
select from tests.act_as(tests.secret_key('A'));
create temporary table ping as select * from api.send_test_webhook(tests.id('all'));
grant select on ping to lic_worker;
select is(
  (select row(p.endpoint_id, p.event_type, p.status, p.attempts, p.next_attempt_at) from ping as p)::text,
  row(tests.id('all'), 'ping', 'pending', 0, now())::text,
  'api.send_test_webhook makes a ping delivery to the endpoint, due now'
);
select tests.clear_context();
select is(
  (select e.object from lic.events as e inner join ping as p on e.id = p.event_id),
  jsonb_build_object('object', 'webhook_endpoint', 'id', tests.id('all')),
  'the ping event names the endpoint'
);
select is(
  (select count(*)::integer from lic.webhook_deliveries as d inner join ping as p on d.event_id = p.event_id),
  1,
  'the ping goes to that endpoint only'
);
select is(
  (select c.payload::jsonb ->> 'type' from tests.wh_claim() as c inner join ping as p on c.delivery_id = p.id),
  'ping',
  'the ping is claimed like any delivery'
);
select from tests.act_as(tests.secret_key('A'));
select throws_ok(
  format('select api.send_test_webhook(%L)', tests.id('off')), 'LSTAT', null,
  'a disabled endpoint cannot be sent a test'
);
select throws_ok(
  format('select api.send_test_webhook(%L)', '01890000-0000-7000-8000-00000000000c'), 'LNTFD', null,
  'api.send_test_webhook of an unknown endpoint raises LNTFD'
);

-- ---------------------------------------------------------------------------
-- Two tenants: B reaches none of A's endpoints or deliveries.
select from tests.act_as(tests.secret_key('B'));
select throws_ok(s.statement, 'LNTFD', null, format('as B, %s raises LNTFD', s.statement))
from unnest(array[
  format('select api.get_webhook_endpoint(%L)', tests.id('all')),
  format($$select api.update_webhook_endpoint(%L, description => 'mine')$$, tests.id('all')),
  format('select api.delete_webhook_endpoint(%L)', tests.id('all')),
  format('select api.webhook_endpoint_secrets(%L)', tests.id('all')),
  format($$select api.rotate_webhook_endpoint_secret(%L, '\x0b02')$$, tests.id('all')),
  format('select api.send_test_webhook(%L)', tests.id('all')),
  format('select api.replay_webhook_endpoint(%L, since => now())', tests.id('all')),
  format('select api.get_webhook_delivery(%L)', tests.id('log 2')),
  format('select api.retry_webhook_delivery(%L)', tests.id('log 2'))
]) as s (statement);
select results_eq(
  'select id from api.list_webhook_endpoints(page_limit => 100)',
  $$select tests.id('b')$$,
  'B lists only its own endpoint'
);
select is_empty(
  $$select id from api.list_webhook_deliveries(page_limit => 100) where endpoint_id <> tests.id('b')$$,
  'B lists only deliveries to its own endpoint'
);
select is_empty(
  format('select id from api.list_webhook_deliveries(endpoint_id => %L)', tests.id('all')),
  'B listing A''s endpoint''s deliveries sees none'
);
select tests.clear_context();
select is(
  (
    select row(e.description, e.secret_ciphertext) from lic.webhook_endpoints as e
    where e.id = tests.id('all')
  )::text,
  row('everything', '\x0a01'::bytea)::text,
  'A''s endpoint is unchanged after B tried to change it'
);

-- A publishable key reaches no webhook function.
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A web', api.create_api_key(kind => 'publishable', name => 'web'));
select from tests.act_as(tests.key_secret('A web'));
select is_empty(
  $$
    with fns as materialized (
      select p.oid::regprocedure as fn
      from pg_catalog.pg_proc as p
      inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
      where n.nspname = 'api' and p.proname like '%webhook%'
    )
    select fn::text from fns where tests.sqlstate_of(tests.call_with_nulls(fn)) is distinct from 'LDNID'
  $$,
  'with a publishable key every webhook function raises LDNID'
);
select tests.clear_context();

-- ---------------------------------------------------------------------------
-- Endpoints per tenant plan (free 16, starter 64, growth 256, enterprise
-- unlimited; an account's own limit overrides its plan's).
select from tests.create_account('Free', 'free');
select from tests.create_account('Big', 'enterprise');
select from tests.act_as(tests.secret_key('Free'));
select is(
  (
    select count(*)::integer
    from generate_series(1, 16) as n,
      lateral api.create_webhook_endpoint(url => 'https://hooks.example.com/free/' || n, secret_ciphertext => '\x01')
  ),
  16,
  'the free plan takes 16 endpoints'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.webhook_deliveries
    where account_id = tests.account_id('Free')
  ),
  0,
  '... and making them made no delivery (no endpoint hears of another''s creation)'
);
select from tests.act_as(tests.secret_key('Free'));
select throws_ok(
  $$select api.create_webhook_endpoint(url => 'https://hooks.example.com/free/17', secret_ciphertext => '\x01')$$,
  'LPLAN', null,
  'a 17th endpoint on the free plan raises LPLAN'
);
select is(
  row((api.get_account()).limits -> 'webhook_endpoints', (api.get_account()).usage -> 'webhook_endpoints')::text,
  row('16'::jsonb, '16'::jsonb)::text,
  'api.get_account shows the endpoint limit and how many the account has'
);
select from api.update_webhook_endpoint(
  (
    select e.id from api.list_webhook_endpoints() as e
    order by e.id limit 1
  ), enabled => false
);
select throws_ok(
  $$select api.create_webhook_endpoint(url => 'https://hooks.example.com/free/17', secret_ciphertext => '\x01')$$,
  'LPLAN', null,
  'a disabled endpoint still counts'
);
select from api.delete_webhook_endpoint((
  select e.id from api.list_webhook_endpoints() as e
  order by e.id limit 1
));
select lives_ok(
  $$select api.create_webhook_endpoint(url => 'https://hooks.example.com/free/17', secret_ciphertext => '\x01')$$,
  'deleting one makes room for another'
);
select tests.clear_context();
update lic.accounts set max_webhook_endpoints = 17
where account_id = tests.account_id('Free');
select from tests.act_as(tests.secret_key('Free'));
select lives_ok(
  $$select api.create_webhook_endpoint(url => 'https://hooks.example.com/free/18', secret_ciphertext => '\x01')$$,
  'an account''s own limit overrides its plan''s ...'
);
select throws_ok(
  $$select api.create_webhook_endpoint(url => 'https://hooks.example.com/free/19', secret_ciphertext => '\x01')$$,
  'LPLAN', null,
  '... and holds too'
);
select from tests.act_as(tests.secret_key('Big'));
select is(
  (
    select count(*)::integer
    from generate_series(1, 300) as n,
      lateral api.create_webhook_endpoint(url => 'https://hooks.example.com/big/' || n, secret_ciphertext => '\x01')
  ),
  300,
  'the enterprise plan has no endpoint limit (null) unless the account has one'
);
select is(
  (api.get_account()).limits -> 'webhook_endpoints', 'null'::jsonb, 'api.get_account shows it as null'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.accounts as a
    where a.webhook_endpoints <> (
      select count(*) from lic.webhook_endpoints as e
      where e.account_id = a.account_id
    )
  ),
  0,
  'every account''s endpoint count is its number of endpoints'
);

select * from finish();
rollback;
