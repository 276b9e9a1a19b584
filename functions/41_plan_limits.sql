-- The tenant plan's limits (active licenses, agents, webhook endpoints),
-- enforced exactly under concurrency: triggers keep counters on lic.accounts,
-- and an increase is one conditional update of the account row, so parallel
-- creators queue on that row and the one that would pass the limit fails with
-- LPLAN.

create or replace function private.adjust_plan_usage(
  account_id uuid,
  licenses integer,
  agents integer,
  webhook_endpoints integer
)
returns void
language plpgsql
volatile
as $$
declare
  v_limits record;
begin
  if licenses = 0 and agents = 0 and webhook_endpoints = 0 then
    return;
  end if;
  update lic.accounts as a
  set
    active_licenses = a.active_licenses + licenses,
    active_agents = a.active_agents + agents,
    webhook_endpoints = a.webhook_endpoints + adjust_plan_usage.webhook_endpoints
  from lic.tenant_plans as p
  where
    a.account_id = adjust_plan_usage.account_id
    and p.code = a.plan
    and (licenses <= 0 or p.max_active_licenses is null and a.max_active_licenses is null
      or a.active_licenses + licenses <= coalesce(a.max_active_licenses, p.max_active_licenses))
    and (agents <= 0 or p.max_agents is null and a.max_agents is null
      or a.active_agents + agents <= coalesce(a.max_agents, p.max_agents))
    and (adjust_plan_usage.webhook_endpoints <= 0 or p.max_webhook_endpoints is null and a.max_webhook_endpoints is null
      or a.webhook_endpoints + adjust_plan_usage.webhook_endpoints
      <= coalesce(a.max_webhook_endpoints, p.max_webhook_endpoints));
  if not found then
    select
      p.name,
      coalesce(a.max_active_licenses, p.max_active_licenses) as licenses,
      coalesce(a.max_agents, p.max_agents) as agents,
      coalesce(a.max_webhook_endpoints, p.max_webhook_endpoints) as webhook_endpoints
    into v_limits
    from lic.accounts as a join lic.tenant_plans as p on p.code = a.plan
    where a.account_id = adjust_plan_usage.account_id;
    raise exception using errcode = 'LPLAN', message = format(
      'the %s plan allows %s active licenses, %s agents and %s webhook endpoints; upgrade the plan or free one '
      'first',
      v_limits.name, coalesce(v_limits.licenses::text, 'unlimited'), coalesce(v_limits.agents::text, 'unlimited'),
      coalesce(v_limits.webhook_endpoints::text, 'unlimited')
    );
  end if;
end;
$$;
comment on function private.adjust_plan_usage(uuid, integer, integer, integer) is
'Add to the account''s active license, agent and webhook endpoint counts; raises LPLAN if an increase passes '
'the plan limit (or the account''s own).';

create or replace function private.tg_licenses__plan_usage()
returns trigger
language plpgsql
as $$
declare
  v_was boolean := tg_op <> 'INSERT' and old.status in ('active', 'past_due');
  v_is boolean := tg_op <> 'DELETE' and new.status in ('active', 'past_due');
begin
  if v_was is distinct from v_is then
    perform private.adjust_plan_usage(
      coalesce(new.account_id, old.account_id), case when v_is then 1 else -1 end, 0, 0
    );
  end if;
  return null;
end;
$$;
comment on function private.tg_licenses__plan_usage() is
'Keeps lic.accounts.active_licenses equal to the account''s active and past_due licenses.';

create or replace trigger licenses__plan_usage
after insert or update of status or delete on lic.licenses
for each row execute function private.tg_licenses__plan_usage();

create or replace function private.tg_agents__plan_usage()
returns trigger
language plpgsql
as $$
declare
  v_was boolean := tg_op <> 'INSERT' and old.status = 'active';
  v_is boolean := tg_op <> 'DELETE' and new.status = 'active';
begin
  if v_was is distinct from v_is then
    perform private.adjust_plan_usage(
      coalesce(new.account_id, old.account_id), 0, case when v_is then 1 else -1 end, 0
    );
  end if;
  return null;
end;
$$;
comment on function private.tg_agents__plan_usage() is
'Keeps lic.accounts.active_agents equal to the account''s active agents.';

create or replace trigger agents__plan_usage
after insert or update of status or delete on lic.agents
for each row execute function private.tg_agents__plan_usage();

create or replace function private.tg_webhook_endpoints__plan_usage()
returns trigger
language plpgsql
as $$
begin
  perform private.adjust_plan_usage(
    coalesce(new.account_id, old.account_id), 0, 0, case when tg_op = 'INSERT' then 1 else -1 end
  );
  return null;
end;
$$;
comment on function private.tg_webhook_endpoints__plan_usage() is
'Keeps lic.accounts.webhook_endpoints equal to the account''s webhook endpoints (enabled or not).';

create or replace trigger webhook_endpoints__plan_usage
after insert or delete on lic.webhook_endpoints
for each row execute function private.tg_webhook_endpoints__plan_usage();
