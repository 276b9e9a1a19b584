-- The Stripe sync core (functions/70_stripe_sync.sql; docs/stripe.md has the
-- status model and the outcomes): service.apply_stripe_event called as the web
-- layer calls it (lic_web, no key), service.apply_stripe_refetch,
-- api.reprocess_stripe_event, parked events re-applied when a mapping
-- arrives (private.stripe_sync_mapping), and the grace sweep
-- (worker.suspend_overdue_licenses). Payloads come from the tests.stripe_*
-- helpers (helpers.sql); times are offsets in seconds from an hour ago, and
-- each scenario has its own Stripe customer and subscription.
begin;
select plan(125);

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.act_as(tests.secret_key('A'));
select from api.create_license_policy('basic', 'Basic');
select from api.create_license_policy('pro', 'Pro');
select from api.create_license_policy('addon', 'Add-on');
select from api.create_license_policy('seat', 'Per seat');
select from api.create_license_policy('team', 'Team', max_users => 3);
select from api.create_license_policy('lenient', 'Lenient', refund_action => 'none', dispute_action => 'none');
select from api.create_license_policy('oneoff', 'One-off', duration => interval '365 days');
select from tests.act_as(tests.secret_key('B'));
select from api.create_license_policy('basic', 'Basic');
select from tests.clear_context();
select from tests.stripe_map('A', 'price_basic', null, 'basic');
select from tests.stripe_map('A', 'price_pro', null, 'pro');
select from tests.stripe_map('A', null, 'prod_suite', 'addon');
select from tests.stripe_map('A', 'price_seat', null, 'seat');
select from tests.stripe_map('A', 'price_team', null, 'team');
select from tests.stripe_map('A', 'price_lenient', null, 'lenient');
select from tests.stripe_map('B', 'price_basic', null, 'basic');

-- 1. A new active subscription: one license per mapped item, on the item's
-- price mapping, else its product's.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_s1', 'cus_s1', 'active',
        '[{"id": "si_s1", "price": "price_basic", "product": "prod_suite", "quantity": 3}]'
      ),
      0, 'evt_s1'
    )
  ) as r
\gset
select is((:'r'::jsonb) ->> 'outcome', 'applied', 'created (active) is applied');
select is(
  (:'r'::jsonb) -> 'licenses', jsonb_build_array((tests.stripe_license('sub_s1')).id),
  '... and answers the license it made'
);
select is(
  tests.stripe_state('sub_s1'),
  '{"status": "active", "effective_status": "active", "policy": "basic", "seats": 3, "expires_at": null,
    "paid_through": null, "grace_ends_at": null, "disputed_at": null}'::jsonb,
  'the license is active, on the price''s policy (beating its product''s), with seats = quantity'
);
select is(
  (
    select row(e.outcome, e.type, e.object_id, e.subscription_id, e.livemode)::text from lic.stripe_events as e
    where e.stripe_event_id = 'evt_s1'
  ),
  '(applied,customer.subscription.created,sub_s1,sub_s1,f)',
  'the event is in the ledger with its outcome and subscription'
);
select is(
  (
    select c.stripe_customer_id from lic.customers as c
    where c.id = (tests.stripe_license('sub_s1')).customer_id
  ),
  'cus_s1',
  'the license''s customer was made from the Stripe customer'
);
select is(
  tests.event_count('license.created', '{"stripe_subscription_id": "sub_s1"}'), 1, 'license.created is emitted'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_s2', 'cus_s2', 'active', '[{"id": "si_s2", "price": "price_other", "product": "prod_suite"}]'
      )
    )
  ) as r
\gset
select from tests.remember('s2', (tests.stripe_license('sub_s2')).id);
select from tests.act_as(tests.secret_key('A'));
select is(
  (select row(l.policy_code, l.seats, l.stripe_subscription_id)::text from api.get_license(tests.id('s2')) as l),
  '(addon,1,sub_s2)',
  'an item whose price is not mapped takes its product''s mapping (api.get_license shows it)'
);
select from tests.clear_context();

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_s3', 'cus_s3', 'active', '[{"id": "si_s3", "price": "price_team", "product": "prod_team"}]'
      )
    )
  ) as r
\gset
select is((tests.stripe_license('sub_s3')).seats, 3, 'seats are at least the policy''s max_users');

-- 2. An unmapped price parks the event; the mapping applies it.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_u1', 'cus_u1', 'active', '[{"id": "si_u1", "price": "price_new", "product": "prod_new"}]'
      ),
      0, 'evt_u1'
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) - 'id',
  '{"outcome": "parked", "detail": "no license policy is mapped to price_new", "refetch": null, "licenses": [],
    "subscription_id": "sub_u1", "stripe_event_id": "evt_u1"}'::jsonb,
  'a subscription whose only item is unmapped is parked'
);
select is(tests.stripe_license_count('sub_u1'), 0, '... and gets no license');
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_u1', 'cus_u1', 'active', '[{"id": "si_u1", "price": "price_new", "product": "prod_new", "quantity": 2}]'
      ),
      10, 'evt_u2'
    )
  ) as r
\gset
select is((:'r'::jsonb) ->> 'outcome', 'parked', 'a later update of it is parked too');
select from tests.stripe_map('A', 'price_new', null, 'pro');
select from tests.act_as_definer(tests.account_id('A'));
select is(
  private.stripe_sync_mapping(tests.account_id('A'), 'price_new', null), 2,
  'mapping the price re-applies the subscription and counts the two parked events'
);
select from tests.clear_context();
select is(
  tests.stripe_state('sub_u1'),
  '{"status": "active", "effective_status": "active", "policy": "pro", "seats": 2, "expires_at": null,
    "paid_through": null, "grace_ends_at": null, "disputed_at": null}'::jsonb,
  'the license appears, from the newest snapshot'
);
select results_eq(
  $$select outcome, detail from lic.stripe_events where stripe_event_id in ('evt_u1', 'evt_u2') order by id$$,
  $$values ('applied', 'applied when price_new was mapped'), ('applied', 'applied when price_new was mapped')$$,
  'the parked ledger rows are marked applied'
);

-- 3. A duplicate event id does nothing.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_s1', 'cus_s1', 'active',
        '[{"id": "si_s1", "price": "price_basic", "product": "prod_suite", "quantity": 3}]'
      ),
      0, 'evt_s1'
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) - 'id',
  '{"outcome": "duplicate", "detail": "already recorded (applied)", "refetch": null, "licenses": [],
    "subscription_id": "sub_s1", "stripe_event_id": "evt_s1"}'::jsonb,
  'the same event id again answers duplicate'
);
select is(
  (
    select count(*)::integer from lic.stripe_events
    where stripe_event_id = 'evt_s1'
  ),
  1,
  '... is recorded once'
);
select is(tests.stripe_license_count('sub_s1'), 1, '... makes no second license');
select is(
  tests.event_count('license.created', '{"stripe_subscription_id": "sub_s1"}'), 1, '... and emits nothing'
);

-- 4. Stale, terminal and incomplete subscriptions.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_st', 'cus_st', 'active', '[{"id": "si_st", "price": "price_seat", "quantity": 2}]'
      ),
      100
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_st', 'cus_st', 'incomplete', '[{"id": "si_st", "price": "price_seat", "quantity": 1}]'
      ),
      50
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) ->> 'outcome', 'stale', 'a created (incomplete) older than the updated (active) held is stale'
);
select is(
  (select row(l.status, l.seats)::text from tests.stripe_license('sub_st') as l), '(active,2)',
  '... and changes nothing'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_t', 'cus_t', 'active', '[{"id": "si_t", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.deleted',
      tests.stripe_subscription('sub_t', 'cus_t', 'canceled', '[{"id": "si_t", "price": "price_basic"}]'),
      200
    )
  ) as r
\gset
select is(
  (select row(l.status, l.effective_status, l.canceled_at is not null)::text from tests.stripe_license('sub_t') as l),
  '(canceled,canceled,t)',
  'deleted cancels the license'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_t', 'cus_t', 'active', '[{"id": "si_t", "price": "price_basic"}]'),
      100
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) ->> 'detail', 'the subscription already ended (canceled)',
  'a late updated (active) after deleted is stale'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_t', 'cus_t', 'active', '[{"id": "si_t", "price": "price_basic"}]'),
      300
    )
  ) as r
\gset
select is((:'r'::jsonb) ->> 'outcome', 'stale', '... and so is a newer one: canceled is terminal');
select is(
  (
    select row(l.status, tests.event_count('license.canceled', jsonb_build_object('id', l.id)))::text
    from tests.stripe_license('sub_t') as l
  ),
  '(canceled,1)',
  'the license stays canceled, canceled once'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_i', 'cus_i', 'incomplete', '[{"id": "si_i", "price": "price_basic"}]')
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', tests.stripe_license_count('sub_i'))::text, '(applied,0)',
  'an incomplete subscription is applied and gets no license yet'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_i', 'cus_i', 'active', '[{"id": "si_i", "price": "price_basic"}]'),
      100
    )
  ) as r
\gset
select is((tests.stripe_license('sub_i')).status, 'active', '... and gets it once active');

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_ie', 'cus_ie', 'incomplete', '[{"id": "si_ie", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_ie', 'cus_ie', 'incomplete_expired', '[{"id": "si_ie", "price": "price_basic"}]'),
      100
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_ie', 'cus_ie', 'active', '[{"id": "si_ie", "price": "price_basic"}]'),
      200
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', tests.stripe_license_count('sub_ie'))::text, '(stale,0)',
  'incomplete_expired is terminal: a later active is stale and no license is ever made'
);

-- 5. A same-second tie with a different state asks for a refetch.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_tie', 'cus_tie', 'active', '[{"id": "si_tie", "price": "price_seat", "quantity": 1}]'
      )
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.trial_will_end',
      tests.stripe_subscription(
        'sub_tie', 'cus_tie', 'active', '[{"id": "si_tie", "price": "price_seat", "quantity": 1}]'
      )
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) ->> 'detail', 'the same state as already applied',
  'a same-second event with the same state is applied as is'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_tie', 'cus_tie', 'active', '[{"id": "si_tie", "price": "price_seat", "quantity": 2}]'
      ),
      0, 'evt_tie'
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) -> 'refetch', '{"object": "subscription", "id": "sub_tie"}'::jsonb,
  'a same-second event with another state names the subscription to refetch'
);
select is(
  row(tests.stripe_outcome('A', 'evt_tie'), (tests.stripe_license('sub_tie')).seats)::text, '(needs_refetch,1)',
  '... is recorded needs_refetch and changes nothing'
);
select
  tests.stripe_refetch(
    'A', 'evt_tie',
    tests.stripe_subscription(
      'sub_tie', 'cus_tie', 'active', '[{"id": "si_tie", "price": "price_seat", "quantity": 2}]'
    )
  ) as r
\gset
select is((:'r'::jsonb) ->> 'outcome', 'applied', 'service.apply_stripe_refetch applies the fetched snapshot');
select is(
  (
    select row(e.outcome, e.refetched_at is not null)::text from lic.stripe_events as e
    where e.stripe_event_id = 'evt_tie'
  ),
  '(applied,t)',
  '... on the event''s ledger row, with refetched_at'
);
select is((tests.stripe_license('sub_tie')).seats, 2, '... and the license follows it');
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_tie', 'cus_tie', 'active', '[{"id": "si_tie", "price": "price_seat", "quantity": 5}]'
      ),
      3000
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) ->> 'outcome', 'stale', 'an event created before the fetch is stale: the snapshot counts as of then'
);

-- 6. A truncated item list is not read as removed items.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_hm', 'cus_hm', 'active',
        '[{"id": "si_hm1", "price": "price_basic"}, {"id": "si_hm2", "price": "price_pro"}]'
      )
    )
  ) as r
\gset
select is(tests.stripe_license_count('sub_hm'), 2, 'two mapped items give two licenses');
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      jsonb_set(
        tests.stripe_subscription('sub_hm', 'cus_hm', 'active', '[{"id": "si_hm1", "price": "price_basic"}]'),
        '{items,has_more}', 'true'
      ),
      100
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (:'r'::jsonb) -> 'refetch')::text,
  row('needs_refetch', '{"object": "subscription", "id": "sub_hm"}'::jsonb)::text,
  'items.has_more asks for the whole subscription'
);
select results_eq(
  $$select status from lic.licenses where stripe_subscription_id = 'sub_hm' order by id$$,
  $$values ('active'), ('active')$$,
  '... and cancels no license'
);

-- 7. Paid invoices: paid_through is the max line period end over paid
-- invoices, set once per invoice whichever events say it.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_inv', 'cus_inv', 'active', '[{"id": "si_inv", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid', tests.stripe_invoice('in_inv1', 'sub_inv', 'cus_inv', 1, '{1296000, 2592000}'), 2
    )
  ) as r
\gset
select is(
  (tests.stripe_license('sub_inv')).paid_through, tests.stripe_time(2592000),
  'invoice.paid sets paid_through to the latest end of its lines'' periods'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.payment_succeeded', tests.stripe_invoice('in_inv1', 'sub_inv', 'cus_inv', 1, '{1296000, 2592000}'), 2
    )
  ) as r
\gset
select is(
  row(
    (tests.stripe_license('sub_inv')).paid_through,
    tests.event_count('license.updated', jsonb_build_object('id', (tests.stripe_license('sub_inv')).id))
  )::text,
  row(tests.stripe_time(2592000), 1)::text,
  'invoice.payment_succeeded for the same invoice changes nothing more (one license.updated)'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event('invoice.paid', tests.stripe_invoice('in_inv2', 'sub_inv', 'cus_inv', 1000, '{5184000}'), 1000)
  ) as r
\gset
select is(
  (tests.stripe_license('sub_inv')).paid_through, tests.stripe_time(5184000), 'the renewal''s payment extends it'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event('invoice.paid', tests.stripe_invoice('in_inv1', 'sub_inv', 'cus_inv', 1, '{2592000}'), 2000)
  ) as r
\gset
select is(
  (tests.stripe_license('sub_inv')).paid_through, tests.stripe_time(5184000),
  'a redelivered payment of an earlier period never lowers it'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_trial', 'cus_trial', 'trialing', '[{"id": "si_trial", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice(
        'in_trial', 'sub_trial', 'cus_trial', 1, amount_paid => 0, extra => '{"billing_reason": "subscription_create"}'
      ),
      1
    )
  ) as r
\gset
select is(
  (select row(l.status, l.paid_through)::text from tests.stripe_license('sub_trial') as l), '(active,)',
  'a trial is active, and its $0 invoice pays for nothing: paid_through stays null'
);

-- 8. Dunning: a failure of the latest invoice, a past_due, unpaid or paused
-- subscription.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_dun', 'cus_dun', 'active', '[{"id": "si_dun", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A', tests.stripe_event('invoice.paid', tests.stripe_invoice('in_dun1', 'sub_dun', 'cus_dun', 1), 1)
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.payment_failed', tests.stripe_invoice('in_dun2', 'sub_dun', 'cus_dun', 500, '{5184000}'), 500
    )
  ) as r
\gset
select is(
  tests.stripe_state('sub_dun'),
  jsonb_build_object(
    'status', 'past_due', 'effective_status', 'past_due', 'policy', 'basic', 'seats', 1, 'expires_at', null,
    'paid_through', tests.stripe_time(2592000), 'grace_ends_at', tests.stripe_time(500) + interval '7 days',
    'disputed_at', null
  ),
  'a failure of the latest invoice makes the license past_due until the failure plus the policy''s grace period'
);
select is(
  tests.event_count('license.past_due', jsonb_build_object('id', (tests.stripe_license('sub_dun')).id)), 1,
  '... and emits license.past_due'
);
select from tests.remember_secret('dun key', (tests.stripe_license('sub_dun')).key);
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.validate_license(tests.secret('dun key'))).code, 'PAYMENT_GRACE', 'it validates within its grace period'
);
select from tests.clear_context();
select
  tests.stripe_apply(
    'A',
    tests.stripe_event('invoice.paid', tests.stripe_invoice('in_dun2', 'sub_dun', 'cus_dun', 500, '{5184000}'), 800)
  ) as r
\gset
select is(
  (select row(l.status, l.grace_ends_at, l.paid_through)::text from tests.stripe_license('sub_dun') as l),
  row('active', null::timestamptz, tests.stripe_time(5184000))::text,
  'paying that invoice makes it active again'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.payment_failed', tests.stripe_invoice('in_dun2', 'sub_dun', 'cus_dun', 500, '{5184000}'), 600
    )
  ) as r
\gset
select is((tests.stripe_license('sub_dun')).status, 'active', 'a late earlier failure of it does not downgrade it');

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_pd', 'cus_pd', 'active', '[{"id": "si_pd", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_pd', 'cus_pd', 'past_due', '[{"id": "si_pd", "price": "price_basic"}]'),
      100
    )
  ) as r
\gset
select is(
  (select row(l.status, l.grace_ends_at)::text from tests.stripe_license('sub_pd') as l),
  row('past_due', tests.stripe_time(100) + interval '7 days')::text,
  'a past_due subscription makes the license past_due'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_pd', 'cus_pd', 'unpaid', '[{"id": "si_pd", "price": "price_basic"}]'),
      200
    )
  ) as r
\gset
select is(
  (select row(l.status, l.suspended_reason)::text from tests.stripe_license('sub_pd') as l),
  '(suspended,"the Stripe subscription is unpaid")',
  'unpaid suspends it'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_pd', 'cus_pd', 'active', '[{"id": "si_pd", "price": "price_basic"}]'),
      300
    )
  ) as r
\gset
select is(
  (
    select row(l.status, tests.event_count('license.reinstated', jsonb_build_object('id', l.id)))::text
    from tests.stripe_license('sub_pd') as l
  ),
  '(active,1)',
  'active again reinstates it'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.paused',
      tests.stripe_subscription('sub_pd', 'cus_pd', 'paused', '[{"id": "si_pd", "price": "price_basic"}]'),
      400
    )
  ) as r
\gset
select is((tests.stripe_license('sub_pd')).status, 'suspended', 'paused suspends it');
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.resumed',
      tests.stripe_subscription('sub_pd', 'cus_pd', 'active', '[{"id": "si_pd", "price": "price_basic"}]'),
      500
    )
  ) as r
\gset
select is((tests.stripe_license('sub_pd')).status, 'active', 'resumed (active) makes it active');

-- 9. The grace sweep.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_od', 'cus_od', 'active', '[{"id": "si_od", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A', tests.stripe_event('invoice.payment_failed', tests.stripe_invoice('in_od', 'sub_od', 'cus_od', 10), 10)
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_od2', 'cus_od2', 'active', '[{"id": "si_od2", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A', tests.stripe_event('invoice.payment_failed', tests.stripe_invoice('in_od2', 'sub_od2', 'cus_od2', 3000), 3000)
  ) as r
\gset
select tests.stripe_time(10) + interval '7 days' as sweep_at \gset
select is(
  (
    select private.effective_status(l.status, l.expires_at, l.grace_ends_at, :'sweep_at')
    from tests.stripe_license('sub_od') as l
  ),
  'overdue',
  'once its grace period ends the license is overdue'
);
-- worker.suspend_overdue_licenses reads the clock; its helper, run as the
-- sweep runs (lic_maint), takes the instant.
set local role lic_maint;
select is(
  private.suspend_overdue_licenses(at => :'sweep_at', batch_size => 1000), 1,
  'the overdue sweep suspends the past_due license whose grace period ended, and counts it'
);
set local role lic_worker;
select throws_ok(
  'select worker.suspend_overdue_licenses(batch_size => 0)', 'LINVL', 'batch_size must be at least 1',
  'a batch size below 1 is refused'
);
select from tests.clear_context();
select is(
  (
    select
      row(
        l.status, l.suspended_reason, tests.event_count('license.suspended', jsonb_build_object('id', l.id))
      )::text
    from tests.stripe_license('sub_od') as l
  ),
  '(suspended,"the payment grace period ended",1)',
  '... and emits license.suspended'
);
select is((tests.stripe_license('sub_od2')).status, 'past_due', 'one whose grace period has not ended stays past_due');
select
  tests.stripe_apply(
    'A', tests.stripe_event('invoice.payment_failed', tests.stripe_invoice('in_od', 'sub_od', 'cus_od', 10), 20)
  ) as r
\gset
select is(
  (tests.stripe_license('sub_od')).status, 'suspended',
  'a later Stripe event that leaves the target past_due leaves the sweep''s suspension'
);
select
  tests.stripe_apply(
    'A', tests.stripe_event('invoice.paid', tests.stripe_invoice('in_od', 'sub_od', 'cus_od', 10), 30)
  ) as r
\gset
select is(
  (
    select row(l.status, tests.event_count('license.reinstated', jsonb_build_object('id', l.id)))::text
    from tests.stripe_license('sub_od') as l
  ),
  '(active,1)',
  'paying the invoice reinstates it'
);

-- 10. A scheduled cancellation sets expires_at, in both payload generations.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_c', 'cus_c', 'active', '[{"id": "si_c", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_c', 'cus_c', 'active', '[{"id": "si_c", "price": "price_basic"}]',
        extra => '{"cancel_at_period_end": true}'
      ),
      100
    )
  ) as r
\gset
select is(
  (select row(l.status, l.expires_at)::text from tests.stripe_license('sub_c') as l),
  row('active', tests.stripe_time(2592000))::text,
  'cancel_at_period_end (basil): expires at the item''s current_period_end, still active'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_c', 'cus_c', 'active', '[{"id": "si_c", "price": "price_basic"}]'),
      200
    )
  ) as r
\gset
select is((tests.stripe_license('sub_c')).expires_at, null, 'un-canceling clears expires_at');
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_c', 'cus_c', 'active', '[{"id": "si_c", "price": "price_basic"}]',
        extra => jsonb_build_object('cancel_at', tests.stripe_epoch(1296000))
      ),
      300
    )
  ) as r
\gset
select is(
  (tests.stripe_license('sub_c')).expires_at, tests.stripe_time(1296000),
  'cancel_at (with cancel_at_period_end false) sets expires_at'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_cp', 'cus_cp', 'active', '[{"id": "si_cp", "price": "price_basic"}]', 2592005, false,
        '{"cancel_at_period_end": true}'
      ),
      0, null, false, '2020-08-27'
    )
  ) as r
\gset
select is(
  (tests.stripe_license('sub_cp')).expires_at, tests.stripe_time(2592005),
  'cancel_at_period_end (pre-basil): expires at the subscription''s current_period_end'
);

-- 11. Quantity is seats: validation and seat adds follow it.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_q', 'cus_q', 'active', '[{"id": "si_q", "price": "price_seat", "quantity": 3}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_q', 'cus_q', 'active', '[{"id": "si_q", "price": "price_seat", "quantity": 2}]'),
      100
    )
  ) as r
\gset
select is((tests.stripe_license('sub_q')).seats, 2, 'a quantity change changes seats');
select from tests.remember('q', (tests.stripe_license('sub_q')).id);
select from tests.remember_secret('q key', (tests.stripe_license('sub_q')).key);
select from tests.act_as(tests.secret_key('A'));
select lives_ok(
  $$select api.add_license_user(tests.id('q'), email => 'q2@example.com')$$,
  'a second user fits two seats (the owner holds one)'
);
select throws_ok(
  $$select api.add_license_user(tests.id('q'), email => 'q3@example.com')$$, 'LSTAT',
  'the license allows 2 users; remove one first',
  'a third is refused'
);
select is((api.validate_license(tests.secret('q key'))).code, 'VALID', 'two users on two seats validate');
select from tests.clear_context();
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_q', 'cus_q', 'active', '[{"id": "si_q", "price": "price_seat", "quantity": 1}]'),
      200
    )
  ) as r
\gset
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.validate_license(tests.secret('q key'))).code, 'TOO_MANY_USERS',
  'after a seat downgrade, two users on one seat: TOO_MANY_USERS'
);
select from tests.clear_context();

-- 12. Plan switches keep the license; added and removed items.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_ps', 'cus_ps', 'active', '[{"id": "si_ps1", "price": "price_basic"}]')
    )
  ) as r
\gset
select from tests.remember('ps', (tests.stripe_license('sub_ps')).id);
select from tests.remember_secret('ps key', (tests.stripe_license('sub_ps')).key);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_ps', 'cus_ps', 'active', '[{"id": "si_ps1", "price": "price_pro"}]'),
      100
    )
  ) as r
\gset
select is(
  (select row(l.id, l.key, l.policy_code)::text from tests.stripe_license('sub_ps') as l),
  row(tests.id('ps'), tests.secret('ps key'), 'pro')::text,
  'a new price on the same item changes the policy of the same license (same id and key)'
);
select is(
  tests.event_count('license.policy_changed', jsonb_build_object('id', tests.id('ps'))), 1,
  '... and emits license.policy_changed'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_ps', 'cus_ps', 'active', '[{"id": "si_ps2", "price": "price_basic"}]'),
      200
    )
  ) as r
\gset
select is(
  (
    select row(tests.stripe_license_count('sub_ps'), l.id, l.status, l.policy_code)::text
    from tests.stripe_license('sub_ps') as l
  ),
  row(1, tests.id('ps'), 'active', 'basic')::text,
  'an item replaced by a new one (a new si_) hands its license over'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_ps', 'cus_ps', 'active',
        '[{"id": "si_ps2", "price": "price_basic"}, {"id": "si_ps3", "price": "price_other", "product": "prod_suite"}]'
      ),
      300
    )
  ) as r
\gset
select results_eq(
  $$
    select l.id = tests.id('ps'), l.status, p.code
    from lic.licenses as l inner join lic.license_policies as p on l.policy_id = p.id
    where l.stripe_subscription_id = 'sub_ps' order by l.id
  $$,
  $$values (true, 'active', 'basic'), (false, 'active', 'addon')$$,
  'a second item adds a second license'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_ps', 'cus_ps', 'active', '[{"id": "si_ps2", "price": "price_basic"}]'),
      400
    )
  ) as r
\gset
select results_eq(
  $$
    select l.status, l.suspended_reason from lic.licenses as l
    where l.stripe_subscription_id = 'sub_ps' order by l.id
  $$,
  $$values ('active', null), ('canceled', 'the item left the Stripe subscription')$$,
  'removing an item cancels its license only'
);

-- A plan switch to a price not mapped yet: the item is still there, so its
-- license should wait for the mapping (docs/stripe.md: parked until the
-- mapping arrives), not be canceled for good.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_pu', 'cus_pu', 'active', '[{"id": "si_pu", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription('sub_pu', 'cus_pu', 'active', '[{"id": "si_pu", "price": "price_later"}]'),
      100
    )
  ) as r
\gset
select from tests.stripe_map('A', 'price_later', null, 'pro');
select from tests.act_as_definer(tests.account_id('A'));
select from private.stripe_sync_mapping(tests.account_id('A'), 'price_later', null);
select from tests.clear_context();
select is(
  (select row(l.status, l.policy_code)::text from tests.stripe_license('sub_pu') as l),
  '(active,pro)',
  'switching an item to a price mapped only later keeps its license, which takes the new policy once mapped'
);

-- 13. Refunds.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_rf', 'cus_rf', 'active', '[{"id": "si_rf", "price": "price_basic"}]', basil => false
      ),
      0, null, false, '2020-08-27'
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice(
        'in_rf', 'sub_rf', 'cus_rf', 10, basil => false, extra => '{"charge": "ch_rf", "payment_intent": "pi_rf"}'
      ),
      10, null, false, '2020-08-27'
    )
  ) as r
\gset
select is(
  (tests.stripe_license('sub_rf')).paid_through, tests.stripe_time(2592000),
  'a pre-basil invoice (invoice.subscription) sets paid_through'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.refunded',
      '{"id": "ch_rf", "object": "charge", "amount": 1500, "amount_refunded": 500, "refunded": false,
        "invoice": "in_rf", "payment_intent": "pi_rf", "customer": "cus_rf"}',
      20, null, false, '2020-08-27'
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (tests.stripe_license('sub_rf')).status)::text, '(applied,active)',
  'a partial refund is recorded and changes nothing'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.refunded',
      '{"id": "ch_rf", "object": "charge", "amount": 1500, "amount_refunded": 1500, "refunded": true,
        "invoice": "in_rf", "payment_intent": "pi_rf", "customer": "cus_rf"}',
      30, null, false, '2020-08-27'
    )
  ) as r
\gset
select is(
  (select row(l.status, l.suspended_reason)::text from tests.stripe_license('sub_rf') as l),
  '(suspended,"the payment was refunded")',
  'a full refund of the latest paid invoice''s charge suspends (refund_action suspend)'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_rn', 'cus_rn', 'active', '[{"id": "si_rn", "price": "price_lenient"}]', basil => false
      )
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice('in_rn', 'sub_rn', 'cus_rn', 10, basil => false, extra => '{"charge": "ch_rn"}'),
      10
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.refunded',
      '{"id": "ch_rn", "object": "charge", "amount": 1500, "amount_refunded": 1500, "refunded": true,
        "invoice": "in_rn", "customer": "cus_rn"}',
      20
    )
  ) as r
\gset
select is((tests.stripe_license('sub_rn')).status, 'active', 'with refund_action none it stays active');

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_ro', 'cus_ro', 'active', '[{"id": "si_ro", "price": "price_basic"}]', basil => false
      )
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice('in_ro1', 'sub_ro', 'cus_ro', 10, basil => false, extra => '{"charge": "ch_ro1"}'),
      10
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice(
        'in_ro2', 'sub_ro', 'cus_ro', 1000, '{5184000}', basil => false, extra => '{"charge": "ch_ro2"}'
      ),
      1000
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.refunded',
      '{"id": "ch_ro1", "object": "charge", "amount": 1500, "amount_refunded": 1500, "refunded": true,
        "invoice": "in_ro1", "customer": "cus_ro"}',
      2000
    )
  ) as r
\gset
select is(
  (tests.stripe_license('sub_ro')).status, 'active',
  'a full refund of an earlier invoice (not the latest paid) does not suspend'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_rb', 'cus_rb', 'active', '[{"id": "si_rb", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A', tests.stripe_event('invoice.paid', tests.stripe_invoice('in_rb', 'sub_rb', 'cus_rb', 10), 10)
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.refunded',
      '{"id": "ch_rb", "object": "charge", "amount": 1500, "amount_refunded": 1500, "refunded": true,
        "payment_intent": "pi_rb", "customer": "cus_rb"}',
      20, 'evt_rb'
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (:'r'::jsonb) -> 'refetch')::text,
  row('needs_refetch', '{"object": "invoice_payment", "payment_intent": "pi_rb"}'::jsonb)::text,
  'a basil charge names only its payment intent: the invoice payment is asked for'
);
select is((tests.stripe_license('sub_rb')).status, 'active', '... and nothing changes yet');
select
  tests.stripe_refetch(
    'A', 'evt_rb',
    '{"object": "invoice_payment", "invoice": "in_rb",
      "payment": {"type": "payment_intent", "payment_intent": "pi_rb"}}'
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', tests.stripe_outcome('A', 'evt_rb'), (tests.stripe_license('sub_rb')).status)::text,
  '(applied,applied,suspended)',
  'the fetched invoice payment links the charge to its invoice: the full refund suspends'
);

-- 14. Disputes.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_dp', 'cus_dp', 'active', '[{"id": "si_dp", "price": "price_basic"}]', basil => false
      )
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice('in_dp', 'sub_dp', 'cus_dp', 10, basil => false, extra => '{"charge": "ch_dp"}'),
      10
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.dispute.created',
      jsonb_build_object(
        'id', 'dp_1', 'object', 'dispute', 'charge', 'ch_dp', 'status', 'needs_response',
        'created', tests.stripe_epoch(20)
      ),
      20
    )
  ) as r
\gset
select is(
  (select row(l.status, l.disputed_at)::text from tests.stripe_license('sub_dp') as l),
  row('active', tests.stripe_time(20))::text,
  'an open dispute sets disputed_at'
);
select from tests.remember_secret('dp key', (tests.stripe_license('sub_dp')).key);
select from tests.act_as(tests.secret_key('A'));
select is((api.validate_license(tests.secret('dp key'))).code, 'DISPUTED', '... and validation answers DISPUTED');
select from tests.clear_context();
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.dispute.closed',
      jsonb_build_object(
        'id', 'dp_1', 'object', 'dispute', 'charge', 'ch_dp', 'status', 'won', 'created', tests.stripe_epoch(20)
      ),
      30
    )
  ) as r
\gset
select is((tests.stripe_license('sub_dp')).disputed_at, null, 'a won dispute lifts it');
select from tests.act_as(tests.secret_key('A'));
select is((api.validate_license(tests.secret('dp key'))).code, 'VALID', '... and the license validates');
select from tests.clear_context();

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_dl', 'cus_dl', 'active', '[{"id": "si_dl", "price": "price_basic"}]', basil => false
      )
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice('in_dl', 'sub_dl', 'cus_dl', 10, basil => false, extra => '{"charge": "ch_dl"}'),
      10
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.dispute.created',
      jsonb_build_object('id', 'dp_2', 'object', 'dispute', 'charge', 'ch_dl', 'status', 'needs_response'),
      20
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.dispute.closed',
      jsonb_build_object('id', 'dp_2', 'object', 'dispute', 'charge', 'ch_dl', 'status', 'lost'),
      30
    )
  ) as r
\gset
select is(
  (select row(l.status, l.suspended_reason, l.disputed_at)::text from tests.stripe_license('sub_dl') as l),
  '(suspended,"the payment''s dispute was lost",)',
  'a lost dispute suspends'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_dw', 'cus_dw', 'active', '[{"id": "si_dw", "price": "price_basic"}]', basil => false
      )
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice('in_dw', 'sub_dw', 'cus_dw', 10, basil => false, extra => '{"charge": "ch_dw"}'),
      10
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.dispute.created',
      jsonb_build_object('id', 'dp_3', 'object', 'dispute', 'charge', 'ch_dw', 'status', 'warning_needs_response'),
      20
    )
  ) as r
\gset
select is(
  (select row(l.status, l.disputed_at)::text from tests.stripe_license('sub_dw') as l), '(active,)',
  'an inquiry (warning_needs_response) changes nothing'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription(
        'sub_dc', 'cus_dc', 'active', '[{"id": "si_dc", "price": "price_basic"}]', basil => false
      )
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'invoice.paid',
      tests.stripe_invoice('in_dc', 'sub_dc', 'cus_dc', 10, basil => false, extra => '{"charge": "ch_dc"}'),
      10
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.dispute.closed',
      jsonb_build_object('id', 'dp_4', 'object', 'dispute', 'charge', 'ch_dc', 'status', 'won'),
      30
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.dispute.created',
      jsonb_build_object('id', 'dp_4', 'object', 'dispute', 'charge', 'ch_dc', 'status', 'needs_response'),
      20
    )
  ) as r
\gset
select is(
  (
    select row(l.status, l.disputed_at, d.status)::text
    from tests.stripe_license('sub_dc') as l, lic.stripe_disputes as d
    where d.dispute_id = 'dp_4'
  ),
  '(active,,won)',
  'closed (won) arriving before created is final: the dispute never reopens'
);

-- 15. Checkout in subscription mode links the tenant's user, in any order.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_ck1", "object": "checkout.session", "mode": "subscription", "payment_status": "paid",
        "customer": "cus_ck1", "subscription": "sub_ck1", "client_reference_id": "user-ck1",
        "customer_details": {"email": "ck1@example.com"}, "payment_intent": null, "metadata": {}}',
      5
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (:'r'::jsonb) -> 'refetch')::text,
  row('needs_refetch', '{"object": "subscription", "id": "sub_ck1"}'::jsonb)::text,
  'checkout.session.completed before its subscription asks for the subscription'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_ck1', 'cus_ck1', 'active', '[{"id": "si_ck1", "price": "price_basic"}]'),
      5
    )
  ) as r
\gset
select is(
  (
    select row(c.external_id, c.email, c.stripe_customer_id, l.status)::text
    from tests.stripe_license('sub_ck1') as l
    inner join lic.customers as c on l.customer_id = c.id
  ),
  '(user-ck1,ck1@example.com,cus_ck1,active)',
  '... then the subscription''s license is the checkout''s user''s (client_reference_id, email)'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_ck2', 'cus_ck2', 'active', '[{"id": "si_ck2", "price": "price_basic"}]')
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_ck2", "object": "checkout.session", "mode": "subscription", "payment_status": "paid",
        "customer": "cus_ck2", "subscription": "sub_ck2", "client_reference_id": "user-ck2",
        "customer_details": {"email": "ck2@example.com"}}',
      5
    )
  ) as r
\gset
select is(
  (
    select
      row(
        (:'r'::jsonb) ->> 'outcome', count(*), min(c.external_id), min(c.email), bool_and(c.id = l.customer_id)
      )::text
    from tests.stripe_license('sub_ck2') as l, lic.customers as c
    where c.stripe_customer_id = 'cus_ck2'
  ),
  '(applied,1,user-ck2,ck2@example.com,t)',
  'checkout after the subscription fills in the same customer''s external_id and email'
);

select from tests.act_as(tests.secret_key('A'));
select from tests.remember('ck3 customer', (api.create_customer(external_id => 'user-ck3')).id);
select from tests.remember('ck4 customer', (api.create_customer(external_id => 'user-ck4')).id);
select from tests.clear_context();
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_ck3", "object": "checkout.session", "mode": "subscription", "payment_status": "paid",
        "customer": "cus_ck3", "subscription": "sub_ck3", "client_reference_id": "user-ck3",
        "customer_details": {"email": "ck3@example.com"}}',
      5
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_ck3', 'cus_ck3', 'active', '[{"id": "si_ck3", "price": "price_basic"}]'),
      5
    )
  ) as r
\gset
select is(
  (
    select row(l.customer_id = tests.id('ck3 customer'), c.stripe_customer_id, c.email)::text
    from tests.stripe_license('sub_ck3') as l inner join lic.customers as c on l.customer_id = c.id
  ),
  '(t,cus_ck3,ck3@example.com)',
  'a customer the tenant made with that external_id is linked, not duplicated (checkout first)'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_ck4', 'cus_ck4', 'active', '[{"id": "si_ck4", "price": "price_basic"}]')
    )
  ) as r
\gset
select from tests.remember('ck4 made', (tests.stripe_license('sub_ck4')).customer_id);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_ck4", "object": "checkout.session", "mode": "subscription", "payment_status": "paid",
        "customer": "cus_ck4", "subscription": "sub_ck4", "client_reference_id": "user-ck4",
        "customer_details": {"email": "ck4@example.com"}}',
      5
    )
  ) as r
\gset
select is(
  (
    select row(l.customer_id = tests.id('ck4 customer'), c.stripe_customer_id, c.email)::text
    from tests.stripe_license('sub_ck4') as l inner join lic.customers as c on l.customer_id = c.id
  ),
  '(t,cus_ck4,ck4@example.com)',
  'subscription first: the customer made from it is folded into the tenant''s'
);
select is(
  row(
    (
      select count(*) from lic.customers
      where id = tests.id('ck4 made')
    ),
    tests.event_count('customer.deleted', jsonb_build_object('id', tests.id('ck4 made')))
  )::text,
  '(0,1)',
  '... which is deleted (customer.deleted)'
);

-- 16. Checkout in payment mode: one license once paid.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      jsonb_build_object(
        'id', 'cs_pm1', 'object', 'checkout.session', 'mode', 'payment', 'payment_status', 'paid',
        'customer', 'cus_pm1', 'payment_intent', 'pi_pm1', 'metadata', '{"licentric_policy": "oneoff"}'::jsonb,
        'created', tests.stripe_epoch(0)
      )
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) -> 'licenses', jsonb_build_array((tests.stripe_checkout_license('cs_pm1')).id),
  'a paid payment-mode checkout gives a license'
);
select is(
  (select row(l.status, l.policy_code, l.expires_at)::text from tests.stripe_checkout_license('cs_pm1') as l),
  row('active', 'oneoff', tests.stripe_time(0) + interval '365 days')::text,
  '... on the policy its metadata.licentric_policy names, for the policy''s duration'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'charge.refunded',
      '{"id": "ch_pm1", "object": "charge", "amount": 1500, "amount_refunded": 1500, "refunded": true,
        "payment_intent": "pi_pm1", "customer": "cus_pm1"}',
      20
    )
  ) as r
\gset
select is(
  (tests.stripe_checkout_license('cs_pm1')).status, 'suspended', 'a full refund of the one-off purchase suspends it'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_pm2", "object": "checkout.session", "mode": "payment", "payment_status": "unpaid",
        "customer": "cus_pm2", "payment_intent": "pi_pm2", "metadata": {"licentric_policy": "oneoff"}}'
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'detail', (tests.stripe_checkout_license('cs_pm2')).id)::text,
  '("waiting for the payment to succeed",)',
  'an unpaid one gives none yet'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.async_payment_succeeded',
      '{"id": "cs_pm2", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
        "customer": "cus_pm2", "payment_intent": "pi_pm2", "metadata": {"licentric_policy": "oneoff"}}',
      10
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.async_payment_succeeded',
      '{"id": "cs_pm2", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
        "customer": "cus_pm2", "payment_intent": "pi_pm2", "metadata": {"licentric_policy": "oneoff"}}',
      11
    )
  ) as r
\gset
select is(
  (
    select row(l.status, tests.event_count('license.created', jsonb_build_object('id', l.id)))::text
    from tests.stripe_checkout_license('cs_pm2') as l
  ),
  '(active,1)',
  'async_payment_succeeded gives one license, however often it arrives'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_pm3", "object": "checkout.session", "mode": "payment", "payment_status": "unpaid",
        "customer": "cus_pm3", "payment_intent": "pi_pm3", "metadata": {"licentric_policy": "oneoff"}}'
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.async_payment_failed',
      '{"id": "cs_pm3", "object": "checkout.session", "mode": "payment", "payment_status": "unpaid",
        "customer": "cus_pm3", "payment_intent": "pi_pm3", "metadata": {"licentric_policy": "oneoff"}}',
      10
    )
  ) as r
\gset
select is(
  row(
    (:'r'::jsonb) ->> 'detail',
    (
      select c.license_id from lic.stripe_checkouts as c
      where c.session_id = 'cs_pm3'
    )
  )::text,
  '("the payment failed: no license",)',
  'async_payment_failed gives none'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_pm4", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
        "customer": "cus_pm4", "payment_intent": "pi_pm4", "metadata": {}}',
      0, 'evt_pm4'
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (:'r'::jsonb) -> 'refetch')::text,
  row('needs_refetch', '{"object": "checkout.session", "id": "cs_pm4"}'::jsonb)::text,
  'without policy metadata or line items the session is asked for'
);
select
  tests.stripe_refetch(
    'A', 'evt_pm4',
    '{"id": "cs_pm4", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
      "customer": "cus_pm4", "payment_intent": "pi_pm4", "metadata": {},
      "line_items": {"object": "list", "has_more": false,
        "data": [{"id": "li_1", "price": {"id": "price_basic", "product": "prod_suite"}, "quantity": 1}]}}'
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (tests.stripe_checkout_license('cs_pm4')).policy_code)::text, '(applied,basic)',
  '... and the fetched line items'' mapping gives the license'
);

select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'checkout.session.completed',
      '{"id": "cs_su", "object": "checkout.session", "mode": "setup", "customer": "cus_su"}'
    )
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (:'r'::jsonb) ->> 'detail')::text,
  '(ignored,"a setup-mode checkout gives no license")',
  'a setup-mode checkout is ignored'
);

-- 17. What is ignored, invalid or refused.
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_live', 'cus_live', 'active', '[{"id": "si_live", "price": "price_basic"}]'),
      0, null, true
    ),
    false
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', tests.stripe_license_count('sub_live'))::text, '(ignored,0)',
  'a live event verified by a test-mode secret is ignored'
);
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_acct', 'cus_acct', 'active', '[{"id": "si_acct", "price": "price_basic"}]')
    )
    || '{"account": "acct_x"}'
  ) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', tests.stripe_license_count('sub_acct'))::text, '(ignored,0)',
  'a connected account''s event is ignored'
);
select tests.stripe_apply('A', tests.stripe_event('invoice.finalized', '{"id": "in_fin", "object": "invoice"}')) as r
\gset
select is(
  row((:'r'::jsonb) ->> 'outcome', (:'r'::jsonb) ->> 'detail')::text,
  '(ignored,"Licentric does not act on invoice.finalized events")',
  'an event type Licentric does not act on is ignored'
);
select tests.stripe_state('sub_s1') as s1_state \gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.updated',
      tests.stripe_subscription(
        'sub_s1', 'cus_s1', 'some_new_status', '[{"id": "si_s1", "price": "price_basic", "quantity": 7}]'
      ),
      500, 'evt_s1_unknown'
    )
  ) as r
\gset
select is(
  row(tests.stripe_outcome('A', 'evt_s1_unknown'), tests.stripe_state('sub_s1'))::text,
  row('ignored', :'s1_state'::jsonb)::text,
  'an unknown subscription status is recorded ignored and changes nothing'
);
select is(
  (
    select row(s.status, s.observed_event_id)::text from lic.stripe_subscriptions as s
    where s.subscription_id = 'sub_s1'
  ),
  '(active,evt_s1)',
  '... not even the snapshot'
);
select
  tests.stripe_apply(
    'A', '{"object": "charge", "id": "evt_notevent", "type": "invoice.paid", "livemode": false, "data": {"object": {}}}'
  ) as r1,
  tests.stripe_apply('A', '[1, 2]') as r2
\gset
select is(
  row((:'r1'::jsonb) ->> 'outcome', (:'r2'::jsonb) ->> 'outcome')::text, '(invalid,invalid)',
  'a body whose object is not "event", or that is not a JSON object, is invalid'
);
select is(
  (
    select count(*)::integer from lic.stripe_events
    where account_id = tests.account_id('A') and outcome = 'invalid' and stripe_event_id is null
  ),
  2,
  '... and recorded'
);
-- A missing id, type or data.object makes the envelope check null, not
-- false: the event is recorded with no event id (so never a duplicate) and
-- processed.
select
  tests.stripe_apply(
    'A',
    jsonb_build_object(
      'object', 'event', 'type', 'customer.subscription.created', 'livemode', false, 'created', tests.stripe_epoch(),
      'data', jsonb_build_object(
        'object',
        tests.stripe_subscription('sub_noid', 'cus_noid', 'active', '[{"id": "si_noid", "price": "price_basic"}]')
      )
    )
  ) as r1,
  tests.stripe_apply(
    'A', '{"object": "event", "id": "evt_nodata", "type": "invoice.paid", "livemode": false, "data": {}}'
  ) as r2
\gset
select is(
  row((:'r1'::jsonb) ->> 'outcome', tests.stripe_license_count('sub_noid'))::text, '(invalid,0)',
  'an event with no id is invalid and applies nothing'
);
select is((:'r2'::jsonb) ->> 'outcome', 'invalid', 'an event with no data.object is invalid');
select tests.stripe_event('invoice.paid', '{}') as any_event \gset
set local role lic_web;
select throws_ok(
  format('select service.apply_stripe_event(%L, %L)', gen_random_uuid(), :'any_event'),
  'LNTFD', 'account not found', 'an unknown account is refused'
);
select throws_ok(
  format('select service.apply_stripe_refetch(%L, %L, %L)', tests.account_id('A'), 'evt_none', '{}'),
  'LNTFD', 'Stripe event not found', 'a refetch for an event never recorded is refused'
);
select from tests.clear_context();

-- 18. A full tenant plan fails the event; reprocessing applies it.
update lic.accounts set max_active_licenses = active_licenses
where account_id = tests.account_id('A');
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_full', 'cus_full', 'active', '[{"id": "si_full", "price": "price_basic"}]'),
      0, 'evt_full'
    )
  ) as r
\gset
select matches(
  (:'r'::jsonb) ->> 'outcome' || ': ' || ((:'r'::jsonb) ->> 'detail'), '^failed: the Free plan allows',
  'a full tenant plan fails the event with the LPLAN message'
);
select is(
  row(tests.stripe_outcome('A', 'evt_full'), tests.stripe_license_count('sub_full'))::text, '(failed,0)',
  '... recorded failed, with no license'
);
update lic.accounts set max_active_licenses = null
where account_id = tests.account_id('A');
select from tests.remember('evt_full', ((:'r'::jsonb) ->> 'id')::uuid);
select e.id as invalid_id from lic.stripe_events as e
where e.outcome = 'invalid'
order by e.id limit 1
\gset
select from tests.act_as(tests.secret_key('A'));
select is(
  (api.reprocess_stripe_event(tests.id('evt_full'))) ->> 'outcome', 'applied',
  'api.reprocess_stripe_event applies it once the plan has room'
);
select throws_ok(
  format('select api.reprocess_stripe_event(%L)', :'invalid_id'),
  'LSTAT', 'an invalid event cannot be reprocessed', 'an invalid event cannot be reprocessed'
);
select from tests.clear_context();
select is(
  row(tests.stripe_outcome('A', 'evt_full'), (tests.stripe_license('sub_full')).status)::text, '(applied,active)',
  '... the ledger row says applied and the license is active'
);

-- 19. Tenants stay apart.
select
  tests.stripe_apply(
    'B',
    tests.stripe_event(
      'customer.subscription.created',
      tests.stripe_subscription('sub_shared', 'cus_shared', 'active', '[{"id": "si_shared", "price": "price_basic"}]'),
      0, 'evt_shared'
    )
  ) as r
\gset
select
  tests.stripe_apply(
    'A',
    tests.stripe_event(
      'customer.subscription.deleted',
      tests.stripe_subscription(
        'sub_shared', 'cus_shared', 'canceled', '[{"id": "si_shared", "price": "price_basic"}]'
      ),
      100, 'evt_shared'
    )
  ) as r
\gset
select is(
  (:'r'::jsonb) ->> 'outcome', 'applied', 'an event id B recorded is not a duplicate for A'
);
select is(
  row(
    (tests.stripe_license('sub_shared', 1, 'B')).status,
    (
      select s.status from lic.stripe_subscriptions as s
      where s.account_id = tests.account_id('B')
    )
  )::text,
  '(active,active)',
  'A''s events for the same Stripe ids never touch B''s license or snapshot'
);
select from tests.act_as_definer(tests.account_id('B'));
select is(
  (
    select sum(tests.count_rows(t, tests.account_id('A')))::integer from unnest(array[
      'lic.stripe_events', 'lic.stripe_subscriptions', 'lic.stripe_subscription_licenses', 'lic.stripe_invoices',
      'lic.stripe_charges', 'lic.stripe_disputes', 'lic.stripe_checkouts', 'lic.stripe_mappings'
    ]::regclass[]) as t
  ),
  0,
  'in B''s context no Stripe row of A is visible'
);
select is(
  tests.count_rows('lic.stripe_events', tests.account_id('B')), 1::bigint, '... while B sees its own ledger'
);
select from tests.clear_context();
set local role lic_app;
select throws_ok('select from lic.stripe_events', '42501', null, 'lic_app cannot read the ledger directly');
select from tests.clear_context();

select * from finish();
rollback;
