-- The rate limits' counters (decision 59). A row counts the requests of one
-- bucket in one calendar minute on one server backend: a busy key's
-- concurrent requests each write their own backend's row, so none waits on
-- another's lock, and the limit reads the sum of the bucket's rows. Unlogged:
-- counters need no WAL and no crash safety (a crash forgets a minute of
-- counts), so counting never waits for a WAL flush. Rows of past minutes are
-- deleted by the counting functions themselves (functions/16_rate_limits.sql).

-- Per account: an API key or agent token after it authenticated, and the
-- account's own Stripe deliveries (principal_id is then the account id).
create unlogged table lic.request_counts (
  account_id uuid not null,
  principal_id uuid not null,
  window_start timestamptz not null,
  backend_pid integer not null,
  requests integer not null,
  primary key (account_id, principal_id, window_start, backend_pid)
);

-- Per client address (its keyed hash), for requests no key vouches for: keys
-- that fail to authenticate, and the portal's pages. No account: private, as
-- private.portal_slugs (decision 44).
create unlogged table private.client_request_counts (
  client_hash bytea not null check (length(client_hash) = 32),
  window_start timestamptz not null,
  backend_pid integer not null,
  requests integer not null,
  primary key (client_hash, window_start, backend_pid)
);
create index client_request_counts__window_start_idx on private.client_request_counts (window_start);

grant select, insert, update, delete on lic.request_counts, private.client_request_counts to lic_definer;
