-- The tenant console's overview (issue 13, functions/90_console.sql): what
-- the first page shows beside the plan (api.get_account) and the meters'
-- usage (api.usage), in one read.
create type api.console_overview as (
  licenses_by_status jsonb,
  stripe jsonb,
  webhooks jsonb,
  checklist jsonb
);
comment on type api.console_overview is
'The console''s overview of the account: licenses_by_status ({status: count} by effective status); stripe, one '
'object per mode ([{livemode, connected, api_key, last_event_at, failed_last_7_days, parked, needs_refetch}], '
'test mode first); webhooks ({endpoints, disabled, pending, failed_last_7_days, last_succeeded_at}); and the '
'getting-started checklist ({policy, entitlement_attached, stripe_connected, mapping, license, stripe_event}, '
'each true once done).';
