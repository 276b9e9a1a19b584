-- One tenant must not monopolise webhook delivery (issue 12, item 7;
-- decisions 61 and 62).

-- Endpoints per tenant plan, counted like active licenses and agents
-- (decision 18: a counter kept by triggers, one conditional update). A null
-- limit is unlimited; lic.accounts.max_webhook_endpoints overrides the plan's.
alter table lic.tenant_plans
add column max_webhook_endpoints integer check (max_webhook_endpoints > 0);

update lic.tenant_plans
set max_webhook_endpoints = case code when 'free' then 16 when 'starter' then 64 when 'growth' then 256 end;

alter table lic.accounts
add column max_webhook_endpoints integer check (max_webhook_endpoints > 0),
add column webhook_endpoints integer not null default 0 check (webhook_endpoints >= 0);

-- An account already past its cap keeps its endpoints; it adds none until it
-- is under it.
update lic.accounts as a
set webhook_endpoints = (
  select count(*) from lic.webhook_endpoints as e
  where e.account_id = a.account_id
);

-- An endpoint's creation, updates and deletion are no longer delivered by
-- webhook (decision 61): they leave the subscribable types. An endpoint that
-- listed nothing else keeps the one lifecycle event still delivered.
update lic.webhook_endpoints as e
set
  event_types = coalesce(
    nullif(
      array(
        select t.type from unnest(e.event_types) as t (type)
        where t.type not in ('webhook_endpoint.created', 'webhook_endpoint.updated', 'webhook_endpoint.deleted')
        order by t.type
      ),
      '{}'
    ),
    '{webhook_endpoint.disabled}'
  )
where e.event_types && '{webhook_endpoint.created,webhook_endpoint.updated,webhook_endpoint.deleted}';

-- The claim goes account by account (decision 62): each account's pending
-- deliveries by due time. It replaces the claim's index across tenants.
create index webhook_deliveries__account_id_next_attempt_at_idx
on lic.webhook_deliveries (account_id, next_attempt_at) where status = 'pending';
drop index lic.webhook_deliveries__next_attempt_at_idx;
