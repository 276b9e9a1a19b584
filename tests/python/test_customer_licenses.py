"""lic.customers.licenses under concurrency: two transactions changing two
licenses of one customer at once both reach the customer's row, so a check by
customer (which reads only that row) never misses a committed change."""

from __future__ import annotations

import threading
import time

import psycopg

from licensing_support import make_customer, make_license, make_policy, superuser


def test_concurrent_changes_to_one_customers_licenses_are_both_kept(database_url, account):
    policy = make_policy(database_url, account.id)
    customer = make_customer(database_url, account.id, "ada@example.com")
    superuser(database_url, "update lic.customers set external_id = 'user_42' where id = %s", (customer,))
    first, second = (make_license(database_url, account.secret_key, policy, customer) for _ in range(2))

    def suspend(conn: psycopg.Connection, license_id: str) -> None:
        conn.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
        conn.execute("select from api.suspend_license(%s)", (license_id,))

    with psycopg.connect(database_url) as a, psycopg.connect(database_url) as b:
        suspend(a, first)  # holds the customer's row until it commits
        blocked_pid = b.info.backend_pid
        worker = threading.Thread(target=lambda: (suspend(b, second), b.commit()))
        worker.start()
        for _ in range(200):  # until b waits for a's lock
            [waiting] = superuser(
                database_url,
                "select wait_event_type = 'Lock' as locked from pg_stat_activity where pid = %s",
                (blocked_pid,),
            )
            if waiting["locked"]:
                break
            time.sleep(0.05)
        assert waiting["locked"], "the second transaction did not wait for the first"
        a.commit()
        worker.join(timeout=10)

    [row] = superuser(
        database_url,
        "select array(select l.status from unnest(c.licenses) as l order by l.license_id) as statuses"
        " from lic.customers as c where c.id = %s",
        (customer,),
    )
    assert row["statuses"] == ["suspended", "suspended"]
    [check] = superuser(
        database_url,
        "select (api.check_entitlement('anything', customer_external_id => 'user_42')).reason"
        " from api.authenticate(secret => %s)",
        (account.secret_key,),
    )
    assert check["reason"] == "NO_VALID_LICENSE"
