-- Read functions for the tenant console's pages (issue 13, decision 76): what
-- no other api function answers in one call. Every statement names the
-- account (DESIGN §2).

create or replace function api.get_console_overview()
returns api.console_overview
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_account_id uuid := private.require_account();
  v_week_ago timestamptz := now() - interval '7 days';
  v_overview api.console_overview;
begin
  select coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
  into v_overview.licenses_by_status
  from (
    select private.effective_status(l.status, l.expires_at, l.grace_ends_at) as status, count(*) as n
    from lic.licenses as l
    where l.account_id = v_account_id
    group by 1
  ) as s;

  select jsonb_agg(
    jsonb_build_object(
      'livemode', m.livemode,
      'connected', c.livemode is not null,
      'api_key', c.api_key_redacted is not null,
      'last_event_at', e.last_event_at,
      'failed_last_7_days', coalesce(e.failed, 0),
      'parked', coalesce(e.parked, 0),
      'needs_refetch', coalesce(e.needs_refetch, 0)
    ) order by m.livemode
  )
  into v_overview.stripe
  from (values (false), (true)) as m (livemode)
  left join lic.stripe_connections as c on c.account_id = v_account_id and c.livemode = m.livemode
  left join lateral (
    select
      max(se.received_at) as last_event_at,
      count(*) filter (where se.outcome in ('failed', 'invalid') and se.received_at >= v_week_ago) as failed,
      count(*) filter (where se.outcome = 'parked') as parked,
      count(*) filter (where se.outcome = 'needs_refetch') as needs_refetch
    from lic.stripe_events as se
    where se.account_id = v_account_id and coalesce(se.verified_livemode, se.livemode) = m.livemode
  ) as e on true;

  select jsonb_build_object(
    'endpoints', count(*),
    'disabled', count(*) filter (where not w.enabled)
  )
  into v_overview.webhooks
  from lic.webhook_endpoints as w
  where w.account_id = v_account_id;

  select v_overview.webhooks || jsonb_build_object(
    'pending', count(*) filter (where d.status = 'pending'),
    'failed_last_7_days', count(*) filter (where d.status = 'failed' and d.created_at >= v_week_ago),
    'last_succeeded_at', max(d.succeeded_at)
  )
  into v_overview.webhooks
  from lic.webhook_deliveries as d
  where d.account_id = v_account_id;

  v_overview.checklist := jsonb_build_object(
    'policy', exists (select from lic.license_policies as p where p.account_id = v_account_id),
    'entitlement_attached', exists (
      select from lic.policy_entitlements as pe where pe.account_id = v_account_id
    ),
    'stripe_connected', exists (select from lic.stripe_connections as c where c.account_id = v_account_id),
    'mapping', exists (select from lic.stripe_mappings as sm where sm.account_id = v_account_id),
    'license', exists (select from lic.licenses as l where l.account_id = v_account_id),
    'stripe_event', exists (select from lic.stripe_events as se where se.account_id = v_account_id)
  );
  return v_overview;
end;
$$;
comment on function api.get_console_overview() is
'The console''s overview of the current account: licenses by effective status, Stripe health per mode, webhook '
'delivery health and the getting-started checklist (api.console_overview). Errors: LAUTH (401), LDNID (403).';
