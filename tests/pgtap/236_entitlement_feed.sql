-- Entitlement snapshots and the change feed (functions/59_entitlement_feed.sql):
-- the snapshot agrees with api.check_entitlement now and, through its
-- timelines, with private.entitlement_decision at every later instant; the
-- feed stamps, buries and pages. That a transaction committing late is not
-- skipped needs two connections: tests/python/test_entitlement_feed.py.
begin;
select plan(31);
\ir licensing_fixtures.sql

select from tests.create_account('A');
select from tests.create_account('B');
select from tests.fx_policy('A', 'pro');
select from tests.fx_policy('A', 'basic', duration => null);
select from tests.fx_entitlement('A', 'sso', array['pro']);
select from tests.fx_entitlement('A', 'api', array['pro', 'basic']);
select tests.fx_entitlement('A', 'extra') as extra \gset
select from tests.fx_policy('B', 'pro');
select from tests.fx_entitlement('B', 'sso', array['pro']);

-- One customer per situation: every status, grace, expiry, seats, overrides,
-- several licenses ending at different instants.
select tests.fx_customer('A', 'active') as c_active \gset
select from tests.fx_license('A', 'active', 'pro', customer_id => :'c_active');
select tests.fx_customer('A', 'grace') as c_grace \gset
select from tests.fx_license(
  'A', 'grace', 'pro', 'past_due', grace_ends_at => now() + interval '1 day',
  customer_id => :'c_grace'
);
select tests.fx_customer('A', 'grace-after-expiry') as c_grace2 \gset
select from tests.fx_license(
  'A', 'grace2', 'pro', 'past_due', now() + interval '1 hour',
  now() + interval '2 days', :'c_grace2'
);
select tests.fx_customer('A', 'overdue') as c_overdue \gset
select from tests.fx_license(
  'A', 'overdue', 'pro', 'past_due', grace_ends_at => now() - interval '1 day',
  customer_id => :'c_overdue'
);
select tests.fx_customer('A', 'suspended') as c_suspended \gset
select from tests.fx_license('A', 'suspended', 'pro', 'suspended', customer_id => :'c_suspended');
select tests.fx_customer('A', 'canceled') as c_canceled \gset
select from tests.fx_license('A', 'canceled', 'pro', 'canceled', customer_id => :'c_canceled');
select tests.fx_customer('A', 'expired') as c_expired \gset
select from tests.fx_license('A', 'expired', 'pro', 'expired', now() - interval '1 day', customer_id => :'c_expired');
select tests.fx_customer('A', 'lapsed') as c_lapsed \gset
select
from tests.fx_license('A', 'lapsed', 'pro', expires_at => now() - interval '1 minute', customer_id => :'c_lapsed');
select tests.fx_customer('A', 'perpetual') as c_perpetual \gset
select from tests.fx_license('A', 'perpetual', 'basic', expires_at => null, customer_id => :'c_perpetual');
select tests.fx_customer('A', 'two') as c_two \gset
select
from tests.fx_license('A', 'two basic', 'basic', expires_at => now() + interval '1 hour', customer_id => :'c_two');
select from tests.fx_license('A', 'two pro', 'pro', expires_at => now() + interval '2 hours', customer_id => :'c_two');
select tests.fx_customer('A', 'mixed') as c_mixed \gset
select from tests.fx_license('A', 'mixed basic', 'basic', expires_at => null, customer_id => :'c_mixed');
select
from tests.fx_license('A', 'mixed pro', 'pro', expires_at => now() + interval '1 hour', customer_id => :'c_mixed');
select tests.fx_customer('A', 'seat') as c_seat \gset
select from tests.fx_license('A', 'seat own', 'pro', 'suspended', customer_id => :'c_seat');
select from tests.fx_seat('active', :'c_seat');
select from tests.fx_seat('grace2', :'c_seat');
select tests.fx_customer('A', 'override') as c_override \gset
select from tests.fx_license('A', 'override', 'pro', customer_id => :'c_override');
insert into lic.license_entitlements (account_id, license_id, entitlement_id, effect)
select
  l.account_id,
  l.id as license_id,
  e.id as entitlement_id,
  case e.code when 'extra' then 'grant' else 'revoke' end as effect
from lic.licenses as l inner join lic.entitlements as e on l.account_id = e.account_id
where l.id = tests.fx_id('override') and e.code in ('extra', 'sso');
select from tests.fx_customer('A', 'none');

-- The snapshot's answer for one customer and code at an instant: the first
-- segment of the code's timeline (or default's) that still holds.
create function tests.snapshot_answer(entry jsonb, code text, at timestamptz)
returns api.entitlement_check
language sql
immutable
as $$
  select row((s.segment ->> 'allowed')::boolean, s.segment ->> 'reason', (s.segment ->> 'license_id')::uuid)::api.entitlement_check
  from jsonb_array_elements(coalesce(entry -> 'entitlements' -> code, entry -> 'default')) with ordinality as s (segment, n)
  where s.segment ->> 'valid_until' is null or (s.segment ->> 'valid_until')::timestamptz > at
  order by s.n
  limit 1;
$$;
grant execute on function tests.snapshot_answer(jsonb, text, timestamptz) to lic_app;

create temporary table answers (customer text, code text, checked api.entitlement_check, snapshot jsonb);
grant all on answers to lic_app;
select from tests.act_as(tests.secret_key('A'));
insert into answers
select
  c.customer,
  k.code,
  api.check_entitlement(k.code, customer_external_id => c.customer) as checked,
  (api.entitlement_snapshot(customer_external_id => c.customer)).data -> 0 as snapshot
from
  unnest(array[
    'active', 'grace', 'grace-after-expiry', 'overdue', 'suspended', 'canceled', 'expired', 'lapsed', 'perpetual',
    'two', 'mixed', 'seat', 'override', 'none', 'ghost'
  ]) as c (customer)
cross join unnest(array['sso', 'api', 'extra', 'unknown']) as k (code);
select from tests.clear_context();

select is(
  (
    select count(*) from answers
    where checked is distinct from tests.snapshot_answer(snapshot, code, now())
  ),
  0::bigint,
  'the snapshot answers what api.check_entitlement answers, for every customer and code (60 pairs)'
);
select is(
  (select array_agg(distinct(checked).reason order by (checked).reason) from answers),
  array['CUSTOMER_NOT_FOUND', 'ENTITLED', 'NOT_ENTITLED', 'NO_VALID_LICENSE'],
  'the fixtures reach every reason of a check by customer'
);

-- Later instants: every license end, just before and at it, and far ahead.
create temporary table instants as
select distinct t.at from lic.licenses as l
cross join
  lateral (
    values
    (l.expires_at), (l.expires_at - interval '1 microsecond'), (l.grace_ends_at),
    (l.grace_ends_at - interval '1 microsecond'), (now() + interval '100 years')
  ) as t (at)
where l.account_id = tests.account_id('A') and t.at >= now();
select cmp_ok((select count(*) from instants), '>', 10::bigint, 'the fixtures end licenses at many instants');
select is(
  (
    select count(*)
    from lic.customers as c
    cross join unnest(array['sso', 'api', 'extra', 'unknown']) as k (code)
    cross join instants as i
    cross join lateral private.entitlement_decision(c.licenses, k.code, i.at) as d
    where
      c.account_id = tests.account_id('A')
      and row(d.allowed, d.reason, d.license_id)::api.entitlement_check is distinct from
      tests.snapshot_answer(private.customer_entitlements(c.external_id, c.licenses), k.code, i.at)
  ),
  0::bigint,
  'a snapshot taken now answers at every later instant what the rule answers then: the SDK compares a clock'
);
select is(
  (
    select count(*) from lic.licenses as l
    where
      l.account_id = tests.account_id('A')
      and private.effective_status(l.status, l.expires_at, l.grace_ends_at, now()) in ('active', 'past_due')
      and private.in_use_until(l.status, l.expires_at, l.grace_ends_at) is not null
      and (
        private.effective_status(
          l.status, l.expires_at, l.grace_ends_at,
          private.in_use_until(l.status, l.expires_at, l.grace_ends_at) - interval '1 microsecond'
        )
        not in ('active', 'past_due')
        or private.effective_status(
          l.status, l.expires_at, l.grace_ends_at,
          private.in_use_until(l.status, l.expires_at, l.grace_ends_at)
        ) in ('active', 'past_due'
        )
      )
  ),
  0::bigint,
  'private.in_use_until is the instant private.effective_status leaves active and past_due'
);

-- What the timelines say, spelled out for a few.
create function tests.fx_name(id uuid)
returns text
language sql
stable
as $$
  select f.name from tests.fx_licenses as f where f.id = fx_name.id;
$$;
create function tests.timeline(customer text, code text)
returns text
language sql
stable
as $$
  select string_agg(
    (s ->> 'reason') || coalesce('@' || tests.fx_name((s ->> 'license_id')::uuid), '')
    || coalesce(' until ' || extract(epoch from (s ->> 'valid_until')::timestamptz - now())::integer, ''),
    ', ' order by n
  )
  from answers as a
  cross join jsonb_array_elements(coalesce(a.snapshot -> 'entitlements' -> timeline.code, a.snapshot -> 'default'))
    with ordinality as t (s, n)
  where a.customer = timeline.customer and a.code = 'sso';
$$;
select is(
  tests.timeline('two', 'api'),
  'ENTITLED@two basic until 3600, ENTITLED@two pro until 7200, NO_VALID_LICENSE',
  'two licenses: the older answers until it ends, then the newer, then none'
);
select is(
  tests.timeline('mixed', 'sso'), 'ENTITLED@mixed pro until 3600, NOT_ENTITLED',
  'a granting license that ends leaves a perpetual one that does not grant'
);
select is(tests.timeline('mixed', 'unknown'), 'NOT_ENTITLED', 'codes not listed: the default, here endless');
select is(
  tests.timeline('grace', 'sso'), 'ENTITLED@grace until 86400, NO_VALID_LICENSE',
  'past due: allowed until the grace period ends'
);
select is(
  tests.timeline('grace-after-expiry', 'sso'), 'ENTITLED@grace2 until 3600, NO_VALID_LICENSE',
  'past due with a grace period beyond the expiry: allowed until the expiry'
);
select is(
  tests.timeline('seat', 'sso'), 'ENTITLED@active until 2592000, NO_VALID_LICENSE',
  'a seat on another''s license counts, its own suspended license does not'
);
select is(tests.timeline('override', 'sso'), 'NOT_ENTITLED until 2592000, NO_VALID_LICENSE', 'a revoke counts');
select is(tests.timeline('override', 'extra'), 'ENTITLED@override until 2592000, NO_VALID_LICENSE', 'a grant counts');
select is(
  (
    select snapshot -> 'entitlements' from answers
    where customer = 'suspended' and code = 'sso'
  ), '{}'::jsonb,
  'a customer without a license in use lists no code'
);
select is(
  (
    select snapshot from answers
    where customer = 'ghost' and code = 'sso'
  ),
  jsonb_build_object('customer', 'ghost', 'found', false, 'entitlements', '{}'::jsonb, 'default', jsonb_build_array(
    jsonb_build_object('allowed', false, 'reason', 'CUSTOMER_NOT_FOUND', 'license_id', null, 'valid_until', null)
  )),
  'an unknown external id: found false, and the check''s answer'
);

-- The whole account, in pages.
select from tests.act_as(tests.secret_key('A'));
select is(
  (select count(*) from api.entitlement_snapshot(page_limit => 1000) as p, jsonb_array_elements(p.data)),
  14::bigint,
  'a snapshot of the account lists every customer with an external id, no other account''s'
);
select is(
  (
    select
      array[
        p.has_more::text, p.data -> 0 ->> 'customer', p.data -> 1 ->> 'customer', jsonb_array_length(p.data)::text
      ] as seen
    from api.entitlement_snapshot(page_limit => 2, starting_after => 'grace') as p
  ),
  array['true', 'grace-after-expiry', 'lapsed', '2'],
  'pages follow external ids'
);
select throws_ok(
  'select api.entitlement_snapshot(page_limit => 1001)', 'LINVL', null, 'a page holds at most 1,000 customers'
);

-- The feed. A transaction sees its own stamps above every horizon (and
-- its id may be the server's newest, at xmax), so these relabel this
-- transaction's stamps 7 and read the window [7, 8): "<from>.<to>.".
select
  pg_current_xact_id() as xid,
  '7' as me,
  '8' as next_xid
\gset
select from tests.clear_context();
update lic.customers set changed_xid = '3'
where account_id = tests.account_id('A');
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(:'c_active', email => 'someone@example.com');
select from api.suspend_license(tests.fx_id('override'));
select from api.update_customer(:'c_perpetual', external_id => 'perpetual-2');
select from tests.clear_context();
delete from lic.licenses
where id = tests.fx_id('lapsed');
delete from lic.customers
where id = :'c_lapsed';
select is(
  (
    select array[
      (
        select count(*) from lic.customers
        where account_id = tests.account_id('A') and changed_xid = :'xid'
      ),
      (
        select count(*) from lic.customer_tombstones
        where account_id = tests.account_id('A') and changed_xid = :'xid'
      )
    ]
  ),
  array[2::bigint, 2::bigint],
  'changes stamp customers and tombstones with the writing transaction''s id, an email change does not'
);
update lic.customers set changed_xid = '7'
where account_id = tests.account_id('A') and changed_xid = :'xid';
update lic.customer_tombstones set changed_xid = '7'
where account_id = tests.account_id('A') and changed_xid = :'xid';
select from tests.act_as(tests.secret_key('A'));
select is(
  (
    select array_agg(e ->> 'customer' || ':' || (e ->> 'found') order by e ->> 'customer')
    from api.entitlement_changes(format('%s.%s.', :'me', :'next_xid')) as p, jsonb_array_elements(p.data) as e
  ),
  array['lapsed:false', 'override:true', 'perpetual:false', 'perpetual-2:true'],
  'changed licenses, a new external id, the old one and a deleted customer reach the feed; an email change does not'
);
select is(
  (
    select (e -> 'default' -> 0 ->> 'reason')
    from api.entitlement_changes(format('%s.%s.', :'me', :'next_xid')) as p, jsonb_array_elements(p.data) as e
    where e ->> 'customer' = 'override'
  ),
  'NO_VALID_LICENSE',
  'a change carries the customer''s current decisions'
);

-- Paging within a window: every change once, in order.
create temporary table pages (n integer, page api.entitlement_page);
grant all on pages to lic_app;
insert into pages values (1, api.entitlement_changes(format('%s.%s.', :'me', :'next_xid'), page_limit => 3));
insert into pages
select
  2 as n,
  api.entitlement_changes((p.page).cursor, page_limit => 3) as page
from pages as p
where p.n = 1;
select is(
  (select array_agg((page).has_more order by n) from pages), array[true, false],
  'a window larger than the page continues with the answered cursor'
);
select is(
  (
    select array_agg(d.e ->> 'customer' order by p.n, d.o)
    from pages as p, jsonb_array_elements((p.page).data) with ordinality as d (e, o)
  ),
  (
    select array_agg(e ->> 'customer')
    from api.entitlement_changes(format('%s.%s.', :'me', :'next_xid')) as p, jsonb_array_elements(p.data) as e
  ),
  'its pages hold the window''s changes once each, in order'
);
select is(
  (
    select (page).cursor from pages
    where n = 2
  ), :'next_xid',
  'the last page of a window answers its end as the next cursor'
);
select is(
  (api.entitlement_changes(format('%s.%s.', :'me', :'next_xid'))).data -> 0 -> 'default' -> 0 ->> 'reason',
  'CUSTOMER_NOT_FOUND', 'a buried external id answers what a check of it answers'
);

select throws_ok('select api.entitlement_changes(''nonsense'')', 'LINVL', null, 'a malformed cursor is refused');
select throws_ok(
  format('select api.entitlement_changes(%L)', (:'xid'::numeric + 1000000)::text), 'LGONE', null,
  'a cursor from beyond this database''s transactions is gone (410: take a snapshot)'
);

-- Tombstones are kept 30 days; pruning raises the floor, below which cursors are gone.
select from tests.clear_context();
update lic.customer_tombstones set created_at = now() - interval '31 days', changed_xid = '5'
where account_id = tests.account_id('A') and external_id = 'lapsed';
select from tests.act_as(tests.secret_key('A'));
select from api.update_customer(:'c_two', external_id => 'two-2');
select from tests.clear_context();
select is(
  (
    select
      array[a.entitlement_feed_floor::text, (
        select string_agg(t.external_id, ',' order by t.external_id)
        from lic.customer_tombstones as t
        where t.account_id = a.account_id
      )]
    from lic.accounts as a
    where a.account_id = tests.account_id('A')
  ),
  array['5', 'perpetual,two'],
  'burying prunes the account''s tombstones older than 30 days and raises its floor to the newest pruned'
);
select from tests.act_as(tests.secret_key('A'));
select throws_ok('select api.entitlement_changes(''5'')', 'LGONE', null, 'a cursor at the floor is gone (410)');
select lives_ok('select api.entitlement_changes(''6'')', 'a cursor above it is followed');
select from tests.clear_context();

select from tests.act_as(tests.secret_key('A'));
select from tests.remember_key('A pk', api.create_api_key(kind => 'publishable'));
select from tests.clear_context();
select from tests.act_as(tests.key_secret('A pk'));
select throws_ok(
  'select api.entitlement_snapshot()', 'LDNID', null,
  'a publishable key may not read the account''s customers'' entitlements'
);

select * from finish();
rollback;
