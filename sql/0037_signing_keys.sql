-- Offline license files (issue 14, decisions 73-75): each account signs the
-- files it issues with an Ed25519 key of its own. The key pair is made and
-- the private half encrypted in Python (SecretBox, purpose signing_key, bound
-- to the account; LICENTRIC_SECRET_KEY never reaches the database); SQL keeps
-- the public key, the ciphertext, and which key is current. A rotation
-- retires the current key: retired keys stay listed, so files they signed
-- still verify.
create table lic.signing_keys (
  account_id uuid not null references lic.accounts (account_id),
  -- The key id (kid) a license file names.
  id uuid not null default private.uuid_v7(),
  algorithm text not null default 'Ed25519' check (algorithm = 'Ed25519'),
  public_key bytea not null check (length(public_key) = 32),
  private_key_ciphertext bytea not null check (length(private_key_ciphertext) between 1 and 1024),
  created_at timestamptz not null default now(),
  retired_at timestamptz,
  primary key (account_id, id)
);

-- At most one current key per account: concurrent first uses make one.
create unique index signing_keys__account_id_current_idx
on lic.signing_keys (account_id) where retired_at is null;

grant select, insert, update on lic.signing_keys to lic_definer;

create type api.signing_key as (
  kid uuid,
  algorithm text,
  public_key text,
  created_at timestamptz,
  retired_at timestamptz
);
comment on type api.signing_key is
'A public signing key of the account: its id (kid, named by the license files it signs), the algorithm '
'(Ed25519), the 32-byte public key in base64url without padding, when it was made and when a rotation retired '
'it (null: current, signing new files). Never the private half.';

create type api.license_file_content as (
  id uuid,
  kid uuid,
  private_key_ciphertext bytea,
  payload text
);
comment on type api.license_file_content is
'What the web layer signs to make a license file: the file''s id, the key (id and encrypted private half) '
'and the payload, JSON text whose exact UTF-8 bytes are signed.';
