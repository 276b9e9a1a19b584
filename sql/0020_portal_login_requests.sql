-- Every sign-in link request a portal receives, whether or not its email
-- belongs to a customer: the per-client limit counts them all, so asking for
-- unknown addresses is limited like asking for known ones, in every API
-- process at once. A row holds the keyed hash of the client address and the
-- instant, nothing of the email; rows older than an hour are deleted by the
-- next request to the same portal.

create table lic.portal_login_requests (
  account_id uuid not null references lic.accounts (account_id),
  id uuid not null default private.uuid_v7(),
  ip_hash bytea not null check (length(ip_hash) = 32),
  requested_at timestamptz not null default now(),
  primary key (account_id, id)
);

create index portal_login_requests__account_id_ip_hash_requested_at_idx
on lic.portal_login_requests (account_id, ip_hash, requested_at);
create index portal_login_requests__account_id_requested_at_idx
on lic.portal_login_requests (account_id, requested_at);

grant select, insert, delete on lic.portal_login_requests to lic_definer;
