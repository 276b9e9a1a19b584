-- API keys: format, storage, authentication, rolling, revoking, listing.
begin;
select plan(57);

select from tests.create_account('main');
select from tests.create_account('lonely');
select from tests.create_account('pages');

-- Format: prefix, the account id (32 hex), 40 random hex, an 8-hex checksum.
select matches(tests.secret_key('main'), '^lic_sk_[0-9a-f]{80}$', 'a secret key is lic_sk_ and 80 lowercase hex');
select is(length(tests.secret_key('main')), 87, 'a secret key is 87 characters long');
select is(
  substr(tests.secret_key('main'), 8, 32), replace(tests.account_id('main')::text, '-', ''),
  'a key names its account'
);

select from tests.act_as(tests.secret_key('main'));
select from tests.remember_key('main pk', api.create_api_key(kind => 'publishable', name => 'web'));
select from tests.remember_key('main sk2', api.create_api_key(kind => 'secret', name => 'second'));

select matches(
  tests.key_secret('main pk'), '^lic_pk_[0-9a-f]{80}$', 'a publishable key is lic_pk_ and 80 lowercase hex'
);
select is(length(tests.key_secret('main pk')), 87, 'a publishable key is 87 characters long');
select is(
  (api.get_api_key(api_key_id => tests.key_id('main pk'))).redacted,
  left(tests.key_secret('main pk'), 7) || '…' || right(tests.key_secret('main pk'), 4),
  'a key is shown redacted to its prefix and last four characters'
);
select is(
  (api.get_api_key(api_key_id => tests.key_id('main pk'))).secret, null,
  'api.get_api_key never shows the clear key again'
);
select is_empty(
  'select id from api.list_api_keys() where secret is not null',
  'api.list_api_keys never shows clear keys'
);
select isnt(
  (api.get_api_key(api_key_id => tests.key_id('main'))).last_used_at, null,
  'authenticating records when the key was last used'
);
select tests.clear_context();

-- Storage: only the sha256 of a key.
select is_empty(
  $$
    select k.id from lic.api_keys as k, tests.api_keys as s
    where strpos(k::text, s.secret) > 0 or strpos(k::text, substr(s.secret, 40, 40)) > 0
  $$,
  'neither a clear key nor its random part is stored in lic.api_keys'
);
select is(
  (
    select count(*)::integer
    from lic.api_keys as k
    inner join tests.api_keys as s on k.id = s.id
    where k.key_hash = sha256(convert_to(s.secret, 'UTF8'))
  ),
  (select count(*)::integer from tests.api_keys),
  'each key is stored as the sha256 of its clear text'
);

-- A mistyped key fails its checksum before any table is read: lic_maint,
-- which may call private functions but cannot read lic.api_keys, gets LAUTH.
set local role lic_maint;
select ok(not has_table_privilege('lic.api_keys', 'select'), 'lic_maint cannot read lic.api_keys');
select is(
  private.token_account(tests.secret_key('main')), tests.account_id('main'),
  'the account is read from a well-formed key without table access'
);
select throws_ok(
  format(
    'select private.token_account(%L)',
    tests.mistype(tests.secret_key('main'), 50)
  ),
  'LAUTH', null,
  'a key with one character of its random part changed raises LAUTH without table access'
);
select throws_ok(
  format(
    'select private.token_account(%L)',
    tests.mistype(tests.secret_key('main'), 87)
  ),
  'LAUTH', null,
  'a key with its checksum changed raises LAUTH without table access'
);
select throws_ok(
  format('select private.token_account(%L)', upper(tests.secret_key('main'))),
  'LAUTH', null,
  'an uppercase key is malformed (LAUTH)'
);
select throws_ok(
  format('select private.token_account(%L)', left(tests.secret_key('main'), 86)),
  'LAUTH', null,
  'a truncated key is malformed (LAUTH)'
);
select throws_ok('select private.token_account(null)', 'LAUTH', null, 'a null key raises LAUTH');
select tests.clear_context();

-- Well-formed keys with a valid checksum that were never issued.
select throws_ok(
  format('select tests.act_as(%L)', tests.well_formed_key(tests.account_id('main'))),
  'LAUTH', null,
  'a well-formed key that was never issued raises LAUTH'
);
select throws_ok(
  format('select tests.act_as(%L)', tests.well_formed_key(private.uuid_v7())),
  'LAUTH', null,
  'a well-formed key naming an account that does not exist raises LAUTH'
);

-- Revoking.
select from tests.act_as(tests.secret_key('main'));
select isnt(
  (api.revoke_api_key(api_key_id => tests.key_id('main sk2'))).revoked_at, null,
  'a revoked key has revoked_at'
);
select tests.clear_context();
update lic.api_keys set revoked_at = now() - interval '1 hour'
where id = tests.key_id('main sk2');
select from tests.act_as(tests.secret_key('main'));
select is(
  (api.revoke_api_key(api_key_id => tests.key_id('main sk2'))).revoked_at, now() - interval '1 hour',
  'revoking a revoked key again leaves its revoked_at alone'
);
select is(
  api.revoke_api_key(api_key_id => tests.key_id('main sk2')), api.get_api_key(api_key_id => tests.key_id('main sk2')),
  'revoking a revoked key again returns it unchanged'
);
select throws_ok(
  format('select tests.act_as(%L)', tests.key_secret('main sk2')),
  'LAUTH', null,
  'a revoked key raises LAUTH'
);
select throws_ok(
  format('select api.roll_api_key(api_key_id => %L)', tests.key_id('main sk2')),
  'LSTAT', null,
  'rolling a revoked key raises LSTAT'
);

-- Rolling: the new key works at once, the old one until expires_at.
select from tests.remember_key('main rolled', api.roll_api_key(api_key_id => tests.key_id('main')));
select matches(tests.key_secret('main rolled'), '^lic_sk_', 'rolling a secret key gives a secret key');
select is(
  (api.get_api_key(api_key_id => tests.key_id('main rolled'))).rolled_from, tests.key_id('main'),
  'the new key records the key it replaces'
);
select is(
  (api.get_api_key(api_key_id => tests.key_id('main'))).expires_at, now() + interval '24 hours',
  'by default the old key stays valid for 24 hours'
);
select is(
  (tests.act_as(tests.key_secret('main rolled'))).api_key_id, tests.key_id('main rolled'),
  'the new key authenticates'
);
select is(
  (tests.act_as(tests.key_secret('main'))).api_key_id, tests.key_id('main'),
  'the old key still authenticates before its expires_at'
);
select throws_ok(
  format(
    'select api.roll_api_key(api_key_id => %L, expires_at => %L)',
    tests.key_id('main rolled'), now() + interval '7 days 1 second'
  ),
  'LINVL', null,
  'rolling with expires_at more than 7 days ahead raises LINVL'
);
select throws_ok(
  format(
    'select api.roll_api_key(api_key_id => %L, expires_at => %L)',
    tests.key_id('main rolled'), now() - interval '1 second'
  ),
  'LINVL', null,
  'rolling with expires_at in the past raises LINVL'
);
select lives_ok(
  format(
    'select api.roll_api_key(api_key_id => %L, expires_at => %L)',
    tests.key_id('main rolled'), now() + interval '1 hour'
  ),
  'rolling with expires_at within 7 days succeeds'
);
select lives_ok(
  format(
    'select api.roll_api_key(api_key_id => %L, expires_at => %L)',
    tests.key_id('main rolled'), now() + interval '2 days'
  ),
  'a key that is being rolled can be rolled again'
);
select is(
  (api.get_api_key(api_key_id => tests.key_id('main rolled'))).expires_at, now() + interval '1 hour',
  'rolling again never extends the old key''s life'
);
select from tests.remember_key(
  'main pk rolled', api.roll_api_key(api_key_id => tests.key_id('main pk'), expires_at => now())
);
select throws_ok(
  format('select tests.act_as(%L)', tests.key_secret('main pk')),
  'LAUTH', null,
  'rolling with expires_at now ends the old key at once'
);
select is(
  (tests.act_as(tests.key_secret('main pk rolled'))).kind, 'publishable',
  'rolling a publishable key gives a publishable key'
);
select tests.clear_context();
update lic.api_keys set expires_at = now() - interval '1 second'
where id = tests.key_id('main');
select throws_ok(
  format('select tests.act_as(%L)', tests.key_secret('main')),
  'LAUTH', null,
  'a key whose expires_at has passed raises LAUTH'
);
select from tests.act_as(tests.key_secret('main rolled'));
select throws_ok(
  format('select api.roll_api_key(api_key_id => %L)', tests.key_id('main')),
  'LSTAT', null,
  'rolling an expired key raises LSTAT'
);
select throws_ok(
  $$select api.create_api_key(kind => 'bogus')$$, 'LINVL', null, 'creating a key of an unknown kind raises LINVL'
);
select throws_ok(
  'select api.create_api_key(kind => null)', 'LINVL', null, 'creating a key without a kind raises LINVL'
);
select tests.clear_context();

-- The last active secret key of an account cannot be revoked.
select from tests.act_as(tests.secret_key('lonely'));
select from tests.remember_key('lonely expired', api.create_api_key(kind => 'secret'));
select from tests.remember_key('lonely pk', api.create_api_key(kind => 'publishable'));
select tests.clear_context();
update lic.api_keys set expires_at = now() - interval '1 second'
where id = tests.key_id('lonely expired');
select from tests.act_as(tests.secret_key('lonely'));
select throws_ok(
  format('select api.revoke_api_key(api_key_id => %L)', tests.key_id('lonely')),
  'LSTAT', null,
  'revoking the last active secret key raises LSTAT (an expired one does not count)'
);
select lives_ok(
  format('select api.revoke_api_key(api_key_id => %L)', tests.key_id('lonely pk')),
  'a publishable key can be revoked while one secret key is left'
);
select lives_ok(
  format('select api.roll_api_key(api_key_id => %L)', tests.key_id('lonely')),
  'the last secret key can be rolled'
);
select lives_ok(
  format('select api.revoke_api_key(api_key_id => %L)', tests.key_id('lonely')),
  'once another active secret key exists the old one can be revoked'
);
select tests.clear_context();

-- Listing: keyset pages of page_limit + 1 keys, newest first. The keys are
-- made a few milliseconds apart so that their UUIDv7 ids follow creation;
-- 'pages' (the account's first key) is the oldest, 'page 6' the newest.
select from tests.act_as(tests.secret_key('pages'));
do $$
begin
  for v_seq in 2..6 loop
    perform pg_sleep(0.002);
    perform tests.remember_key(format('page %s', v_seq), api.create_api_key(kind => 'publishable'));
  end loop;
end;
$$;
select results_eq(
  'select id from api.list_api_keys()',
  $$select * from tests.key_ids('page 6', 'page 5', 'page 4', 'page 3', 'page 2', 'pages')$$,
  'api.list_api_keys lists every key newest first'
);
select results_eq(
  'select id from api.list_api_keys(page_limit => 2)',
  $$select * from tests.key_ids('page 6', 'page 5', 'page 4')$$,
  'the first page is page_limit + 1 keys, newest first'
);
select results_eq(
  format('select id from api.list_api_keys(page_limit => 2, starting_after => %L)', tests.key_id('page 5')),
  $$select * from tests.key_ids('page 4', 'page 3', 'page 2')$$,
  'starting_after continues after the cursor, newest first'
);
select results_eq(
  format('select id from api.list_api_keys(page_limit => 2, starting_after => %L)', tests.key_id('page 3')),
  $$select * from tests.key_ids('page 2', 'pages')$$,
  'the last page has no extra row'
);
select is_empty(
  format('select id from api.list_api_keys(page_limit => 2, starting_after => %L)', tests.key_id('pages')),
  'nothing comes after the oldest key'
);
select results_eq(
  format('select id from api.list_api_keys(page_limit => 2, ending_before => %L)', tests.key_id('page 2')),
  $$select * from tests.key_ids('page 5', 'page 4', 'page 3')$$,
  'ending_before walks back: the page_limit + 1 keys just newer than the cursor, newest first'
);
select results_eq(
  format('select id from api.list_api_keys(page_limit => 2, ending_before => %L)', tests.key_id('page 4')),
  $$select * from tests.key_ids('page 6', 'page 5')$$,
  'walking back to the newest key has no extra row'
);
select is_empty(
  format('select id from api.list_api_keys(page_limit => 2, ending_before => %L)', tests.key_id('page 6')),
  'nothing comes before the newest key'
);
select throws_ok(
  'select id from api.list_api_keys(page_limit => null)', 'LINVL', null,
  'a null page_limit is refused, not read as "everything"'
);
select throws_ok(
  'select id from api.list_api_keys(page_limit => 0)', 'LINVL', null, 'page_limit below 1 is refused'
);
select throws_ok(
  'select id from api.list_api_keys(page_limit => 101)', 'LINVL', null, 'page_limit above 100 is refused'
);
select throws_ok(
  format(
    'select id from api.list_api_keys(page_limit => 2, starting_after => %L, ending_before => %L)',
    tests.key_id('page 2'), tests.key_id('page 4')
  ),
  'LINVL', null, 'two cursors at once are refused'
);

select * from finish();
rollback;
