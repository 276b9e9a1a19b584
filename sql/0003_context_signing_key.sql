-- The key that signs the tenant context. Any role may write any lic.* setting
-- (custom settings carry no privilege), so lic.account_id alone would let a
-- lic_app connection name any tenant. private.set_context signs the context
-- with this key and the readers trust only a correctly signed one. Only
-- lic_definer reads it, through the definer function private.context_signature.
create table private.context_signing_keys (
  singleton boolean primary key default true check (singleton),
  key bytea not null
);

-- 4 × 122 random bits; gen_random_uuid is core (pgcrypto is not on every server).
insert into private.context_signing_keys (key)
values (
  uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
  || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
);

revoke all on private.context_signing_keys from public;
grant select on private.context_signing_keys to lic_definer;
