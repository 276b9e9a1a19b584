-- Idempotency keys: claim, replay, conflicts, scope (account and principal)
-- and expiry. The concurrent "still in progress" path (LIDEM) needs two
-- connections and is tested from Python.
begin;
select plan(35);

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

-- An answer belongs to the principal that made it (the API key or the agent):
-- no other key or agent of the account replays it, whatever its kind, and
-- each may use the same key string for a request of its own.
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select from tests.remember_key('A sk2', api.create_api_key(kind => 'secret'));
select tests.remember_secret('A agent', (api.create_agent(name => 'bot')).token);
select api.save_idempotent_response(
  key => 'mine', fingerprint => 'fp-m', status => 201, body => '{"key": "K8WD9-SECRET"}'
);
select from tests.act_as(tests.key_secret('A pk'));
select is(
  api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-m'), null,
  'a publishable key does not get a secret key''s answer: go ahead (and be refused by the function itself)'
);
select from tests.act_as(tests.key_secret('A sk2'));
select is(
  api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-other'), null,
  'another secret key of the account neither gets the answer nor is compared with its request'
);
select from tests.act_as(tests.secret('A agent'));
select is(
  api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-m'), null,
  'an agent does not get a secret key''s answer'
);
select api.save_idempotent_response(key => 'mine', fingerprint => 'fp-a', status => 200, body => '{"agent": 1}');
select is(
  (api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-a')).body, '{"agent": 1}'::jsonb,
  'an agent''s answers are its own'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-m')).body, '{"key": "K8WD9-SECRET"}'::jsonb,
  'the key that made an answer still gets it'
);
select tests.clear_context();
select results_eq(
  $$
    select principal_kind, principal_id, request_fingerprint from lic.idempotency_keys
    where account_id = tests.account_id('A') and key = 'mine'
    order by request_fingerprint
  $$,
  $$
    select kind, id, fp from (values
      ('agent', (select a.id from lic.agents as a where a.account_id = tests.account_id('A')), 'fp-a'),
      ('secret', tests.key_id('A'), 'fp-m')
    ) as v (kind, id, fp)
  $$,
  'each answer is stored under its principal''s kind and id'
);

-- A context without a principal id (an account-bound login, say) is a
-- principal of its own, one per kind: it shares answers with no key.
select private.set_context(tests.account_id('A'), 'secret');
select is(
  api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-m'), null,
  'a context without a principal id does not get a key''s answer'
);
select api.save_idempotent_response(key => 'mine', fingerprint => 'fp-n', status => 200, body => '{"none": 1}');
select is(
  (api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-n')).body, '{"none": 1}'::jsonb,
  'a context without a principal id gets its own answers'
);
select private.set_context(tests.account_id('A'), 'publishable');
select is(
  api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-n'), null,
  'nor does another kind without a principal id share them'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-m')).body, '{"key": "K8WD9-SECRET"}'::jsonb,
  'and the key still gets its own, not the principal-less one'
);
select tests.clear_context();

-- A stale answer goes per principal: a claim deletes its own, not another's.
update lic.idempotency_keys set created_at = now() - interval '25 hours'
where account_id = tests.account_id('A') and key = 'mine' and principal_kind = 'agent';
select from tests.act_as(tests.secret('A agent'));
select is(
  api.claim_idempotency_key(key => 'mine', fingerprint => 'fp-a'), null,
  'an agent''s stale answer is treated as absent'
);
select tests.clear_context();
select is(
  (
    select array_agg(principal_kind order by principal_kind) from lic.idempotency_keys
    where account_id = tests.account_id('A') and key = 'mine'
  ),
  array['secret', 'secret'],
  'and only the agent''s own answer was deleted, not the others'' under the same key string'
);

-- The purge: keys older than 24 hours go, oldest first, as lic_worker.
insert into lic.idempotency_keys (
  account_id, principal_kind, principal_id, key, request_fingerprint, response_status, created_at
)
values
(tests.account_id('A'), 'secret', tests.key_id('A'), 'purge-older', 'fp', 200, now() - interval '26 hours'),
(tests.account_id('A'), 'secret', tests.key_id('A'), 'purge-old', 'fp', 200, now() - interval '25 hours'),
-- Another principal's fresh answer under the same key string stays.
(tests.account_id('A'), 'publishable', tests.key_id('A pk'), 'purge-old', 'fp', 200, now());
select count(*) as keys_left
from lic.idempotency_keys
where created_at > now() - interval '24 hours'
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
  array['purge-old', 'purge-old'],
  'the oldest went first'
);
set local role lic_worker;
select is(worker.purge_idempotency_keys(), 1, 'the next batch takes the other old key and nothing newer');
reset role;
select is(
  (
    select array_agg(principal_kind) from lic.idempotency_keys
    where key like 'purge-%'
  ),
  array['publishable'],
  'another principal''s fresh answer under the same key string is not purged with the old one'
);
set local role lic_worker;
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
