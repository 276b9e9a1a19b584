-- Rate limits (decision 59): per key after authentication, per client address
-- before it, per account for Stripe; counted per backend, cleaned as they go.
-- One transaction has one now() and one backend, so "another backend" is a
-- row inserted with another pid and "a later minute" an explicit at.
begin;
select plan(27);

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A sk2', api.create_api_key(kind => 'secret', name => 'second'));
select tests.remember_secret('A agent', (api.create_agent(name => 'bot')).token);
select tests.clear_context();

-- What the calls below use, readable by lic_web.
create temporary table rl as
select
  tests.secret_key('A') as key,
  tests.key_secret('A sk2') as key2,
  tests.secret('A agent') as agent,
  tests.well_formed_key(tests.account_id('A')) as wrong_key,
  tests.account_id('A') as account_id,
  tests.key_id('A') as key_id,
  tests.key_id('A sk2') as key2_id,
  tests.account_id('B') as account_b,
  sha256('client one') as client,
  sha256('client two') as other_client,
  sha256('client three') as third_client;
grant select on rl to lic_web, lic_definer;

set local role lic_web;

-- Per key, after authentication.
select is(
  (select (service.authenticate_request(secret => key, client_hash => client, per_minute => 3)).account_id from rl),
  (select account_id from rl),
  'service.authenticate_request authenticates as api.authenticate does'
);
select lives_ok(
  'select service.authenticate_request(key, client, 3) from rl',
  'the second request of a key in a minute passes'
);
select lives_ok(
  'select service.authenticate_request(key, other_client, 3) from rl',
  'the third passes, from another address too: the key is the bucket'
);
select throws_ok(
  'select service.authenticate_request(key, client, 3) from rl',
  'LRATE', null,
  'the fourth request of the key in the minute is refused'
);
select throws_ok(
  'select service.authenticate_request(key, third_client, 3) from rl',
  'LRATE', null,
  'from any address'
);
select lives_ok(
  'select service.authenticate_request(key, client, 4) from rl',
  'a refused request is not counted: under a limit of 4 the key has made 3'
);
select lives_ok(
  'select service.authenticate_request(key2, client, 3) from rl',
  'another key of the same account has its own bucket'
);
select lives_ok(
  'select service.authenticate_request(agent, client, 3) from rl',
  'an agent token has its own bucket'
);

-- A failed request is counted in a transaction of its own.
select lives_ok(
  'select service.count_failed_request(key2, client) from rl',
  'a failed request of a key that authenticates is counted'
);
select lives_ok(
  'select service.authenticate_request(key2, client, 3) from rl',
  'with the failed one, this is the key''s third request in the minute ...'
);
select throws_ok(
  'select service.authenticate_request(key2, client, 3) from rl',
  'LRATE', null,
  '... so its fourth is refused'
);

-- Per client address, before authentication: keys that fail count against it.
select lives_ok(
  'select service.count_failed_request(wrong_key, other_client) from rl',
  'a well-formed key that does not authenticate counts against the client address'
);
select lives_ok(
  $$select service.count_failed_request('lic_sk_junk', other_client) from rl$$,
  'so does a malformed one'
);
select lives_ok(
  'select service.authenticate_request(agent, other_client, 3) from rl',
  'an address below its limit is served'
);
select lives_ok(
  'select service.count_failed_request(wrong_key, other_client) from rl',
  'a third failure from the address'
);
select throws_ok(
  'select service.authenticate_request(agent, other_client, 3) from rl',
  'LRATE', null,
  'an address whose keys failed per_minute times is refused before any key is looked up, even a good one'
);

-- The count holds across backends: another backend's row adds to the bucket.
reset role;
insert into lic.request_counts (account_id, principal_id, window_start, backend_pid, requests)
select
  account_id,
  key2_id,
  date_trunc('minute', now()) as window_start,
  pg_backend_pid() + 1 as backend_pid,
  5 as requests
from rl;
set local role lic_web;
select throws_ok(
  'select service.authenticate_request(key2, client, 8) from rl',
  'LRATE', null,
  'the requests another backend counted for the key count toward its limit'
);

-- The portal's pages: per client address only.
select lives_ok(
  'select service.limit_client(third_client, 2) from rl',
  'service.limit_client counts a request of an address'
);
select lives_ok('select service.limit_client(third_client, 2) from rl', 'a second one passes');
select throws_ok(
  'select service.limit_client(third_client, 2) from rl',
  'LRATE', null,
  'the third in the minute is refused'
);

-- Stripe: per account named in the URL.
select throws_ok(
  $$select service.limit_stripe_deliveries('00000000-0000-7000-8000-000000000000', 100)$$,
  'LNTFD', null,
  'an unknown account''s deliveries are refused (and leave no counter)'
);
select lives_ok(
  'select service.limit_stripe_deliveries(account_b, 1) from rl',
  'a delivery to an account is counted'
);
select throws_ok(
  'select service.limit_stripe_deliveries(account_b, 1) from rl',
  'LRATE', null,
  'past the limit the account''s deliveries are refused'
);

-- Past minutes go with the next new row.
reset role;
insert into private.client_request_counts (client_hash, window_start, backend_pid, requests)
select
  sha256(convert_to('gone' || i, 'UTF8')) as client_hash,
  date_trunc('minute', now()) - interval '5 minutes' as window_start,
  i as backend_pid,
  1 as requests
from generate_series(1, 150) as i;
select is(
  private.count_client_request(sha256('new client'), now()),
  1,
  'a new client''s first request counts 1'
);
select is(
  (
    select count(*)::integer from private.client_request_counts
    where window_start < date_trunc('minute', now())
  ),
  50,
  'and deletes up to a hundred rows of past minutes'
);
select from tests.act_as_definer(tests.account_id('A'));
select is(
  (select private.count_request(account_id, key_id, now() + interval '1 minute') from rl),
  1,
  'a key''s first request in a new minute counts 1 ...'
);
select is(
  (
    select count(*)::integer from lic.request_counts
    where window_start < date_trunc('minute', now() + interval '1 minute')
  ),
  0,
  '... and deletes the account''s rows of past minutes'
);

select * from finish();
rollback;
