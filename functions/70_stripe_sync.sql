-- Stripe auto-sync: service.apply_stripe_event is the one place Stripe changes
-- licenses (docs/stripe.md has the status model and the outcomes).
--
-- Each event only merges facts (sql/0009_stripe.sql): the newest
-- subscription snapshot (terminal states never replaced), invoices (paid
-- never undone, paid period end a max, first failure a min), charges
-- (largest cumulative refund), disputes (closed never reopens), checkouts.
-- Then the licenses of the subscription or purchase it concerns are derived
-- again from all the facts (private.stripe_sync_subscription,
-- private.stripe_sync_checkout). Merging commutes, so arrival order and
-- duplicates do not change the result; events for one Stripe customer are
-- serialised by an advisory lock, so the last one derives from every fact.

create or replace function private.stripe_time(value jsonb)
returns timestamptz
language sql
immutable
parallel safe
as $$
  select case when jsonb_typeof(value) = 'number' then pg_catalog.to_timestamp(value::text::double precision) end;
$$;
comment on function private.stripe_time(jsonb) is 'A Stripe timestamp (epoch seconds) as timestamptz; null if absent.';

create or replace function private.stripe_id(value jsonb)
returns text
language sql
immutable
parallel safe
as $$
  -- An id, or an expanded object's id.
  select case jsonb_typeof(value)
    when 'string' then value #>> '{}'
    when 'object' then value ->> 'id'
  end;
$$;
comment on function private.stripe_id(jsonb) is
'The id a Stripe field holds, whether it is an id or an expanded object.';

create or replace function private.stripe_items(subscription jsonb)
returns jsonb
language sql
immutable
parallel safe
as $$
  -- [{id, price, product, quantity, period_end}] in Stripe's order; the
  -- period end is per item from basil on, on the subscription before.
  select coalesce(jsonb_agg(jsonb_build_object(
    'id', i.item ->> 'id',
    'price', coalesce(private.stripe_id(i.item -> 'price'), private.stripe_id(i.item -> 'plan')),
    'product', coalesce(private.stripe_id(i.item #> '{price,product}'), private.stripe_id(i.item #> '{plan,product}')),
    'quantity', case when jsonb_typeof(i.item -> 'quantity') = 'number' then i.item -> 'quantity' end,
    'period_end', coalesce(i.item -> 'current_period_end', subscription -> 'current_period_end')
  ) order by i.n), '[]'::jsonb)
  from jsonb_array_elements(
    case when jsonb_typeof(subscription #> '{items,data}') = 'array' then subscription #> '{items,data}' else '[]' end
  ) with ordinality as i (item, n)
  where i.item ->> 'id' is not null;
$$;
comment on function private.stripe_items(jsonb) is
'A subscription''s items, read from either payload generation.';

create or replace function private.stripe_invoice_subscription(invoice jsonb)
returns text
language sql
immutable
parallel safe
as $$
  select coalesce(
    private.stripe_id(invoice #> '{parent,subscription_details,subscription}'),
    private.stripe_id(invoice -> 'subscription')
  );
$$;
comment on function private.stripe_invoice_subscription(jsonb) is
'The subscription of an invoice: parent.subscription_details (basil on) or subscription (before).';

create or replace function private.stripe_policy(account_id uuid, price text, product text)
returns lic.license_policies
language plpgsql
stable
as $$
declare
  v_policy lic.license_policies;
begin
  -- PL/pgSQL, so the plan is cached: this runs for every item of every sync.
  -- A price's mapping beats its product's.
  select p.* into v_policy
  from lic.stripe_mappings as m
  inner join lic.license_policies as p on p.account_id = m.account_id and p.id = m.policy_id
  where
    m.account_id = stripe_policy.account_id
    and (m.stripe_price_id = stripe_policy.price or m.stripe_product_id = stripe_policy.product)
  order by m.stripe_price_id is null
  limit 1;
  return v_policy;
end;
$$;
comment on function private.stripe_policy(uuid, text, text) is
'The license policy a Stripe price (or, failing that, its product) is mapped to; null when neither is.';

create or replace function private.stripe_lock(account_id uuid, scope text)
returns void
language sql
volatile
as $$
  select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(account_id::text || '/' || scope, 0));
$$;
comment on function private.stripe_lock(uuid, text) is
'Serialise the rest of the transaction with every other one working on this Stripe customer (or object).';

create or replace function private.stripe_customer(
  account_id uuid,
  stripe_customer text,
  external_id text default null,
  email text default null
)
returns uuid
language plpgsql
volatile
as $$
declare
  v_stripe text := case when stripe_customer ~ '^cus_[A-Za-z0-9]+$' then stripe_customer end;
  v_external text := case when length(external_id) between 1 and 200 then external_id end;
  v_email text := case when email ~ '^[^@\s]+@[^@\s]+$' and length(email) <= 320 then email end;
  v_by_stripe lic.customers;
  v_by_external lic.customers;
  v_before lic.customers;
  v_after lic.customers;
begin
  if v_stripe is null and v_external is null then
    return null;
  end if;
  select c.* into v_by_stripe from lic.customers as c
  where c.account_id = stripe_customer.account_id and c.stripe_customer_id = v_stripe for update;
  select c.* into v_by_external from lic.customers as c
  where c.account_id = stripe_customer.account_id and c.external_id = v_external for update;

  if v_by_external.stripe_customer_id <> v_stripe then
    -- The user pays through another Stripe customer too: keep them apart.
    v_by_external := null;
    v_external := null;
  end if;
  if v_by_stripe.id is null and v_by_external.id is null then
    insert into lic.customers (account_id, stripe_customer_id, external_id, email)
    values (stripe_customer.account_id, v_stripe, v_external, v_email)
    returning * into v_after;
    perform private.emit_event(stripe_customer.account_id, 'customer.created', to_jsonb(private.customer_view(v_after)));
    return v_after.id;
  end if;

  if v_by_stripe.id is not null and v_by_external.id is not null and v_by_stripe.id <> v_by_external.id then
    -- Stripe's events named the customer before Checkout named the tenant's
    -- user, who already exists: fold the customer made from those events
    -- into the user's, unless either is tied elsewhere.
    if v_by_external.stripe_customer_id is not null or v_by_stripe.external_id is not null then
      return v_by_stripe.id;
    end if;
    update lic.licenses as l set customer_id = v_by_external.id
    where l.account_id = stripe_customer.account_id and l.customer_id = v_by_stripe.id;
    update lic.license_users as u set customer_id = v_by_external.id
    where
      u.account_id = stripe_customer.account_id and u.customer_id = v_by_stripe.id
      and not exists (
        select from lic.license_users as o
        where o.account_id = u.account_id and o.license_id = u.license_id and o.customer_id = v_by_external.id
      );
    delete from lic.license_users as u
    where u.account_id = stripe_customer.account_id and u.customer_id = v_by_stripe.id;
    delete from lic.customers as c where c.account_id = stripe_customer.account_id and c.id = v_by_stripe.id;
    perform private.emit_event(
      stripe_customer.account_id, 'customer.deleted', to_jsonb(private.customer_view(v_by_stripe))
    );
    v_email := coalesce(v_email, v_by_stripe.email);
    v_by_stripe := null;
  end if;

  -- A row variable that found nothing is a row of nulls, not null: test ids.
  v_before := case when v_by_external.id is not null then v_by_external else v_by_stripe end;
  update lic.customers as c
  set
    stripe_customer_id = coalesce(c.stripe_customer_id, v_stripe),
    external_id = coalesce(c.external_id, v_external),
    email = coalesce(c.email, v_email),
    updated_at = now()
  where
    c.account_id = stripe_customer.account_id and c.id = v_before.id
    and (
      c.stripe_customer_id is null and v_stripe is not null
      or c.external_id is null and v_external is not null
      or c.email is null and v_email is not null
    )
  returning c.* into v_after;
  if v_after.id is not null then
    perform private.emit_event(
      stripe_customer.account_id, 'customer.updated', to_jsonb(private.customer_view(v_after)),
      private.previous_attributes(to_jsonb(private.customer_view(v_before)), to_jsonb(private.customer_view(v_after)))
    );
  end if;
  return v_before.id;
end;
$$;
comment on function private.stripe_customer(uuid, text, text, text) is
'The Licentric customer of a Stripe customer, made on first sight; an external id (the tenant''s user) and an '
'email fill in what is missing, and link or fold in the customer the tenant made for that user.';

create or replace function private.stripe_seats(quantity text, policy lic.license_policies)
returns integer
language sql
immutable
as $$
  -- The policy's max_users are the seats a plan includes; a quantity buys
  -- more (per-seat prices). Neither: unlimited.
  select greatest(
    case when quantity ~ '^[0-9]{1,9}$' and quantity::integer > 0 then quantity::integer end,
    policy.max_users
  );
$$;
comment on function private.stripe_seats(text, lic.license_policies) is
'The seats of a license bought through Stripe: the quantity bought, at least the policy''s max_users.';

create or replace function private.stripe_license_event(before lic.licenses, after lic.licenses)
returns void
language plpgsql
volatile
as $$
begin
  if before.id is null then
    perform private.emit_event(after.account_id, 'license.created', to_jsonb(private.license_view(after)));
    return;
  end if;
  if to_jsonb(before) - 'updated_at' = to_jsonb(after) - 'updated_at' then
    return;
  end if;
  perform private.emit_license_event(
    case
      when after.status = 'canceled' and before.status <> 'canceled' then 'license.canceled'
      when after.status = 'suspended' and before.status <> 'suspended' then 'license.suspended'
      when after.status in ('active', 'past_due') and before.status = 'suspended' then 'license.reinstated'
      when after.status = 'past_due' and before.status <> 'past_due' then 'license.past_due'
      when after.policy_id <> before.policy_id then 'license.policy_changed'
      else 'license.updated'
    end,
    before, after
  );
end;
$$;
comment on function private.stripe_license_event(lic.licenses, lic.licenses) is
'Emit the event of a license change made by Stripe, named after what changed most.';

create or replace function private.stripe_put_license(
  before lic.licenses,
  synced_status text,
  target text,
  reason text,
  policy lic.license_policies,
  customer_id uuid,
  expires_at timestamptz,
  seats integer,
  paid_through timestamptz,
  grace_from timestamptz,
  disputed_at timestamptz,
  subscription_id text
)
returns lic.licenses
language plpgsql
volatile
as $$
declare
  v_status text := before.status;
  v_after lic.licenses;
begin
  -- The status moves only when Stripe's facts change what it should be; a
  -- canceled license stays canceled.
  if before.id is null or target is distinct from synced_status and before.status <> 'canceled' then
    v_status := target;
  end if;
  if before.id is null then
    insert into lic.licenses (
      account_id, key, policy_id, customer_id, status, expires_at, seats, paid_through, disputed_at,
      stripe_subscription_id, grace_ends_at, suspended_reason, suspended_at, canceled_at
    )
    values (
      policy.account_id, private.new_license_key(), policy.id, stripe_put_license.customer_id, v_status,
      stripe_put_license.expires_at, stripe_put_license.seats, stripe_put_license.paid_through,
      stripe_put_license.disputed_at, subscription_id,
      case when v_status = 'past_due' then grace_from + policy.grace_period end,
      case when v_status in ('suspended', 'canceled') then reason end,
      case when v_status = 'suspended' then now() end,
      case when v_status = 'canceled' then now() end
    )
    returning * into v_after;
    if stripe_put_license.customer_id is not null then
      insert into lic.license_users (account_id, license_id, customer_id, role)
      values (policy.account_id, v_after.id, stripe_put_license.customer_id, 'owner');
    end if;
  else
    update lic.licenses as l
    set
      status = v_status,
      policy_id = policy.id,
      customer_id = coalesce(l.customer_id, stripe_put_license.customer_id),
      expires_at = stripe_put_license.expires_at,
      seats = stripe_put_license.seats,
      paid_through = stripe_put_license.paid_through,
      disputed_at = stripe_put_license.disputed_at,
      stripe_subscription_id = coalesce(subscription_id, l.stripe_subscription_id),
      grace_ends_at = case when v_status = 'past_due' then grace_from + policy.grace_period end,
      suspended_reason = case
        when v_status = l.status then l.suspended_reason
        when v_status in ('suspended', 'canceled') then reason
      end,
      suspended_at = case when v_status <> 'suspended' then null when l.status = 'suspended' then l.suspended_at
        else now() end,
      canceled_at = case when v_status = 'canceled' then coalesce(l.canceled_at, now()) end,
      updated_at = now()
    where l.account_id = before.account_id and l.id = before.id
    returning l.* into v_after;
    if stripe_put_license.customer_id is not null and before.customer_id is null then
      insert into lic.license_users (account_id, license_id, customer_id, role)
      values (v_after.account_id, v_after.id, stripe_put_license.customer_id, 'owner')
      on conflict do nothing;
    end if;
  end if;
  perform private.stripe_license_event(before, v_after);
  return v_after;
end;
$$;
comment on function private.stripe_put_license(
  lic.licenses, text, text, text, lic.license_policies, uuid, timestamptz, integer, timestamptz, timestamptz,
  timestamptz, text
) is
'Create (before.id null) or bring up to date a license Stripe drives, and emit its event.';

create or replace function private.stripe_payment_holds(
  account_id uuid,
  charges text[],
  payment_intents text[],
  out refunded boolean,
  out dispute_lost boolean,
  out disputed_at timestamptz
)
returns record
language plpgsql
stable
as $$
begin
  -- What refunds and disputes of these payments say. A dispute counts while
  -- open (not an inquiry), or for good once lost.
  select coalesce(bool_or(c.refunded), false) into refunded
  from lic.stripe_charges as c
  where
    c.account_id = stripe_payment_holds.account_id
    and (c.charge_id = any(charges) or c.payment_intent_id = any(payment_intents));
  select coalesce(bool_or(d.status = 'lost'), false), min(d.observed_at) filter (
    where d.status in ('needs_response', 'under_review')
  )
  into dispute_lost, disputed_at
  from lic.stripe_disputes as d
  where
    d.account_id = stripe_payment_holds.account_id
    and (
      d.charge_id = any(charges) or d.payment_intent_id = any(payment_intents)
      or d.charge_id in (
        select c.charge_id from lic.stripe_charges as c
        where c.account_id = stripe_payment_holds.account_id and c.payment_intent_id = any(payment_intents)
      )
    );
end;
$$;
comment on function private.stripe_payment_holds(uuid, text[], text[]) is
'Whether these payments (charge or payment intent ids) were fully refunded, lost a dispute, or have one open.';

create or replace function private.stripe_hold_status(
  target text,
  policy lic.license_policies,
  holds record,
  out status text,
  out reason text,
  out disputed_at timestamptz
)
returns record
language plpgsql
stable
as $$
begin
  status := target;
  if target in ('active', 'past_due') and policy.refund_action = 'suspend' and holds.refunded then
    status := 'suspended';
    reason := 'the payment was refunded';
  elsif target in ('active', 'past_due') and policy.dispute_action = 'suspend' and holds.dispute_lost then
    status := 'suspended';
    reason := 'the payment''s dispute was lost';
  end if;
  if policy.dispute_action = 'suspend' then
    disputed_at := holds.disputed_at;
  end if;
end;
$$;
comment on function private.stripe_hold_status(text, lic.license_policies, record) is
'A license''s status once its policy''s refund and dispute actions have applied.';

create or replace function private.stripe_sync_subscription(account_id uuid, subscription_id text)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_sub lic.stripe_subscriptions;
  v_customer_id uuid;
  v_base text;
  v_latest lic.stripe_invoices;
  v_paid_through timestamptz;
  v_holds record;
  v_item jsonb;
  v_policy lic.license_policies;
  v_link lic.stripe_subscription_licenses;
  v_license lic.licenses;
  v_state record;
  v_licenses uuid[] := '{}';
  v_unmapped text[] := '{}';
  v_claimed uuid[] := '{}';
begin
  select s.* into v_sub from lic.stripe_subscriptions as s
  where s.account_id = stripe_sync_subscription.account_id and s.subscription_id = stripe_sync_subscription.subscription_id;
  if not found then
    return jsonb_build_object('licenses', '[]'::jsonb, 'unmapped', '[]'::jsonb);
  end if;
  select c.id into v_customer_id from lic.customers as c
  where c.account_id = stripe_sync_subscription.account_id and c.stripe_customer_id = v_sub.customer;

  v_base := case v_sub.status
    when 'trialing' then 'active'
    when 'active' then 'active'
    when 'past_due' then 'past_due'
    when 'unpaid' then 'suspended'
    when 'paused' then 'suspended'
    when 'canceled' then 'canceled'
    when 'incomplete_expired' then 'canceled'
  end;
  -- The latest invoice decides dunning: a failure after the snapshot makes an
  -- active subscription past_due; a payment after it lifts a past_due.
  select i.* into v_latest from lic.stripe_invoices as i
  where i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
  order by i.invoice_created_at desc nulls last, i.invoice_id desc
  limit 1;
  -- Only facts newer than the snapshot overrule it.
  if v_base = 'active' and v_latest.paid_at is null and v_latest.first_failed_at >= v_sub.observed_at then
    v_base := 'past_due';
  elsif v_base = 'past_due' and v_latest.paid_at >= v_sub.observed_at then
    v_base := 'active';
  end if;
  select max(i.period_end) into v_paid_through from lic.stripe_invoices as i
  where
    i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
    and i.paid_at is not null;
  -- A refund counts on the latest paid invoice; a dispute on any invoice.
  select * into v_holds from private.stripe_payment_holds(
    stripe_sync_subscription.account_id,
    array(
      select i.charge_id from lic.stripe_invoices as i
      where i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
        and i.charge_id is not null
      union all
      select c.charge_id from lic.stripe_charges as c
      where c.account_id = stripe_sync_subscription.account_id and c.invoice_id in (
        select i.invoice_id from lic.stripe_invoices as i
        where i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
      )
    ),
    array(
      select i.payment_intent_id from lic.stripe_invoices as i
      where i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
        and i.payment_intent_id is not null
    )
  );
  if v_holds.refunded and not exists (
    select from lic.stripe_charges as c
    where
      c.account_id = stripe_sync_subscription.account_id and c.refunded
      and (
        c.invoice_id = (select i.invoice_id from lic.stripe_invoices as i
          where i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
            and i.paid_at is not null
          order by i.period_end desc nulls last, i.invoice_created_at desc nulls last limit 1)
        or c.charge_id = (select i.charge_id from lic.stripe_invoices as i
          where i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
            and i.paid_at is not null
          order by i.period_end desc nulls last, i.invoice_created_at desc nulls last limit 1)
        or c.payment_intent_id = (select i.payment_intent_id from lic.stripe_invoices as i
          where i.account_id = stripe_sync_subscription.account_id and i.subscription_id = v_sub.subscription_id
            and i.paid_at is not null
          order by i.period_end desc nulls last, i.invoice_created_at desc nulls last limit 1)
      )
  ) then
    v_holds.refunded := false;
  end if;

  -- In Stripe's order, each item keeps its license; an item that replaced a
  -- removed one (a plan switch) takes over that license; a mapped item
  -- without one gets a new one. An item whose price is not mapped (yet) keeps
  -- the license it has, on its policy so far, and waits for a mapping.
  for v_item in select value from jsonb_array_elements(v_sub.items) loop
    v_policy := private.stripe_policy(stripe_sync_subscription.account_id, v_item ->> 'price', v_item ->> 'product');
    if v_policy.id is null then
      v_unmapped := v_unmapped || coalesce(v_item ->> 'price', v_item ->> 'product');
    end if;
    select k.* into v_link from lic.stripe_subscription_licenses as k
    where
      k.account_id = stripe_sync_subscription.account_id and k.subscription_id = v_sub.subscription_id
      and k.item_id = v_item ->> 'id';
    if not found then
      select k.* into v_link from lic.stripe_subscription_licenses as k
      inner join lic.licenses as l on l.account_id = k.account_id and l.id = k.license_id
      where
        k.account_id = stripe_sync_subscription.account_id and k.subscription_id = v_sub.subscription_id
        and not exists (
          select from jsonb_array_elements(v_sub.items) as i where i ->> 'id' = k.item_id
        )
        and k.license_id <> all(v_claimed)
        and l.status <> 'canceled'
      order by k.license_id
      limit 1;
      if found then
        update lic.stripe_subscription_licenses as k set item_id = v_item ->> 'id'
        where k.account_id = v_link.account_id and k.license_id = v_link.license_id;
      end if;
    end if;
    if v_link.license_id is null then
      -- No license for an unmapped item or a subscription that never started.
      continue when v_policy.id is null or v_base is null or v_sub.status = 'incomplete_expired';
      v_license := null;
    else
      v_claimed := v_claimed || v_link.license_id;
      select l.* into v_license from lic.licenses as l
      where l.account_id = v_link.account_id and l.id = v_link.license_id
      for update;
      continue when v_base is null;
      if v_policy.id is null then
        select p.* into v_policy from lic.license_policies as p
        where p.account_id = v_license.account_id and p.id = v_license.policy_id;
      end if;
    end if;
    select * into v_state from private.stripe_hold_status(v_base, v_policy, v_holds);
    v_license := private.stripe_put_license(
      v_license, v_link.synced_status, v_state.status,
      case v_state.status
        when 'suspended' then coalesce(v_state.reason, format('the Stripe subscription is %s', v_sub.status))
        when 'canceled' then 'the Stripe subscription ended'
      end,
      v_policy, v_customer_id, v_sub.ends_at,
      private.stripe_seats(v_item ->> 'quantity', v_policy),
      v_paid_through,
      coalesce(
        case when v_latest.paid_at is null then v_latest.first_failed_at end, v_sub.past_due_since, v_sub.observed_at
      ),
      v_state.disputed_at,
      v_sub.subscription_id
    );
    if v_link.license_id is null then
      insert into lic.stripe_subscription_licenses (account_id, license_id, subscription_id, item_id, synced_status)
      values (stripe_sync_subscription.account_id, v_license.id, v_sub.subscription_id, v_item ->> 'id', v_state.status);
      v_claimed := v_claimed || v_license.id;
    else
      update lic.stripe_subscription_licenses as k set synced_status = v_state.status
      where k.account_id = v_link.account_id and k.license_id = v_link.license_id;
    end if;
    v_licenses := v_licenses || v_license.id;
    v_link := null;
  end loop;

  -- Licenses whose item left the subscription.
  for v_link in
    select k.* from lic.stripe_subscription_licenses as k
    where
      k.account_id = stripe_sync_subscription.account_id and k.subscription_id = v_sub.subscription_id
      and k.license_id <> all(v_claimed)
  loop
    select l.* into v_license from lic.licenses as l
    where l.account_id = v_link.account_id and l.id = v_link.license_id
    for update;
    select p.* into v_policy from lic.license_policies as p
    where p.account_id = v_link.account_id and p.id = v_license.policy_id;
    v_license := private.stripe_put_license(
      v_license, v_link.synced_status, 'canceled', 'the item left the Stripe subscription', v_policy,
      v_customer_id, v_license.expires_at, v_license.seats, v_paid_through, null, null, v_sub.subscription_id
    );
    update lic.stripe_subscription_licenses as k set synced_status = 'canceled'
    where k.account_id = v_link.account_id and k.license_id = v_link.license_id;
    v_licenses := v_licenses || v_license.id;
  end loop;

  return jsonb_build_object('licenses', to_jsonb(v_licenses), 'unmapped', to_jsonb(v_unmapped));
end;
$$;
comment on function private.stripe_sync_subscription(uuid, text) is
'Derive the licenses of a subscription from every fact held about it (snapshot, invoices, charges, disputes); '
'returns {licenses, unmapped}.';

create or replace function private.stripe_sync_checkout(account_id uuid, session_id text)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_checkout lic.stripe_checkouts;
  v_policy lic.license_policies;
  v_item jsonb;
  v_seats integer;
  v_customer_id uuid;
  v_license lic.licenses;
  v_state record;
  v_target text;
begin
  select c.* into v_checkout from lic.stripe_checkouts as c
  where c.account_id = stripe_sync_checkout.account_id and c.session_id = stripe_sync_checkout.session_id;
  if v_checkout.policy_code is not null then
    select p.* into v_policy from lic.license_policies as p
    where p.account_id = stripe_sync_checkout.account_id and p.code = v_checkout.policy_code;
  else
    if v_checkout.line_items is null then
      return jsonb_build_object('outcome', 'needs_refetch', 'detail', 'the session''s line items are needed',
        'refetch', jsonb_build_object('object', 'checkout.session', 'id', v_checkout.session_id));
    end if;
    for v_item in select value from jsonb_array_elements(v_checkout.line_items) loop
      v_policy := private.stripe_policy(stripe_sync_checkout.account_id, v_item ->> 'price', v_item ->> 'product');
      exit when v_policy.id is not null;
    end loop;
  end if;
  if v_policy.id is null then
    return jsonb_build_object('outcome', 'parked',
      'detail', 'no license policy is mapped to what this checkout sold');
  end if;
  v_seats := private.stripe_seats(v_item ->> 'quantity', v_policy);
  v_target := case v_checkout.payment_status when 'paid' then 'active' when 'no_payment_required' then 'active' end;
  if v_checkout.license_id is null and v_target is null then
    return jsonb_build_object('outcome', 'applied', 'detail', case v_checkout.payment_status
      when 'failed' then 'the payment failed: no license'
      else 'waiting for the payment to succeed' end);
  end if;
  select * into v_state from private.stripe_hold_status(
    v_target, v_policy,
    private.stripe_payment_holds(stripe_sync_checkout.account_id, '{}', array[v_checkout.payment_intent_id])
  );
  select c.id into v_customer_id from lic.customers as c
  where
    c.account_id = stripe_sync_checkout.account_id
    and (c.stripe_customer_id = v_checkout.customer or c.external_id = v_checkout.client_reference_id)
  order by c.stripe_customer_id = v_checkout.customer
  limit 1;
  if v_checkout.license_id is not null then
    select l.* into v_license from lic.licenses as l
    where l.account_id = v_checkout.account_id and l.id = v_checkout.license_id
    for update;
  end if;
  v_license := private.stripe_put_license(
    v_license, v_checkout.synced_status, v_state.status,
    case v_state.status when 'suspended' then v_state.reason end,
    v_policy, v_customer_id,
    coalesce(v_checkout.session_created_at, v_checkout.created_at) + v_policy.duration,
    v_seats, null, null, v_state.disputed_at, null
  );
  update lic.stripe_checkouts as c set license_id = v_license.id, synced_status = v_state.status, updated_at = now()
  where c.account_id = v_checkout.account_id and c.session_id = v_checkout.session_id;
  return jsonb_build_object('outcome', 'applied', 'licenses', jsonb_build_array(v_license.id));
end;
$$;
comment on function private.stripe_sync_checkout(uuid, text) is
'Derive the license of a one-off Checkout purchase from its facts; returns {outcome, detail, refetch, licenses}.';

create or replace function private.stripe_result(
  outcome text,
  detail text default null,
  refetch jsonb default null,
  sync jsonb default null,
  subscription_id text default null
)
returns jsonb
language sql
immutable
as $$
  select jsonb_build_object(
    'outcome', outcome, 'detail', detail, 'refetch', refetch,
    'licenses', coalesce(sync -> 'licenses', '[]'::jsonb), 'subscription_id', subscription_id
  );
$$;
comment on function private.stripe_result(text, text, jsonb, jsonb, text) is
'The answer of one Stripe event''s processing.';

create or replace function private.stripe_subscription_outcome(account_id uuid, subscription_id text)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_sync jsonb := private.stripe_sync_subscription(account_id, subscription_id);
begin
  if jsonb_array_length(v_sync -> 'licenses') = 0 and jsonb_array_length(v_sync -> 'unmapped') > 0 then
    return private.stripe_result('parked',
      format('no license policy is mapped to %s', (select string_agg(u, ', ') from jsonb_array_elements_text(v_sync -> 'unmapped') as u)),
      null, v_sync, subscription_id);
  end if;
  return private.stripe_result('applied',
    case when jsonb_array_length(v_sync -> 'unmapped') > 0 then
      format('not mapped yet: %s', (select string_agg(u, ', ') from jsonb_array_elements_text(v_sync -> 'unmapped') as u))
    end,
    null, v_sync, subscription_id);
end;
$$;
comment on function private.stripe_subscription_outcome(uuid, text) is
'Derive a subscription''s licenses and answer applied, or parked when none of its items is mapped.';

create or replace function private.stripe_on_subscription(
  account_id uuid,
  subscription jsonb,
  observed_at timestamptz,
  event_id text,
  fetched boolean default false
)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_id text := subscription ->> 'id';
  v_customer text := private.stripe_id(subscription -> 'customer');
  v_status text := subscription ->> 'status';
  v_items jsonb := private.stripe_items(subscription);
  v_period_end timestamptz;
  v_ends_at timestamptz;
  v_held lic.stripe_subscriptions;
  v_terminal constant text[] := array['canceled', 'incomplete_expired'];
begin
  if v_id !~ '^sub_[A-Za-z0-9]+$' or v_customer is null then
    return private.stripe_result('ignored', 'the subscription has no valid id or customer');
  end if;
  if v_status is null or v_status not in (
    'incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused'
  ) then
    return private.stripe_result('ignored',
      format('unknown subscription status %s: nothing changed', coalesce(v_status, 'null')), null, null, v_id);
  end if;
  if coalesce(subscription #>> '{items,has_more}', 'false') = 'true' and not fetched then
    -- Items missing from the payload must not read as removed.
    return private.stripe_result('needs_refetch', 'the payload holds only part of the subscription''s items',
      jsonb_build_object('object', 'subscription', 'id', v_id), null, v_id);
  end if;
  perform private.stripe_lock(account_id, v_customer);
  select s.* into v_held from lic.stripe_subscriptions as s
  where s.account_id = stripe_on_subscription.account_id and s.subscription_id = v_id
  for update;
  if jsonb_typeof(subscription #> '{items,data}') is distinct from 'array' then
    -- No item list at all: the items held stay; with none held, ask Stripe.
    if v_held.subscription_id is not null then
      v_items := v_held.items;
    elsif not v_status = any(v_terminal) then
      return private.stripe_result('needs_refetch', 'the payload holds no item list',
        jsonb_build_object('object', 'subscription', 'id', v_id), null, v_id);
    end if;
  end if;
  v_period_end := coalesce(
    (select max(pg_catalog.to_timestamp((i ->> 'period_end')::double precision)) from jsonb_array_elements(v_items) as i
      where jsonb_typeof(i -> 'period_end') = 'number'),
    private.stripe_time(subscription -> 'current_period_end')
  );
  v_ends_at := coalesce(
    private.stripe_time(subscription -> 'cancel_at'),
    case when subscription ->> 'cancel_at_period_end' = 'true' then v_period_end end
  );

  if v_held.subscription_id is not null then
    if v_held.status = any(v_terminal) then
      return private.stripe_result('stale', format('the subscription already ended (%s)', v_held.status), null, null, v_id);
    end if;
    if not (v_status = any(v_terminal) or fetched or observed_at > v_held.observed_at) then
      if observed_at < v_held.observed_at then
        return private.stripe_result('stale', 'a newer state of the subscription is already applied', null, null, v_id);
      end if;
      -- The same second as the state held: which came first is unknowable.
      if (v_held.status, v_held.items, v_held.ends_at, v_held.customer)
        is not distinct from (v_status, v_items, v_ends_at, v_customer) then
        return private.stripe_result('applied', 'the same state as already applied', null, null, v_id);
      end if;
      return private.stripe_result('needs_refetch',
        'another state of the subscription carries the same timestamp',
        jsonb_build_object('object', 'subscription', 'id', v_id), null, v_id);
    end if;
    update lic.stripe_subscriptions as s
    set
      livemode = coalesce((subscription ->> 'livemode')::boolean, s.livemode),
      customer = v_customer, status = v_status, items = v_items, period_end = v_period_end, ends_at = v_ends_at,
      past_due_since = case when v_status = 'past_due' then coalesce(s.past_due_since, stripe_on_subscription.observed_at) end,
      metadata = coalesce(case when jsonb_typeof(subscription -> 'metadata') = 'object' then subscription -> 'metadata' end,
        '{}'),
      observed_at = greatest(s.observed_at, stripe_on_subscription.observed_at),
      observed_event_id = event_id, updated_at = now()
    where s.account_id = stripe_on_subscription.account_id and s.subscription_id = v_id;
  else
    insert into lic.stripe_subscriptions (
      account_id, subscription_id, livemode, customer, status, items, period_end, ends_at, past_due_since, metadata,
      observed_at, observed_event_id
    )
    values (
      stripe_on_subscription.account_id, v_id, (subscription ->> 'livemode')::boolean, v_customer, v_status, v_items,
      v_period_end, v_ends_at, case when v_status = 'past_due' then stripe_on_subscription.observed_at end,
      coalesce(case when jsonb_typeof(subscription -> 'metadata') = 'object' then subscription -> 'metadata' end, '{}'),
      stripe_on_subscription.observed_at, event_id
    );
  end if;
  perform private.stripe_customer(
    account_id, v_customer,
    coalesce(
      subscription #>> '{metadata,licentric_external_id}',
      (select c.client_reference_id from lic.stripe_checkouts as c
        where c.account_id = stripe_on_subscription.account_id and c.customer = v_customer
          and c.client_reference_id is not null
        order by c.session_id limit 1)
    ),
    (select c.email from lic.stripe_checkouts as c
      where c.account_id = stripe_on_subscription.account_id and c.customer = v_customer and c.email is not null
      order by c.session_id limit 1)
  );
  return private.stripe_subscription_outcome(account_id, v_id);
end;
$$;
comment on function private.stripe_on_subscription(uuid, jsonb, timestamptz, text, boolean) is
'Merge a subscription snapshot (newest wins; terminal states stay; a same-second conflict asks for a refetch) '
'and derive its licenses. fetched: the snapshot was just read from Stripe, so it is the newest.';

create or replace function private.stripe_on_checkout(account_id uuid, session jsonb, type text)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_id text := session ->> 'id';
  v_mode text := session ->> 'mode';
  v_customer text := private.stripe_id(session -> 'customer');
  v_subscription text := private.stripe_id(session -> 'subscription');
  v_status text := case type
    when 'checkout.session.async_payment_succeeded' then 'paid'
    when 'checkout.session.async_payment_failed' then 'failed'
    else session ->> 'payment_status'
  end;
  v_line_items jsonb;
  v_checkout lic.stripe_checkouts;
  v_sync jsonb;
begin
  if v_id is null or v_mode is null then
    return private.stripe_result('ignored', 'the checkout session has no id or mode');
  end if;
  if v_mode not in ('subscription', 'payment') then
    return private.stripe_result('ignored', format('a %s-mode checkout gives no license', v_mode));
  end if;
  if v_status not in ('paid', 'unpaid', 'no_payment_required', 'failed') then
    return private.stripe_result('ignored', format('unknown payment status %s: nothing changed', v_status));
  end if;
  if jsonb_typeof(session #> '{line_items,data}') = 'array' then
    select coalesce(jsonb_agg(jsonb_build_object(
      'price', private.stripe_id(li -> 'price'),
      'product', private.stripe_id(li #> '{price,product}'),
      'quantity', li -> 'quantity'
    )), '[]') into v_line_items
    from jsonb_array_elements(session #> '{line_items,data}') as li;
  end if;
  perform private.stripe_lock(account_id, coalesce(v_customer, v_id));
  -- Payment status only moves forward: paid beats failed beats unpaid.
  insert into lic.stripe_checkouts as c (
    account_id, session_id, livemode, mode, customer, subscription_id, payment_intent_id, client_reference_id,
    email, payment_status, line_items, policy_code, session_created_at
  )
  values (
    stripe_on_checkout.account_id, v_id, (session ->> 'livemode')::boolean, v_mode, v_customer, v_subscription,
    private.stripe_id(session -> 'payment_intent'), session ->> 'client_reference_id',
    coalesce(session #>> '{customer_details,email}', session ->> 'customer_email'), v_status, v_line_items,
    session #>> '{metadata,licentric_policy}', private.stripe_time(session -> 'created')
  )
  on conflict on constraint stripe_checkouts_pkey do update
  set
    customer = coalesce(c.customer, excluded.customer),
    subscription_id = coalesce(c.subscription_id, excluded.subscription_id),
    payment_intent_id = coalesce(c.payment_intent_id, excluded.payment_intent_id),
    client_reference_id = coalesce(c.client_reference_id, excluded.client_reference_id),
    email = coalesce(c.email, excluded.email),
    payment_status = case
      when 'paid' in (c.payment_status, excluded.payment_status) then 'paid'
      when 'no_payment_required' in (c.payment_status, excluded.payment_status) then 'no_payment_required'
      when 'failed' in (c.payment_status, excluded.payment_status) then 'failed'
      else 'unpaid'
    end,
    line_items = coalesce(c.line_items, excluded.line_items),
    policy_code = coalesce(c.policy_code, excluded.policy_code),
    session_created_at = coalesce(c.session_created_at, excluded.session_created_at),
    updated_at = now()
  returning c.* into v_checkout;
  perform private.stripe_customer(account_id, v_checkout.customer, v_checkout.client_reference_id, v_checkout.email);
  if v_mode = 'payment' then
    v_sync := private.stripe_sync_checkout(account_id, v_id);
    return private.stripe_result(v_sync ->> 'outcome', v_sync ->> 'detail', v_sync -> 'refetch', v_sync);
  end if;
  if v_subscription is null then
    return private.stripe_result('ignored', 'the subscription-mode session names no subscription');
  end if;
  if not exists (
    select from lic.stripe_subscriptions as s
    where s.account_id = stripe_on_checkout.account_id and s.subscription_id = v_subscription
  ) then
    return private.stripe_result('needs_refetch', 'the subscription has not been seen yet',
      jsonb_build_object('object', 'subscription', 'id', v_subscription), null, v_subscription);
  end if;
  return private.stripe_subscription_outcome(account_id, v_subscription);
end;
$$;
comment on function private.stripe_on_checkout(uuid, jsonb, text) is
'Merge a Checkout Session (the tenant''s user, the email, what a one-off payment bought and whether it is paid) '
'and derive the licenses it concerns.';

create or replace function private.stripe_payment_outcome(account_id uuid, charge_id text, payment_intent_id text)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_subscription text;
  v_customer text;
  v_session text;
  v_sync jsonb;
begin
  select i.subscription_id into v_subscription from lic.stripe_invoices as i
  where
    i.account_id = stripe_payment_outcome.account_id and i.subscription_id is not null
    and (
      i.charge_id = stripe_payment_outcome.charge_id
      or i.payment_intent_id = stripe_payment_outcome.payment_intent_id
      or i.invoice_id = (select c.invoice_id from lic.stripe_charges as c
        where c.account_id = stripe_payment_outcome.account_id and c.charge_id = stripe_payment_outcome.charge_id)
    )
  limit 1;
  if v_subscription is not null then
    select s.customer into v_customer from lic.stripe_subscriptions as s
    where s.account_id = stripe_payment_outcome.account_id and s.subscription_id = v_subscription;
    if v_customer is null then
      return private.stripe_result('needs_refetch', 'the payment''s subscription has not been seen yet',
        jsonb_build_object('object', 'subscription', 'id', v_subscription), null, v_subscription);
    end if;
    perform private.stripe_lock(account_id, v_customer);
    return private.stripe_subscription_outcome(account_id, v_subscription);
  end if;
  select c.session_id, c.customer into v_session, v_customer from lic.stripe_checkouts as c
  where
    c.account_id = stripe_payment_outcome.account_id and c.mode = 'payment'
    and c.payment_intent_id = stripe_payment_outcome.payment_intent_id;
  if v_session is not null then
    perform private.stripe_lock(account_id, coalesce(v_customer, v_session));
    v_sync := private.stripe_sync_checkout(account_id, v_session);
    return private.stripe_result(v_sync ->> 'outcome', v_sync ->> 'detail', v_sync -> 'refetch', v_sync);
  end if;
  if payment_intent_id is not null then
    -- From basil on a charge no longer names its invoice: ask Stripe which
    -- invoice this payment paid.
    return private.stripe_result('needs_refetch', 'the payment is not linked to a subscription or purchase yet',
      jsonb_build_object('object', 'invoice_payment', 'payment_intent', payment_intent_id));
  end if;
  return private.stripe_result('parked',
    'the payment is not linked to a subscription or purchase yet; it applies once its invoice arrives');
end;
$$;
comment on function private.stripe_payment_outcome(uuid, text, text) is
'Derive again the licenses a payment (charge or payment intent) belongs to, once it can be traced to them.';

create or replace function private.stripe_on_invoice(account_id uuid, invoice jsonb, type text, created timestamptz)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_id text := invoice ->> 'id';
  v_subscription text := private.stripe_invoice_subscription(invoice);
  v_customer text := private.stripe_id(invoice -> 'customer');
  v_paid boolean := type in ('invoice.paid', 'invoice.payment_succeeded');
  v_failed boolean := type = 'invoice.payment_failed';
  v_period_end timestamptz;
  v_amount_paid numeric := case when jsonb_typeof(invoice -> 'amount_paid') = 'number' then (invoice ->> 'amount_paid')::numeric end;
begin
  if v_id is null then
    return private.stripe_result('ignored', 'the invoice has no id');
  end if;
  -- The service period is on the lines (the invoice's own period is not it);
  -- a $0 invoice (a trial's first) pays for nothing.
  if v_paid and v_amount_paid is distinct from 0 then
    select max(private.stripe_time(li #> '{period,end}')) into v_period_end
    from jsonb_array_elements(
      case when jsonb_typeof(invoice #> '{lines,data}') = 'array' then invoice #> '{lines,data}' else '[]' end
    ) as li;
  end if;
  perform private.stripe_lock(account_id, coalesce(v_customer, v_subscription, v_id));
  insert into lic.stripe_invoices as i (
    account_id, invoice_id, subscription_id, customer, invoice_created_at, billing_reason, paid_at, period_end,
    first_failed_at, attempt_count, charge_id, payment_intent_id
  )
  values (
    stripe_on_invoice.account_id, v_id, v_subscription, v_customer, private.stripe_time(invoice -> 'created'),
    invoice ->> 'billing_reason',
    case when v_paid then coalesce(private.stripe_time(invoice #> '{status_transitions,paid_at}'), created) end,
    v_period_end,
    case when v_failed then created end,
    case when v_failed and jsonb_typeof(invoice -> 'attempt_count') = 'number' then (invoice ->> 'attempt_count')::integer end,
    private.stripe_id(invoice -> 'charge'), private.stripe_id(invoice -> 'payment_intent')
  )
  -- Facts only accumulate: paid stays paid, the paid period end is a max,
  -- the first failure a min.
  on conflict on constraint stripe_invoices_pkey do update
  set
    subscription_id = coalesce(i.subscription_id, excluded.subscription_id),
    customer = coalesce(i.customer, excluded.customer),
    invoice_created_at = coalesce(i.invoice_created_at, excluded.invoice_created_at),
    billing_reason = coalesce(i.billing_reason, excluded.billing_reason),
    paid_at = least(i.paid_at, excluded.paid_at),
    period_end = greatest(i.period_end, excluded.period_end),
    first_failed_at = least(i.first_failed_at, excluded.first_failed_at),
    attempt_count = greatest(i.attempt_count, excluded.attempt_count),
    charge_id = coalesce(i.charge_id, excluded.charge_id),
    payment_intent_id = coalesce(i.payment_intent_id, excluded.payment_intent_id);
  if v_subscription is null then
    return private.stripe_result('ignored', 'an invoice outside any subscription: recorded for its payments');
  end if;
  if not exists (
    select from lic.stripe_subscriptions as s
    where s.account_id = stripe_on_invoice.account_id and s.subscription_id = v_subscription
  ) then
    return private.stripe_result('needs_refetch', 'the invoice''s subscription has not been seen yet',
      jsonb_build_object('object', 'subscription', 'id', v_subscription), null, v_subscription);
  end if;
  return private.stripe_subscription_outcome(account_id, v_subscription);
end;
$$;
comment on function private.stripe_on_invoice(uuid, jsonb, text, timestamptz) is
'Merge an invoice''s payment or failure (once per invoice, whichever events say it) and derive its '
'subscription''s licenses.';

create or replace function private.stripe_on_charge(account_id uuid, charge jsonb)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_id text := charge ->> 'id';
  v_customer text := private.stripe_id(charge -> 'customer');
  v_charge lic.stripe_charges;
begin
  if v_id is null then
    return private.stripe_result('ignored', 'the charge has no id');
  end if;
  perform private.stripe_lock(account_id, coalesce(v_customer, v_id));
  -- amount_refunded is cumulative: the largest seen is the latest.
  insert into lic.stripe_charges as c (
    account_id, charge_id, payment_intent_id, invoice_id, customer, amount, amount_refunded, refunded
  )
  values (
    stripe_on_charge.account_id, v_id, private.stripe_id(charge -> 'payment_intent'),
    private.stripe_id(charge -> 'invoice'), v_customer,
    case when jsonb_typeof(charge -> 'amount') = 'number' then (charge ->> 'amount')::bigint end,
    case when jsonb_typeof(charge -> 'amount_refunded') = 'number' then (charge ->> 'amount_refunded')::bigint else 0 end,
    charge ->> 'refunded' = 'true'
  )
  on conflict on constraint stripe_charges_pkey do update
  set
    payment_intent_id = coalesce(c.payment_intent_id, excluded.payment_intent_id),
    invoice_id = coalesce(c.invoice_id, excluded.invoice_id),
    customer = coalesce(c.customer, excluded.customer),
    amount = coalesce(c.amount, excluded.amount),
    amount_refunded = greatest(c.amount_refunded, excluded.amount_refunded),
    refunded = c.refunded or excluded.refunded
  returning c.* into v_charge;
  return private.stripe_payment_outcome(account_id, v_charge.charge_id, v_charge.payment_intent_id);
end;
$$;
comment on function private.stripe_on_charge(uuid, jsonb) is
'Merge a charge''s refunds (full when refunded is true; partial ones are only recorded) and derive the licenses '
'its payment gave.';

create or replace function private.stripe_dispute_rank(status text)
returns integer
language sql
immutable
parallel safe
as $$
  -- A dispute moves up this order only; closed ones never reopen.
  select case status
    when 'warning_needs_response' then 1
    when 'warning_under_review' then 2
    when 'needs_response' then 3
    when 'under_review' then 4
    when 'warning_closed' then 10
    when 'won' then 10
    when 'lost' then 10
    when 'prevented' then 10
  end;
$$;
comment on function private.stripe_dispute_rank(text) is 'How far along a dispute status is; null for an unknown one.';

create or replace function private.stripe_on_dispute(account_id uuid, dispute jsonb, created timestamptz)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_id text := dispute ->> 'id';
  v_charge text := private.stripe_id(dispute -> 'charge');
  v_status text := dispute ->> 'status';
  v_customer text;
  v_dispute lic.stripe_disputes;
begin
  if v_id is null then
    return private.stripe_result('ignored', 'the dispute has no id');
  end if;
  if private.stripe_dispute_rank(v_status) is null then
    return private.stripe_result('ignored', format('unknown dispute status %s: nothing changed', v_status));
  end if;
  select c.customer into v_customer from lic.stripe_charges as c
  where c.account_id = stripe_on_dispute.account_id and c.charge_id = v_charge;
  perform private.stripe_lock(account_id, coalesce(v_customer, v_charge, v_id));
  insert into lic.stripe_disputes as d (account_id, dispute_id, charge_id, payment_intent_id, status, observed_at)
  values (
    stripe_on_dispute.account_id, v_id, v_charge, private.stripe_id(dispute -> 'payment_intent'), v_status,
    coalesce(private.stripe_time(dispute -> 'created'), created)
  )
  on conflict on constraint stripe_disputes_pkey do update
  set
    charge_id = coalesce(d.charge_id, excluded.charge_id),
    payment_intent_id = coalesce(d.payment_intent_id, excluded.payment_intent_id),
    status = case
      when private.stripe_dispute_rank(excluded.status) > private.stripe_dispute_rank(d.status) then excluded.status
      else d.status
    end,
    observed_at = least(d.observed_at, excluded.observed_at)
  returning d.* into v_dispute;
  return private.stripe_payment_outcome(account_id, v_dispute.charge_id, v_dispute.payment_intent_id);
end;
$$;
comment on function private.stripe_on_dispute(uuid, jsonb, timestamptz) is
'Merge a dispute''s status (it only moves forward) and derive the licenses its payment gave.';

create or replace function private.stripe_process(account_id uuid, event jsonb, livemode boolean)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_type text := event ->> 'type';
  v_object jsonb := event #> '{data,object}';
  v_created timestamptz := coalesce(private.stripe_time(event -> 'created'), now());
begin
  if livemode is not null and event ->> 'livemode' is distinct from livemode::text then
    return private.stripe_result('ignored', format(
      'a %s-mode event verified by a %s-mode signing secret: test and live are kept apart',
      case when event ->> 'livemode' = 'true' then 'live' else 'test' end,
      case when livemode then 'live' else 'test' end
    ));
  end if;
  if event ->> 'account' is not null then
    return private.stripe_result('ignored', 'an event of a connected account (Stripe Connect) is not this account''s');
  end if;
  case
    when v_type in (
      'checkout.session.completed', 'checkout.session.async_payment_succeeded',
      'checkout.session.async_payment_failed'
    ) then
      return private.stripe_on_checkout(account_id, v_object, v_type);
    when v_type in (
      'customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted',
      'customer.subscription.paused', 'customer.subscription.resumed', 'customer.subscription.trial_will_end'
    ) then
      return private.stripe_on_subscription(account_id, v_object, v_created, event ->> 'id');
    when v_type in ('invoice.paid', 'invoice.payment_succeeded', 'invoice.payment_failed') then
      return private.stripe_on_invoice(account_id, v_object, v_type, v_created);
    when v_type = 'charge.refunded' then
      return private.stripe_on_charge(account_id, v_object);
    when v_type in ('charge.dispute.created', 'charge.dispute.updated', 'charge.dispute.closed') then
      return private.stripe_on_dispute(account_id, v_object, v_created);
    else
      return private.stripe_result('ignored', format('Licentric does not act on %s events', v_type));
  end case;
end;
$$;
comment on function private.stripe_process(uuid, jsonb, boolean) is
'Apply one Stripe event by its type; livemode is the mode of the secret that verified it.';

create or replace function private.stripe_run(
  account_id uuid,
  ledger_id uuid,
  work jsonb,
  livemode boolean,
  fetched jsonb default null
)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_result jsonb;
  v_message text;
  v_event lic.stripe_events;
begin
  -- A rule that refuses the event (a full tenant plan, a value out of
  -- range) records it as failed: retrying would not help, reprocessing after
  -- the fix will. Anything else rolls the whole delivery back, so Stripe's
  -- retry finds it unrecorded.
  begin
    if fetched is null then
      v_result := private.stripe_process(account_id, work, livemode);
    else
      v_result := private.stripe_apply_fetched(account_id, ledger_id, work, fetched);
    end if;
  exception
    when sqlstate 'LPLAN' or sqlstate 'LSTAT' or sqlstate 'LINVL' or sqlstate 'LNTFD'
      or data_exception or check_violation then
      get stacked diagnostics v_message = message_text;
      v_result := private.stripe_result('failed', v_message);
  end;
  update lic.stripe_events as e
  set
    outcome = v_result ->> 'outcome',
    detail = v_result ->> 'detail',
    subscription_id = coalesce(v_result ->> 'subscription_id', e.subscription_id),
    processed_at = now(),
    refetched_at = case when fetched is null then e.refetched_at else now() end
  where e.account_id = stripe_run.account_id and e.id = ledger_id
  returning e.* into v_event;
  return jsonb_build_object('id', v_event.id, 'stripe_event_id', v_event.stripe_event_id) || v_result;
end;
$$;
comment on function private.stripe_run(uuid, uuid, jsonb, boolean, jsonb) is
'Process a recorded event (or an object fetched for it) and record the outcome on its ledger row.';

create or replace function private.stripe_apply_fetched(account_id uuid, ledger_id uuid, event jsonb, object jsonb)
returns jsonb
language plpgsql
volatile
as $$
declare
  v_invoice text := private.stripe_id(object -> 'invoice');
  v_payment_intent text := object #>> '{payment,payment_intent}';
begin
  case object ->> 'object'
    when 'subscription' then
      return private.stripe_on_subscription(account_id, object, now(), event ->> 'id', fetched => true);
    when 'checkout.session' then
      return private.stripe_on_checkout(account_id, object, 'checkout.session.fetched');
    when 'invoice_payment' then
      if v_invoice is null or v_payment_intent is null then
        raise exception using errcode = 'LINVL', column = 'object',
          message = 'an invoice payment needs invoice and payment.payment_intent';
      end if;
      insert into lic.stripe_invoices as i (account_id, invoice_id, payment_intent_id)
      values (account_id, v_invoice, v_payment_intent)
      on conflict on constraint stripe_invoices_pkey do update
      set payment_intent_id = coalesce(i.payment_intent_id, excluded.payment_intent_id);
      -- Now that the payment leads to its invoice, the event itself applies.
      return private.stripe_process(account_id, event, null);
    else
      raise exception using errcode = 'LINVL', column = 'object',
        message = format('a fetched %s cannot be applied', coalesce(object ->> 'object', 'object'));
  end case;
end;
$$;
comment on function private.stripe_apply_fetched(uuid, uuid, jsonb, jsonb) is
'Apply an object fetched from Stripe for an event that asked for it, through the same path as events.';

create or replace function private.stripe_begin(account_id uuid)
returns void
language plpgsql
volatile
as $$
begin
  perform private.set_context(account_id, 'stripe');
  if account_id is null or not exists (select from lic.accounts as a where a.account_id = stripe_begin.account_id) then
    raise exception using errcode = 'LNTFD', column = 'account_id', message = 'account not found';
  end if;
end;
$$;
comment on function private.stripe_begin(uuid) is
'Act for the account Stripe delivered to: the caller verified the signature with that account''s secret.';

create or replace function service.apply_stripe_event(account_id uuid, event jsonb, livemode boolean default null)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_ledger_id uuid;
  v_held lic.stripe_events;
begin
  perform private.stripe_begin(account_id);
  -- coalesce: a missing field makes the test null, and it must fail.
  if not coalesce(
    jsonb_typeof(event) = 'object' and event ->> 'object' = 'event'
    and jsonb_typeof(event -> 'id') = 'string' and length(event ->> 'id') between 1 and 255
    and jsonb_typeof(event -> 'type') = 'string' and length(event ->> 'type') <= 255
    and jsonb_typeof(event #> '{data,object}') = 'object',
    false
  ) then
    insert into lic.stripe_events (account_id, payload, outcome, detail, verified_livemode)
    values (
      apply_stripe_event.account_id, coalesce(event, 'null'), 'invalid',
      'not a Stripe event: it needs object "event", an id, a type and data.object', livemode
    )
    returning id into v_ledger_id;
    return jsonb_build_object('id', v_ledger_id, 'stripe_event_id', null) || private.stripe_result('invalid',
      'not a Stripe event: it needs object "event", an id, a type and data.object');
  end if;
  -- Once per event id: a concurrent duplicate waits here for the first
  -- delivery's transaction, then finds its row.
  insert into lic.stripe_events (
    account_id, stripe_event_id, type, livemode, verified_livemode, stripe_created_at, api_version, object_id,
    payload, outcome
  )
  values (
    apply_stripe_event.account_id, event ->> 'id', event ->> 'type',
    case event ->> 'livemode' when 'true' then true when 'false' then false end, livemode,
    private.stripe_time(event -> 'created'), left(event ->> 'api_version', 100),
    left(private.stripe_id(event #> '{data,object}'), 255), event, 'applied'
  )
  on conflict on constraint stripe_events_account_id_stripe_event_id_key do nothing
  returning id into v_ledger_id;
  if v_ledger_id is null then
    select e.* into v_held from lic.stripe_events as e
    where e.account_id = apply_stripe_event.account_id and e.stripe_event_id = event ->> 'id';
    return jsonb_build_object('id', v_held.id, 'stripe_event_id', v_held.stripe_event_id) || private.stripe_result(
      'duplicate', format('already recorded (%s)', v_held.outcome), null, null, v_held.subscription_id
    );
  end if;
  return private.stripe_run(account_id, v_ledger_id, event, livemode);
end;
$$;
comment on function service.apply_stripe_event(uuid, jsonb, boolean) is
'Record a Stripe event delivered to this account and apply it in the same transaction, once per event id, in '
'any order (docs/stripe.md: the status model). The caller has verified its signature; livemode is the mode of '
'the secret that did. Answers {outcome: applied | duplicate | stale | ignored | parked | needs_refetch | failed '
'| invalid, id, stripe_event_id, detail, refetch, licenses, subscription_id}. Errors: LNTFD (404) no such '
'account.';

create or replace function service.apply_stripe_refetch(account_id uuid, stripe_event_id text, object jsonb)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_event lic.stripe_events;
begin
  perform private.stripe_begin(account_id);
  select e.* into v_event from lic.stripe_events as e
  where e.account_id = apply_stripe_refetch.account_id and e.stripe_event_id = apply_stripe_refetch.stripe_event_id
  for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'stripe_event_id', message = 'Stripe event not found';
  end if;
  if jsonb_typeof(object) is distinct from 'object' then
    raise exception using errcode = 'LINVL', column = 'object', message = 'object must be a Stripe object';
  end if;
  return private.stripe_run(account_id, v_event.id, v_event.payload, v_event.verified_livemode, object);
end;
$$;
comment on function service.apply_stripe_refetch(uuid, text, jsonb) is
'Apply the object an event''s needs_refetch named, as just fetched from Stripe with the tenant''s key (a '
'subscription, a checkout session with its line items, or an invoice payment), and record the outcome on that '
'event. Answers as service.apply_stripe_event. Errors: LNTFD (404) no such account or event, LINVL (422).';

create or replace function api.reprocess_stripe_event(stripe_event_id uuid)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account(member_role => 'admin');
  v_event lic.stripe_events;
begin
  select e.* into v_event from lic.stripe_events as e
  where e.account_id = v_account_id and e.id = reprocess_stripe_event.stripe_event_id
  for update;
  if not found then
    raise exception using errcode = 'LNTFD', column = 'stripe_event_id', message = 'Stripe event not found';
  end if;
  if v_event.outcome = 'invalid' then
    raise exception using errcode = 'LSTAT', message = 'an invalid event cannot be reprocessed';
  end if;
  return jsonb_build_object('account_id', v_account_id)
    || private.stripe_run(v_account_id, v_event.id, v_event.payload, v_event.verified_livemode);
end;
$$;
comment on function api.reprocess_stripe_event(uuid) is
'Apply a recorded Stripe event again (after a mapping, a plan upgrade or a fix); facts merge idempotently, so '
'nothing counts twice. Answers as service.apply_stripe_event, with account_id. Errors: LNTFD (404), LSTAT (409) '
'invalid event.';

create or replace function private.stripe_sync_mapping(account_id uuid, stripe_price_id text, stripe_product_id text)
returns integer
language plpgsql
volatile
as $$
declare
  v_sub lic.stripe_subscriptions;
  v_checkout lic.stripe_checkouts;
  v_subscriptions text[] := '{}';
  v_sessions text[] := '{}';
  v_count integer;
begin
  for v_sub in
    select s.* from lic.stripe_subscriptions as s
    where
      s.account_id = stripe_sync_mapping.account_id
      and exists (
        select from jsonb_array_elements(s.items) as i
        where i ->> 'price' = stripe_price_id or i ->> 'product' = stripe_product_id
      )
  loop
    perform private.stripe_lock(account_id, v_sub.customer);
    -- A rule refusing one subscription (a full tenant plan) leaves its
    -- events parked and the mapping made; reprocess them later.
    begin
      perform private.stripe_sync_subscription(account_id, v_sub.subscription_id);
      v_subscriptions := v_subscriptions || v_sub.subscription_id;
    exception
      when sqlstate 'LPLAN' or sqlstate 'LSTAT' or sqlstate 'LINVL' or data_exception or check_violation then
        null;
    end;
  end loop;
  for v_checkout in
    select c.* from lic.stripe_checkouts as c
    where
      c.account_id = stripe_sync_mapping.account_id and c.mode = 'payment' and c.license_id is null
      and exists (
        select from jsonb_array_elements(c.line_items) as i
        where i ->> 'price' = stripe_price_id or i ->> 'product' = stripe_product_id
      )
  loop
    perform private.stripe_lock(account_id, coalesce(v_checkout.customer, v_checkout.session_id));
    begin
      perform private.stripe_sync_checkout(account_id, v_checkout.session_id);
      v_sessions := v_sessions || v_checkout.session_id;
    exception
      when sqlstate 'LPLAN' or sqlstate 'LSTAT' or sqlstate 'LINVL' or data_exception or check_violation then
        null;
    end;
  end loop;
  update lic.stripe_events as e
  set
    outcome = 'applied',
    detail = format('applied when %s was mapped', coalesce(stripe_price_id, stripe_product_id)),
    processed_at = now()
  where
    e.account_id = stripe_sync_mapping.account_id and e.outcome = 'parked'
    and (e.subscription_id = any(v_subscriptions) or e.object_id = any(v_sessions));
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
comment on function private.stripe_sync_mapping(uuid, text, text) is
'After a price or product was mapped: derive again the licenses of every subscription and purchase that sold it, '
'and mark the events parked for want of it applied. Returns how many events that was.';

-- The grace sweep. Validation already answers OVERDUE once a grace period
-- ends; the sweep makes the status say so (suspended), frees the tenant
-- plan's count and emits license.suspended. This is the sweep at a given
-- instant: worker.suspend_overdue_licenses (below) runs it at now(), and
-- tests that need another instant call it as lic_maint.
create or replace function private.suspend_overdue_licenses(at timestamptz, batch_size integer)
returns integer
language plpgsql
volatile
as $$
declare
  v_count integer := 0;
  v_due record;
  v_before lic.licenses;
  v_after lic.licenses;
begin
  if batch_size is null or batch_size < 1 then
    raise exception using errcode = 'LINVL', column = 'batch_size', message = 'batch_size must be at least 1';
  end if;
  for v_due in
    select l.account_id, l.id
    from lic.licenses as l
    where l.status = 'past_due' and l.grace_ends_at <= suspend_overdue_licenses.at
    order by l.grace_ends_at
    limit batch_size
    for update skip locked
  loop
    select l.* into v_before from lic.licenses as l where l.account_id = v_due.account_id and l.id = v_due.id;
    update lic.licenses as l
    set
      status = 'suspended',
      suspended_reason = 'the payment grace period ended',
      suspended_at = now(),
      updated_at = now()
    where l.account_id = v_due.account_id and l.id = v_due.id
    returning l.* into v_after;
    perform private.emit_event(
      v_after.account_id, 'license.suspended', to_jsonb(private.license_view(v_after)),
      private.previous_attributes(to_jsonb(private.license_view(v_before)), to_jsonb(private.license_view(v_after)))
    );
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- The clock is read here, not taken from the caller: an instant from
-- lic_worker could suspend every tenant's past_due licenses ahead of time.
create or replace function worker.suspend_overdue_licenses(batch_size integer default 1000)
returns integer
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
  select private.suspend_overdue_licenses(at => pg_catalog.now(), batch_size => suspend_overdue_licenses.batch_size);
$$;
comment on function worker.suspend_overdue_licenses(integer) is
'Suspend up to batch_size past_due licenses whose payment grace period has ended, across tenants, skipping '
'locked rows; emits license.suspended for each. Returns how many (call again while it returns batch_size). '
'Errors: LINVL batch_size below 1.';
