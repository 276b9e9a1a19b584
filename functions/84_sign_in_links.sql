-- What the two magic-link sign-ins share, the portal's (functions/85_portal.sql,
-- per account) and the console's (functions/88_members.sql, per address):
-- the address and hash checks, the limits and the order the requests take
-- turns in. Each keeps its tokens in its own table; the counts are theirs.

create or replace function private.mask_email(email text)
returns text
language sql
immutable
parallel safe
as $$
  select pg_catalog.left(email, 1) || '***@' || pg_catalog.split_part(email, '@', 2);
$$;
comment on function private.mask_email(text) is
'An address as the confirm page shows it: its first character and its domain (a***@example.com).';

create or replace function private.require_hash(value bytea, param text)
returns void
language plpgsql
immutable
parallel safe
as $$
begin
  if value is null or octet_length(value) <> 32 then
    raise exception using errcode = 'LINVL', column = param, message = format('%s must be a sha256 (32 bytes)', param);
  end if;
end;
$$;
comment on function private.require_hash(bytea, text) is
'Refuse a token, session or IP hash that is not 32 bytes (a sha256). Errors: LINVL.';

create or replace function private.login_email(email text, param text default 'email')
returns text
language plpgsql
immutable
parallel safe
as $$
declare
  v_email text := pg_catalog.lower(email);
begin
  if v_email is null or v_email !~ '^[^@\s]+@[^@\s]+$' or pg_catalog.length(v_email) > 320 then
    raise exception using errcode = 'LINVL', column = param, message = format('%s is not a valid address', param);
  end if;
  return v_email;
end;
$$;
comment on function private.login_email(text, text) is
'An email address as sign-in stores and compares it (lowercased), after checking its form. Errors: LINVL.';

-- Limits on issuing links (reliability-security §3.2). Counted over tokens
-- issued, so an address nobody has, which stores nothing, counts for nothing;
-- the per-IP count covers those requests.
create or replace function private.login_limits(
  out email_per_minute integer,
  out email_per_hour integer,
  out ip_per_hour integer,
  out breaker_per_minute integer
)
returns record
language sql
immutable
parallel safe
as $$
  select 1, 5, 20, 100;
$$;
comment on function private.login_limits() is
'How many sign-in links may be issued: per address 1 a minute and 5 an hour, 100 a minute in all (a circuit '
'breaker: per account for the portal, per server for the console); and how many requests one IP hash may make '
'an hour (20, for any address, known or not).';

create or replace function private.login_limit_reason(
  email_minute integer,
  email_hour integer,
  ip_hour integer,
  breaker_minute integer,
  breaker text
)
returns text
language sql
immutable
parallel safe
as $$
  select case
    when email_minute >= l.email_per_minute or email_hour >= l.email_per_hour then 'email_rate_limited'
    when ip_hour > l.ip_per_hour then 'ip_rate_limited'
    when breaker_minute >= l.breaker_per_minute then breaker
  end
  from private.login_limits() as l;
$$;
comment on function private.login_limit_reason(integer, integer, integer, integer, text) is
'Why a link may not be issued given the counts so far (links to the address this minute and hour, requests of '
'the IP this hour, this one included, links this minute under the breaker), or null when it may.';

-- Requests for one address, then from one IP, take turns, so the counts are
-- exact under concurrency; always in this order, so they cannot deadlock.
create or replace function private.lock_login_request(scope text, email text, ip_hash bytea)
returns void
language sql
volatile
as $$
  select
    pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(scope || ':email:' || email, 0)),
    pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended(scope || ':ip:' || pg_catalog.encode(ip_hash, 'hex'), 0));
$$;
comment on function private.lock_login_request(text, text, bytea) is
'Serialise sign-in link requests for an address, then for an IP hash, within a scope (a portal''s account, the '
'console).';
