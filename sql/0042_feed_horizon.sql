-- The entitlement feed's horizon ignores transactions that run in another
-- database of the server (decision 81): private.feed_horizon reads which
-- database each running transaction id belongs to. lic_definer reads only
-- backend_xid and datid there; nothing it answers shows another session.
grant select on pg_catalog.pg_stat_activity to lic_definer;
grant execute on function pg_catalog.pg_stat_get_activity(integer) to lic_definer;
