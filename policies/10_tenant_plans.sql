-- Reference data owned by no tenant: readable by the roles that compute
-- limits, writable by no one but migrations.
alter table lic.tenant_plans enable row level security;
alter table lic.tenant_plans force row level security;

create policy tenant_plans__select__readers on lic.tenant_plans
for select to lic_definer, lic_maint
using (true);
