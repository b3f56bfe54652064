"""The sample app on compose.yaml's ``postgres`` service (``make up-postgres``).

Its own stack (not the package's SQLite one): the ``postgres`` profile on, every
Django service on ``DATABASE_URL=postgres://...@postgres:5432/...``.  What it
proves, through the edge's published :8000 only, with the database checked
directly in its container:

- rows written through the stack are in PostgreSQL, and survive a restart of
  every appserver replica;
- an upload in flight on the replica being restarted still completes whole
  (SIGTERM is graceful, and edge streams the body to the replica holding it);
- workers keep their connections (CONN_MAX_AGE) and a PostgreSQL restart
  costs no failed request (CONN_HEALTH_CHECKS reconnects).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.postgres_stack import DATABASE, PostgresComposeTopology, SlowUpload
from tests.support.topology import DJANGO, Response, TopologyError, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(420)]

UPLOAD_SIZE = 8 * 1024 * 1024  # 128 chunks of 64 KiB, one every 50 ms: about 6.4 s


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresComposeTopology]:
    topology = PostgresComposeTopology(tmp_path_factory.mktemp("postgres-stack"))
    try:
        topology.up()
        yield topology
    except TopologyError as exc:
        pytest.fail(f"the compose stack on PostgreSQL did not come up: {exc}", pytrace=False)
    finally:
        topology.down()


def _post_item(port: int, name: str) -> Response:
    return fetch(
        port,
        "/api/items",
        method="POST",
        body=json.dumps({"name": name, "price_cents": 1234}).encode(),
        headers={"Content-Type": "application/json"},
    )


def test_writes_and_an_upload_survive_restarting_every_appserver_replica(
    pg_stack: PostgresComposeTopology,
) -> None:
    port = pg_stack.ports[DJANGO]
    # The seed migration ran once, on PostgreSQL (migrate is the only writer).
    seeded = int(pg_stack.psql("SELECT count(*) FROM shop_item")[0])
    listed = fetch(port, "/api/items")
    assert listed.status == 200 and listed.json()["count"] == seeded > 0, listed.body[:300]

    tag = uuid.uuid4().hex[:8]
    written: dict[int, str] = {}
    for n in range(6):
        response = _post_item(port, f"before-restart-{tag}-{n}")
        assert response.status == 201, f"{response.status}: {response.body[:300]!r}"
        written[response.json()["id"]] = f"before-restart-{tag}-{n}"
    ids = ",".join(str(i) for i in written)
    in_db = dict(
        line.split("|", 1)
        for line in pg_stack.psql(f"SELECT id, name FROM shop_item WHERE id IN ({ids})")
    )
    assert {int(k): v for k, v in in_db.items()} == written

    replicas = pg_stack.appserver_replicas()
    assert len(replicas) == 2, replicas
    upload = SlowUpload(port, "/api/echo", size=UPLOAD_SIZE).start()
    upload.wait_started()
    restarted_at: dict[str, float] = {}
    for name in replicas:
        restarted_at[name] = time.monotonic()
        pg_stack.restart(name)
    result = upload.join(timeout=120)

    assert result.error is None and result.status == 200, (
        f"the upload did not survive the restarts: {result}\n{pg_stack.describe()}"
    )
    assert json.loads(result.body) == {
        "measured": "raw-body",
        "size": UPLOAD_SIZE,
        "sha256": upload.sha256,
    }
    holder = pg_stack.replica_of(result.served_by)
    assert holder in restarted_at, f"served by {result.served_by!r}, not a replica {replicas}"
    # The replica that held the upload was told to stop while the body was coming.
    assert restarted_at[holder] < result.finished, (
        f"{holder} was restarted {restarted_at[holder] - result.finished:.2f} s after the "
        "upload finished: the test did not overlap them (make the upload slower)"
    )

    # After the restarts: every row, from the restarted replicas, and a new write.
    for item_id, name in written.items():
        response = fetch(port, f"/api/items/{item_id}")
        assert response.status == 200 and response.json()["name"] == name, response.body[:300]
        assert pg_stack.replica_of(response.header("x-served-by")) in restarted_at
    after = _post_item(port, f"after-restart-{tag}")
    assert after.status == 201, after.body[:300]
    assert pg_stack.psql(f"SELECT name FROM shop_item WHERE id = {after.json()['id']}") == [
        f"after-restart-{tag}"
    ]


def test_workers_keep_their_connections_and_survive_a_postgres_restart(
    pg_stack: PostgresComposeTopology,
) -> None:
    port = pg_stack.ports[DJANGO]
    for _ in range(8):
        assert fetch(port, "/api/items?limit=1").status == 200
    # CONN_MAX_AGE: the workers' connections are still open, idle, after their requests.
    idle = pg_stack.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = current_user "
        "AND pid <> pg_backend_pid() AND state = 'idle' AND client_addr IS NOT NULL"
    )
    assert int(idle[0]) >= 1, "no persistent connection from the Django workers"

    pg_stack.restart(pg_stack.postgres_container())
    pg_stack.wait_for_postgres()
    # Every kept connection is dead now; CONN_HEALTH_CHECKS finds out before use.
    statuses = [fetch(port, "/api/items?limit=1").status for _ in range(24)]
    assert statuses == [200] * 24, f"{statuses}\n{pg_stack.describe()}"
    assert pg_stack.psql("SELECT current_database()") == [DATABASE]


def test_the_data_lives_in_the_volume_not_in_a_container(pg_stack: PostgresComposeTopology) -> None:
    # The cluster is on the pgdata volume (PGDATA), made by the image's entrypoint.
    mounts = pg_stack.docker(
        "inspect", "--format", "{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}",
        pg_stack.postgres_container(),
    ).stdout.split()  # fmt: skip
    assert f"{pg_stack.project}_pgdata:/var/lib/postgresql/data" in mounts, mounts
    version = pg_stack.docker(
        "exec", pg_stack.postgres_container(), "cat", "/var/lib/postgresql/data/PG_VERSION"
    ).stdout.strip()
    assert version == "15"
    # Nobody reaches it with the password of another stack or none at all.
    hba = pg_stack.docker(
        "exec", pg_stack.postgres_container(), "sh", "-c",
        "grep -v '^#' /var/lib/postgresql/data/pg_hba.conf | grep -w host",
    ).stdout  # fmt: skip
    assert "trust" not in hba and "scram-sha-256" in hba, hba
    assert pg_stack.psql("SHOW data_directory") == ["/var/lib/postgresql/data"]
