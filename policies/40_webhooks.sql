-- Webhooks cross tenants as lic_maint (decision 34), each policy for one job:
-- the fan-out trigger on lic.events when a worker sweep emits an event (read
-- the account's endpoints, make their deliveries); the webhook worker
-- functions (functions/80_webhooks.sql): claim (read deliveries, endpoints
-- and events; lease deliveries), record an attempt (log it, reschedule or
-- finish the delivery, start or stop the endpoint's failure clock, disable
-- it), release leases and purge finished deliveries.
create policy webhook_endpoints__select__maint on lic.webhook_endpoints for select to lic_maint using (true);
create policy webhook_endpoints__update__maint on lic.webhook_endpoints for update to lic_maint
using (true) with check (true);
create policy webhook_deliveries__select__maint on lic.webhook_deliveries for select to lic_maint using (true);
create policy webhook_deliveries__insert__maint on lic.webhook_deliveries for insert to lic_maint with check (true);
create policy webhook_deliveries__update__maint on lic.webhook_deliveries for update to lic_maint
using (true) with check (true);
create policy webhook_deliveries__delete__maint on lic.webhook_deliveries for delete to lic_maint using (true);
create policy webhook_attempts__insert__maint on lic.webhook_attempts for insert to lic_maint with check (true);
create policy events__select__maint on lic.events for select to lic_maint using (true);
