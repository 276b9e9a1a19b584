-- The console's overview read (functions/90_console.sql): licenses by
-- effective status, Stripe health per mode, webhook delivery health and the
-- getting-started checklist that ticks itself off, each of its own account.
begin;
select plan(17);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');

select from tests.act_as(tests.secret_key('A'));
select is(
  (api.get_console_overview()).checklist,
  '{"policy": false, "entitlement_attached": false, "stripe_connected": false, "mapping": false, '
  '"license": false, "stripe_event": false}'::jsonb,
  'a new account has nothing ticked on its checklist'
);
select is((api.get_console_overview()).licenses_by_status, '{}'::jsonb, 'a new account has no licenses');
select is(
  (api.get_console_overview()).stripe,
  '[{"livemode": false, "connected": false, "api_key": false, "last_event_at": null, "failed_last_7_days": 0, '
  '"parked": 0, "needs_refetch": 0}, {"livemode": true, "connected": false, "api_key": false, '
  '"last_event_at": null, "failed_last_7_days": 0, "parked": 0, "needs_refetch": 0}]'::jsonb,
  'Stripe health has one entry per mode, test mode first, none connected'
);
select is(
  (api.get_console_overview()).webhooks,
  '{"endpoints": 0, "disabled": 0, "pending": 0, "failed_last_7_days": 0, "last_succeeded_at": null}'::jsonb,
  'webhook health of an account without endpoints is all zero'
);

-- Account A sets up: a policy with an entitlement, licenses, Stripe in test
-- mode with a mapping and events, a webhook endpoint with deliveries.
select from tests.clear_context();
select from tests.fx_policy('A', 'pro');
select from tests.fx_entitlement('A', 'export', array['pro']);
select from tests.fx_license('A', 'one', 'pro');
select from tests.fx_license('A', 'two', 'pro');
select from tests.fx_license('A', 'gone', 'pro', status => 'suspended');
select from tests.fx_license('A', 'ran-out', 'pro', expires_at => now() - interval '1 day');
insert into lic.stripe_connections (account_id, livemode) values (tests.account_id('A'), false);
select from tests.stripe_map('A', 'price_pro', null, 'pro');
insert into lic.stripe_events (account_id, stripe_event_id, type, payload, outcome, livemode, received_at)
values
(tests.account_id('A'), 'evt_1', 'checkout.session.completed', '{}', 'applied', false, now() - interval '1 hour'),
(tests.account_id('A'), 'evt_2', 'customer.subscription.updated', '{}', 'parked', false, now()),
(tests.account_id('A'), 'evt_3', 'invoice.paid', '{}', 'failed', false, now() - interval '2 days'),
(tests.account_id('A'), 'evt_4', 'invoice.paid', '{}', 'failed', false, now() - interval '8 days'),
(tests.account_id('A'), 'evt_5', 'invoice.paid', '{}', 'applied', true, now() - interval '3 hours');
insert into lic.webhook_endpoints (account_id, url, secret_ciphertext, enabled, disabled_reason, disabled_at)
values
(tests.account_id('A'), 'https://example.com/a', '\x00', true, null, null),
(tests.account_id('A'), 'https://example.com/b', '\x00', false, 'gone', now());
insert into lic.events (account_id, type, object)
values (tests.account_id('A'), 'test.pending', '{}'), (tests.account_id('A'), 'test.failed', '{}'),
(tests.account_id('A'), 'test.succeeded', '{}');
insert into lic.webhook_deliveries (
  account_id, endpoint_id, event_id, event_type, status, next_attempt_at, succeeded_at
)
select
  e.account_id,
  w.id as endpoint_id,
  e.id as event_id,
  e.type as event_type,
  s.status,
  case when s.status = 'pending' then now() end as next_attempt_at,
  case when s.status = 'succeeded' then now() - interval '5 minutes' end as succeeded_at
from lic.events as e
inner join (values ('pending'), ('failed'), ('succeeded')) as s (status) on e.type = 'test.' || s.status
inner join lic.webhook_endpoints as w on e.account_id = w.account_id and w.url = 'https://example.com/a'
where e.account_id = tests.account_id('A');

select from tests.act_as(tests.secret_key('A'));
select is(
  (api.get_console_overview()).checklist,
  '{"policy": true, "entitlement_attached": true, "stripe_connected": true, "mapping": true, '
  '"license": true, "stripe_event": true}'::jsonb,
  'every step done ticks every item'
);
select is(
  (api.get_console_overview()).licenses_by_status,
  '{"active": 2, "suspended": 1, "expired": 1}'::jsonb,
  'licenses are counted by effective status: an active license past its expiry counts as expired'
);
select is(
  ((api.get_console_overview()).stripe -> 0) - 'last_event_at',
  '{"livemode": false, "connected": true, "api_key": false, "failed_last_7_days": 1, "parked": 1, '
  '"needs_refetch": 0}'::jsonb,
  'test mode: connected by a signing secret only, one failure this week (an older one not counted), one parked'
);
select ok(
  ((api.get_console_overview()).stripe -> 0 ->> 'last_event_at')::timestamptz > now() - interval '1 minute',
  'test mode''s last event is the newest of that mode'
);
select is(
  (api.get_console_overview()).stripe -> 1 ->> 'connected', 'false',
  'live mode is not connected, though a live event arrived'
);
select is(
  (api.get_console_overview()).webhooks - 'last_succeeded_at',
  '{"endpoints": 2, "disabled": 1, "pending": 1, "failed_last_7_days": 1}'::jsonb,
  'webhook health counts endpoints, the disabled ones, pending and recently failed deliveries'
);

select from tests.act_as(tests.secret_key('B'));
select is(
  (api.get_console_overview()).licenses_by_status, '{}'::jsonb,
  'another account sees none of A''s licenses'
);
select is(
  (api.get_console_overview()).checklist ->> 'policy', 'false',
  'nor has A''s steps ticked'
);

-- Renaming the account (the Settings page): admin and above, an event
-- naming the previous name, nothing emitted when nothing changes.
select from tests.act_as(tests.secret_key('A'));
select is((api.update_account('  Acme Tools ')).name, 'Acme Tools', 'the account is renamed, trimmed');
select is(
  (
    select row(e.type, e.data -> 'previous_attributes' ->> 'name')::text
    from api.list_audit_events(type => 'account.updated') as e
  ),
  row('account.updated', 'A')::text,
  'the rename is an event naming the previous name'
);
select from api.update_account('Acme Tools');
select is(
  (select count(*)::integer from api.list_audit_events(type => 'account.updated')),
  1, 'the same name again emits nothing'
);
select throws_ok($$select api.update_account(' ')$$, 'LINVL', null, 'a blank name is refused');
select throws_ok(
  $$select api.update_account(repeat('x', 201))$$, 'LINVL', null, 'a name over 200 characters is refused'
);

select * from finish();
rollback;
