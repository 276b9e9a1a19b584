-- Ids made within one millisecond sorted at random, so "newest first" lists
-- could disagree with creation order. Now (RFC 9562 method 3, as PostgreSQL
-- 18's uuidv7 does) the 12 bits after the version carry the fraction of the
-- millisecond, and the milliseconds are truncated, not rounded.
create or replace function private.uuid_v7(at timestamptz default clock_timestamp())
returns uuid
language sql
volatile
parallel safe
as $$
  select encode(
    overlay(
      overlay(
        uuid_send(gen_random_uuid())
        placing substring(int8send(floor(extract(epoch from at) * 1000)::bigint) from 3)
        from 1 for 6
      )
      placing int2send((
        28672 -- 0x7000: version 7
        + floor((extract(epoch from at) * 1000 - floor(extract(epoch from at) * 1000)) * 4096)
      )::smallint)
      from 7 for 2
    ),
    'hex'
  )::uuid;
$$;

comment on type api.account is
'An account (tenant): plan, limits (null = unlimited) and current usage counts.';
comment on type api.api_key is
'An API key without its secret, except in the answer that creates it.';
comment on type api.auth_context is
'Who the current transaction acts for: the account, the key and its kind.';
comment on type api.idempotent_response is
'A stored answer to a request made with an Idempotency-Key; null status means none is stored.';
