-- Idempotency keys are kept 24 hours. worker.purge_idempotency_keys deletes
-- older ones across accounts, oldest first; it needs an index that leads with
-- the time, not the account (the one exception to account_id leading: a
-- cross-tenant sweep by age).

create index idempotency_keys__created_at_idx on lic.idempotency_keys (created_at);

grant select, delete on lic.idempotency_keys to lic_maint;
