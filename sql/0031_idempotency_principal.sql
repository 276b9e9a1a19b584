-- A stored Idempotency-Key answer belongs to the principal that made it (the
-- API key or agent of the signed context; decision 57): its kind and id join
-- the key, so no other key of the account replays it, whatever its kind. A
-- context without a principal id stores the nil uuid: one principal per kind.

alter table lic.idempotency_keys
drop constraint idempotency_keys_pkey,
add column principal_kind text,
add column principal_id uuid;

-- Answers stored before this migration name no principal, and any key of the
-- account could replay them. Each is kept for every usable secret key of its
-- account (which can read anything an answer holds), so a backend retrying
-- across the upgrade still gets its answer; publishable keys and agents no
-- longer do.
insert into lic.idempotency_keys (
  account_id, principal_kind, principal_id, key, request_fingerprint, response_status, response_body, created_at
)
select
  i.account_id,
  'secret' as principal_kind,
  k.id as principal_id,
  i.key,
  i.request_fingerprint,
  i.response_status,
  i.response_body,
  i.created_at
from lic.idempotency_keys as i
inner join lic.api_keys as k
  on
    i.account_id = k.account_id
    and k.kind = 'secret'
    and k.revoked_at is null
    and (k.expires_at is null or k.expires_at > now())
where i.principal_kind is null;

delete from lic.idempotency_keys as i
where i.principal_kind is null;

alter table lic.idempotency_keys
alter column principal_kind set not null,
alter column principal_id set not null,
add primary key (account_id, principal_kind, principal_id, key);
