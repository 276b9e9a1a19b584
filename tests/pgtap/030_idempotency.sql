-- Idempotency keys: claim, replay, conflicts, scope and expiry. The
-- concurrent "still in progress" path (LIDEM) needs two connections and is
-- tested from Python.
begin;
select plan(22);

select from tests.create_account('A');
select from tests.create_account('B');

select from tests.act_as(tests.secret_key('A'));
select is(
  api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-1'), null,
  'claiming a new key returns null: go ahead'
);
select lives_ok(
  $$select api.save_idempotent_response(key => 'order-1', fingerprint => 'fp-1', status => 201, body => '{"id": 1}')$$,
  'the response of the request is saved'
);
select is(
  api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-1'),
  row(201, '{"id": 1}')::api.idempotent_response,
  'claiming it again with the same fingerprint returns the stored status and body'
);
select throws_ok(
  $$select api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-2')$$,
  'LIDPL', null,
  'claiming it with a different fingerprint raises LIDPL'
);
select throws_ok(
  format('select api.claim_idempotency_key(key => %L, fingerprint => %L)', repeat('k', 256), 'fp'),
  'LINVL', null,
  'a key longer than 255 characters raises LINVL'
);
select lives_ok(
  format('select api.claim_idempotency_key(key => %L, fingerprint => %L)', repeat('k', 255), 'fp'),
  'a key of 255 characters is accepted'
);
select throws_ok(
  $$select api.claim_idempotency_key(key => '', fingerprint => 'fp')$$,
  'LINVL', null,
  'an empty key raises LINVL'
);
select throws_ok(
  $$select api.claim_idempotency_key(key => null, fingerprint => 'fp')$$,
  'LINVL', null,
  'a null key raises LINVL'
);

-- Keys are per account: B may use the same string.
select from tests.act_as(tests.secret_key('B'));
select is(
  api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-other'), null,
  'another account using the same key string gets null: go ahead'
);
select lives_ok(
  $$select api.save_idempotent_response(key => 'order-1', fingerprint => 'fp-other', status => 200, body => null)$$,
  'another account stores its own response under the same key string'
);

-- Kept 24 hours: an older record is treated as absent and replaced.
select tests.clear_context();
update lic.idempotency_keys set created_at = now() - interval '24 hours 1 second'
where account_id = tests.account_id('A') and key = 'order-1';
select from tests.act_as(tests.secret_key('A'));
select is(
  api.claim_idempotency_key(key => 'order-1', fingerprint => 'fp-2'), null,
  'a record older than 24 hours is treated as absent, even with another fingerprint'
);
select lives_ok(
  $$select api.save_idempotent_response(key => 'order-1', fingerprint => 'fp-2', status => 202, body => null)$$,
  'the new request''s response is saved under the expired key'
);
select tests.clear_context();
select results_eq(
  $$
    select request_fingerprint, response_status from lic.idempotency_keys
    where account_id = tests.account_id('A') and key = 'order-1'
  $$,
  $$values ('fp-2', 202)$$,
  'the expired record is replaced by the new request''s'
);
select is(
  (
    select response_status from lic.idempotency_keys
    where account_id = tests.account_id('B') and key = 'order-1'
  ),
  200,
  'another account''s record under the same key string is untouched'
);

select from tests.act_as(tests.secret_key('A'));
select lives_ok(
  $$
    select api.save_idempotent_response(
      key => 'new-key', fingerprint => 'fp-k', status => 201,
      body => '{"id": "k1", "secret": "lic_sk_clear"}'
    )
  $$,
  'a response carrying a new key''s secret is saved'
);
select is(
  (api.claim_idempotency_key(key => 'new-key', fingerprint => 'fp-k')).body,
  '{"id": "k1"}'::jsonb,
  'the stored response leaves the clear secret out'
);
select tests.clear_context();

-- The purge: keys older than 24 hours go, oldest first, as lic_worker.
insert into lic.idempotency_keys (account_id, key, request_fingerprint, response_status, created_at)
values
(tests.account_id('A'), 'purge-older', 'fp', 200, now() - interval '26 hours'),
(tests.account_id('A'), 'purge-old', 'fp', 200, now() - interval '25 hours');
select count(*) as keys_left
from lic.idempotency_keys
where key not like 'purge-%'
\gset
set local role lic_worker;
select throws_ok(
  $$select worker.purge_idempotency_keys(batch_size => 0)$$, 'LINVL', null, 'purging with a batch below 1 raises LINVL'
);
select is(worker.purge_idempotency_keys(batch_size => 1), 1, 'a batch purges at most batch_size keys');
reset role;
select is(
  (
    select array_agg(key)
    from lic.idempotency_keys
    where key like 'purge-%'
  ),
  array['purge-old'],
  'the oldest went first'
);
set local role lic_worker;
select is(worker.purge_idempotency_keys(), 1, 'the next batch takes the other old key and nothing newer');
-- An instant from lic_worker once purged every tenant's keys (issue 12).
select throws_ok(
  $$select worker.purge_idempotency_keys(at => 'infinity')$$, '42883', null,
  'lic_worker cannot choose the instant of the purge'
);
-- The purge's helper, run as the purge runs (lic_maint), takes the instant.
set local role lic_maint;
select is(
  private.purge_idempotency_keys(at => now() + interval '25 hours', batch_size => 1000), :keys_left::integer,
  'a day later every key left is old enough to go'
);
reset role;

select * from finish();
rollback;
