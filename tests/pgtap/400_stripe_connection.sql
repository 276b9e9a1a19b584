-- The tenant's side of Stripe (functions/72_stripe_connection.sql): the
-- connection per mode (mode from the key's prefix, rotation of signing
-- secrets, no ciphertext in answers), the credentials the webhook reads
-- before any key exists (only the named account's, in a context no tenant
-- function admits), mappings, the ledger and the Customer Portal target.
begin;
select plan(57);

select from tests.create_account('A');
select from tests.create_account('B');
insert into lic.license_policies (account_id, code, name) values (tests.account_id('A'), 'pro', 'Pro');
insert into lic.license_policies (account_id, code, name, archived_at)
values (tests.account_id('A'), 'old', 'Old', now());

-- Nothing returned to a caller can carry a secret.
select is_empty(
  $$
    select format('%s.%s', t.typname, a.attname)
    from pg_catalog.pg_type as t
    inner join pg_catalog.pg_attribute as a on t.typrelid = a.attrelid
    where t.oid in ('api.stripe_connection'::regtype, 'api.stripe_mapping'::regtype, 'api.stripe_event'::regtype)
      and a.atttypid = 'bytea'::regtype
  $$,
  'no Stripe contract type has a bytea attribute'
);

-- The mode comes from the key's prefix.
select is(
  (
    select array_agg(private.stripe_key_livemode(k.k) order by k.n)::text
    from
      unnest(
        array['sk_live_x', 'rk_live_x', 'sk_test_x', 'rk_test_x', 'pk_live_x', 'whsec_x', 'sk_livex', '']
      ) with ordinality as k (k, n)
  ),
  '{t,t,f,f,NULL,NULL,NULL,NULL}',
  'private.stripe_key_livemode reads live and test keys and nothing else'
);
select from tests.act_as(tests.secret_key('A'));
select is(
  (
    select row(c.livemode, c.api_key_redacted, c.webhook_endpoint_id)::text
    from api.put_stripe_connection(
      api_key_ciphertext => '\x01', api_key_redacted => 'rk_test_…aaaa', webhook_endpoint_id => 'we_Test1',
      webhook_secret_ciphertext => '\x11', webhook_secret_redacted => 'whsec_…t001'
    ) as c
  ),
  '(f,rk_test_…aaaa,we_Test1)',
  'a rk_test_ key connects test mode'
);
select is(
  (
    api.put_stripe_connection(
      api_key_ciphertext => '\x02', api_key_redacted => 'sk_live_…bbbb',
      webhook_secret_ciphertext => '\x21', webhook_secret_redacted => 'whsec_…l001', livemode => true
    )
  ).livemode,
  true,
  'a sk_live_ key connects live mode (livemode may say so too)'
);
select throws_ok(
  $$select api.put_stripe_connection(api_key_ciphertext => '\x01', api_key_redacted => 'pk_test_…aaaa')$$,
  'LINVL', null, 'a publishable Stripe key is refused'
);
select throws_ok(
  $$
    select api.put_stripe_connection(
      api_key_ciphertext => '\x01', api_key_redacted => 'rk_test_…aaaa', livemode => true
    )
  $$,
  'LINVL', null, 'a test key given for live mode is refused'
);
select throws_ok(
  $$select api.put_stripe_connection(webhook_secret_ciphertext => '\x01', webhook_secret_redacted => 'whsec_…x')$$,
  'LINVL', null, 'a secret alone needs livemode'
);
select throws_ok(
  $$
    select api.put_stripe_connection(
      webhook_secret_ciphertext => '\x01', webhook_secret_redacted => 'sk_test_…x', livemode => false
    )
  $$,
  'LINVL', null, 'a signing secret must be a whsec_ one'
);
select throws_ok(
  $$select api.put_stripe_connection(api_key_ciphertext => '\x01', livemode => false)$$,
  'LINVL', null, 'ciphertext without its redacted form is refused'
);
select throws_ok(
  $$select api.put_stripe_connection(livemode => false, portal_return_url => 'ftp://example.com')$$,
  'LINVL', null, 'portal_return_url must be http(s)'
);
select throws_ok(
  $$
    select api.put_stripe_connection(
      webhook_secret_ciphertext => '\x01', webhook_secret_redacted => 'whsec_…x', livemode => false,
      webhook_endpoint_id => 'nope'
    )
  $$,
  'LINVL', null, 'webhook_endpoint_id must be a we_ id'
);

-- A change keeps what it does not name.
select is(
  (
    select row(c.api_key_redacted, c.webhook_endpoint_id, c.portal_return_url)::text
    from api.put_stripe_connection(livemode => false, portal_return_url => 'https://app.example.com/billing') as c
  ),
  '(rk_test_…aaaa,we_Test1,https://app.example.com/billing)',
  'changing the return URL keeps the key and endpoint'
);

-- Rotation: a new secret, the previous valid for 24 hours at most.
select is(
  (
    select jsonb_agg(x.s ->> 'redacted' order by x.o)::text
    from
      api.put_stripe_connection(
        webhook_secret_ciphertext => '\x12', webhook_secret_redacted => 'whsec_…t002', livemode => false
      ) as c
    cross join lateral jsonb_array_elements(c.secrets) with ordinality as x (s, o)
  ),
  '["whsec_…t002", "whsec_…t001"]',
  'a new secret is listed first, the previous one still valid'
);
select tests.clear_context();
select is(
  (
    select array_agg(s.expires_at order by s.created_at, s.id)
    from lic.stripe_webhook_secrets as s
    where s.account_id = tests.account_id('A') and not s.livemode
  ),
  array[now() + interval '24 hours', null],
  'the previous secret expires in 24 hours, the new one never'
);
update lic.stripe_webhook_secrets set expires_at = now() + interval '1 hour'
where account_id = tests.account_id('A') and redacted = 'whsec_…t001';
select from tests.act_as(tests.secret_key('A'));
select from api.put_stripe_connection(
  webhook_secret_ciphertext => '\x13', webhook_secret_redacted => 'whsec_…t003', livemode => false
);
select tests.clear_context();
select results_eq(
  $$
    select s.redacted, s.expires_at from lic.stripe_webhook_secrets as s
    where s.account_id = tests.account_id('A') and not s.livemode
    order by s.created_at, s.id
  $$,
  $$
    values
    ('whsec_…t001'::text, now() + interval '1 hour'),
    ('whsec_…t002', now() + interval '24 hours'),
    ('whsec_…t003', null)
  $$,
  'a third secret never lengthens an earlier expiry and shortens none below 24 hours'
);
select is(
  (
    select count(*)::integer from lic.stripe_webhook_secrets as s
    where s.account_id = tests.account_id('A') and s.livemode
  ),
  1,
  'rotating test mode''s secret leaves live mode''s alone'
);

-- Expired secrets are neither listed nor handed out.
update lic.stripe_webhook_secrets set expires_at = now() - interval '1 second'
where account_id = tests.account_id('A') and redacted = 'whsec_…t001';
select from tests.act_as(tests.secret_key('A'));
select results_eq(
  $$
    select c.livemode, jsonb_array_length(c.secrets) from api.list_stripe_connections() as c
  $$,
  $$values (false, 2), (true, 1)$$,
  'the list shows test then live, with the valid secrets only'
);

-- B connects with its own secret.
select tests.clear_context();
select from tests.act_as(tests.secret_key('B'));
select from api.put_stripe_connection(
  webhook_secret_ciphertext => '\xb1', webhook_secret_redacted => 'whsec_…b001', livemode => false
);
select is(
  (select count(*)::integer from api.list_stripe_connections()),
  1,
  'B sees only its own connection'
);
select throws_ok(
  'select api.delete_stripe_connection(livemode => true)', 'LNTFD', null,
  'B cannot delete a mode only A connected'
);
select tests.clear_context();

-- The credentials the webhook reads: no API key needed, only the named account's.
set local role lic_web;
select results_eq(
  $$
    select c.livemode, c.kind, c.ciphertext, c.webhook_endpoint_id
    from service.stripe_credentials(account_id => tests.account_id('A')) as c
  $$,
  $$
    values
    (false, 'api_key'::text, '\x01'::bytea, 'we_Test1'::text),
    (true, 'api_key', '\x02', null),
    (false, 'webhook_secret', '\x13', 'we_Test1'),
    (false, 'webhook_secret', '\x12', 'we_Test1'),
    (true, 'webhook_secret', '\x21', null)
  $$,
  'service.stripe_credentials gives A''s keys and valid secrets, newest first, unauthenticated'
);
select is(
  current_setting('lic.key_kind'), 'stripe',
  'it acts in a stripe context'
);
select throws_ok(
  'select * from api.list_stripe_connections()', 'LDNID', null,
  'the stripe context reaches no tenant function'
);
select throws_ok(
  $$select * from api.put_stripe_connection(livemode => false, portal_return_url => 'https://evil.example.com')$$,
  'LDNID', null,
  'the stripe context cannot change a connection'
);
select results_eq(
  $$select c.ciphertext from service.stripe_credentials(account_id => tests.account_id('B')) as c$$,
  $$values ('\xb1'::bytea)$$,
  'service.stripe_credentials gives B only B''s secret'
);
select is_empty(
  $$select * from service.stripe_credentials(account_id => '01890000-0000-7000-8000-0000000000ff')$$,
  'an unknown account has no credentials'
);
select is(
  current_setting('lic.account_id'), tests.account_id('B')::text,
  'asking for an unknown account leaves no context of it behind'
);
select throws_ok(
  'select * from service.stripe_credentials(account_id => null)', 'LNTFD', null,
  'no account at all is refused'
);
select tests.clear_context();

-- The key for the web layer's own calls to Stripe.
select from tests.act_as(tests.secret_key('A'));
select results_eq(
  'select account_id, api_key_ciphertext, webhook_endpoint_id from api.get_stripe_api_key(livemode => false)',
  format($$values (%L::uuid, '\x01'::bytea, 'we_Test1'::text)$$, tests.account_id('A')),
  'api.get_stripe_api_key gives the mode''s key ciphertext and endpoint'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('B'));
select throws_ok(
  'select * from api.get_stripe_api_key(livemode => true)', 'LNTFD', null,
  'B has no live connection, so no key'
);
select is(
  (select api_key_ciphertext from api.get_stripe_api_key(livemode => false)),
  null,
  'a connection with a pasted secret only has no key'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A web', api.create_api_key(kind => 'publishable', name => 'web'));
select from tests.act_as(tests.key_secret('A web'));
select throws_ok(
  'select * from api.get_stripe_api_key(livemode => false)', 'LDNID', null,
  'a publishable key cannot read the key ciphertext'
);
select throws_ok(
  $$select * from api.put_stripe_connection(livemode => false, portal_return_url => 'https://x.example.com')$$,
  'LDNID', null,
  'a publishable key cannot change the connection'
);
select tests.clear_context();

-- Mappings.
select from tests.act_as(tests.secret_key('A'));
select is(
  (
    select row(m.stripe_price_id, m.stripe_product_id, m.policy_code, m.reapplied)::text
    from api.create_stripe_mapping(stripe_price_id => 'price_Pro1', policy_code => 'pro') as m
  ),
  '(price_Pro1,,pro,0)',
  'a price maps to a policy by code'
);
select tests.remember('product mapping', (
  api.create_stripe_mapping(
    stripe_product_id => 'prod_Pro', policy_id => (select p.id from api.get_license_policy(code => 'pro') as p)
  )
).id);
select throws_ok(
  $$select api.create_stripe_mapping(stripe_price_id => 'price_Pro1', policy_code => 'pro')$$,
  '23505', null, 'a price maps once'
);
select throws_ok(
  $$
    select api.create_stripe_mapping(stripe_price_id => 'price_X', stripe_product_id => 'prod_X', policy_code => 'pro')
  $$,
  'LINVL', null, 'a price or a product, not both'
);
select throws_ok(
  $$select api.create_stripe_mapping(policy_code => 'pro')$$,
  'LINVL', null, 'a price or a product, not neither'
);
select throws_ok(
  $$select api.create_stripe_mapping(stripe_price_id => 'prod_X', policy_code => 'pro')$$,
  'LINVL', null, 'a price id starts with price_'
);
select throws_ok(
  $$select api.create_stripe_mapping(stripe_price_id => 'price_X', policy_code => 'old')$$,
  'LSTAT', null, 'an archived policy takes no mapping'
);
select throws_ok(
  $$select api.create_stripe_mapping(stripe_price_id => 'price_X', policy_code => 'nope')$$,
  'LNTFD', null, 'an unknown policy is not found'
);
select results_eq(
  $$select coalesce(stripe_price_id, stripe_product_id), reapplied from api.list_stripe_mappings()$$,
  $$values ('prod_Pro'::text, null::integer), ('price_Pro1', null)$$,
  'mappings list newest first'
);
select is(
  (api.delete_stripe_mapping(mapping_id => tests.id('product mapping'))).stripe_product_id,
  'prod_Pro',
  'a mapping is deleted'
);
select throws_ok(
  format('select api.delete_stripe_mapping(mapping_id => %L)', tests.id('product mapping')),
  'LNTFD', null, 'a deleted mapping is gone'
);
select tests.clear_context();
select from tests.act_as(tests.secret_key('B'));
select is_empty('select * from api.list_stripe_mappings()', 'B sees none of A''s mappings');
select throws_ok(
  $$select api.create_stripe_mapping(stripe_price_id => 'price_Pro1', policy_code => 'pro')$$,
  'LNTFD', null, 'B cannot map to A''s policy'
);
select tests.clear_context();

-- The ledger.
insert into lic.stripe_events (account_id, stripe_event_id, type, livemode, payload, outcome)
values
(tests.account_id('A'), 'evt_1', 'invoice.paid', false, '{"id": "evt_1"}', 'parked'),
(tests.account_id('A'), 'evt_2', 'customer.created', false, '{"id": "evt_2"}', 'ignored'),
(tests.account_id('B'), 'evt_3', 'invoice.paid', false, '{"id": "evt_3"}', 'parked');
select tests.remember(e.stripe_event_id, e.id) from lic.stripe_events as e
where e.stripe_event_id in ('evt_2', 'evt_3');
select from tests.act_as(tests.secret_key('A'));
select results_eq(
  'select stripe_event_id, payload from api.list_stripe_events()',
  $$values ('evt_2'::text, null::jsonb), ('evt_1', null)$$,
  'the ledger lists the account''s events newest first, without payloads'
);
select results_eq(
  $$select stripe_event_id from api.list_stripe_events(outcome => 'parked', type => 'invoice.paid')$$,
  $$values ('evt_1'::text)$$,
  'the ledger filters by outcome and type'
);
select throws_ok(
  $$select * from api.list_stripe_events(outcome => 'duplicate')$$, 'LINVL', null,
  'an outcome never recorded is refused'
);
select is(
  (api.get_stripe_event(stripe_event_id => tests.id('evt_2'))).payload,
  '{"id": "evt_2"}'::jsonb,
  'one event comes with its payload'
);
select throws_ok(
  format('select api.get_stripe_event(stripe_event_id => %L)', tests.id('evt_3')),
  'LNTFD', null, 'another tenant''s event is not found'
);

-- The Customer Portal target.
select tests.clear_context();
insert into lic.customers (account_id, email, stripe_customer_id)
values (tests.account_id('A'), 'ada@example.com', 'cus_Ada1');
insert into lic.customers (account_id, email) values (tests.account_id('A'), 'bob@example.com');
insert into lic.licenses (account_id, key, policy_id, customer_id)
select
  c.account_id,
  private.new_license_key() as key,
  p.id as policy_id,
  c.id as customer_id
from lic.customers as c
inner join lic.license_policies as p on c.account_id = p.account_id and p.code = 'pro'
where c.account_id = tests.account_id('A');
select tests.remember('ada license', l.id)
from lic.licenses as l
inner join lic.customers as c on l.account_id = c.account_id and l.customer_id = c.id
where c.email = 'ada@example.com';
select tests.remember('bob license', l.id)
from lic.licenses as l
inner join lic.customers as c on l.account_id = c.account_id and l.customer_id = c.id
where c.email = 'bob@example.com';
insert into lic.stripe_subscriptions (account_id, subscription_id, livemode, customer, status, items, observed_at)
values (tests.account_id('A'), 'sub_Ada1', false, 'cus_Ada1', 'active', '[]', now());
insert into lic.stripe_subscription_licenses (account_id, license_id, subscription_id, item_id, synced_status)
values (tests.account_id('A'), tests.id('ada license'), 'sub_Ada1', 'si_Ada1', 'active');
select from tests.act_as(tests.secret_key('A'));
select results_eq(
  format('select * from api.stripe_billing_portal_target(license_id => %L)', tests.id('ada license')),
  format(
    $$values (%L::uuid, 'cus_Ada1'::text, false, 'https://app.example.com/billing'::text, '\x01'::bytea)$$,
    tests.account_id('A')
  ),
  'the portal target: the Stripe customer, the subscription''s mode, the return URL and that mode''s key'
);
select is(
  (
    select session_return_url from api.stripe_billing_portal_target(
      license_id => tests.id('ada license'), return_url => 'https://app.example.com/here'
    )
  ),
  'https://app.example.com/here',
  'a return_url given wins over the connection''s'
);
select throws_ok(
  format('select * from api.stripe_billing_portal_target(license_id => %L)', tests.id('bob license')),
  'LSTAT', null, 'a customer without a Stripe customer id has no portal'
);
select throws_ok(
  format('select * from api.stripe_billing_portal_target(license_id => %L)', gen_random_uuid()),
  'LNTFD', null, 'an unknown license is not found'
);
select throws_ok(
  format(
    $$select * from api.stripe_billing_portal_target(license_id => %L, return_url => 'javascript:x')$$,
    tests.id('ada license')
  ),
  'LINVL', null, 'a return_url must be http(s)'
);

-- Disconnecting.
select is(
  (api.delete_stripe_connection(livemode => false)).webhook_endpoint_id,
  'we_Test1',
  'a connection is deleted and answered as it was'
);
select throws_ok(
  format('select * from api.stripe_billing_portal_target(license_id => %L)', tests.id('ada license')),
  'LSTAT', null, 'without the subscription''s mode connected there is no key for the portal'
);
select tests.clear_context();
select is(
  (
    select count(*)::integer from lic.stripe_webhook_secrets as s
    where s.account_id = tests.account_id('A') and not s.livemode
  ),
  0,
  'its signing secrets went with it'
);

select * from finish();
rollback;
