-- lic_maint (worker functions) crosses tenants only through these named
-- policies, each for one job. The expiry sweep: worker.expire_licenses.
create policy licenses__select__maint on lic.licenses for select to lic_maint using (true);
create policy licenses__update__maint on lic.licenses for update to lic_maint using (true) with check (true);
create policy license_policies__select__maint on lic.license_policies for select to lic_maint using (true);
create policy customers__select__maint on lic.customers for select to lic_maint using (true);
-- ... and refreshes the customers' licenses (functions/54_customer_licenses.sql).
create policy customers__update__maint on lic.customers for update to lic_maint using (true) with check (true);
create policy license_users__select__maint on lic.license_users for select to lic_maint using (true);
-- The plan usage trigger adjusts the account's counters when a license expires.
create policy accounts__select__maint on lic.accounts for select to lic_maint using (true);
create policy accounts__update__maint on lic.accounts for update to lic_maint using (true) with check (true);
create policy events__insert__maint on lic.events for insert to lic_maint with check (true);
-- The idempotency-key purge: worker.purge_idempotency_keys.
create policy idempotency_keys__select__maint on lic.idempotency_keys for select to lic_maint using (true);
create policy idempotency_keys__delete__maint on lic.idempotency_keys for delete to lic_maint using (true);
