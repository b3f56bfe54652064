"""deploy/stack.yaml really deployed, on a one-node Docker Swarm made for the test.

The node's swarm state is restored whatever happens (``swarm_mode``'s
``finally``): a node found outside a swarm leaves the one made here; a manager
stays in its swarm, and only the stack's own services, volume, secrets and
image tag are removed.  This module lives in its own directory so that it runs
before the topology suite brings its compose stacks up: leaving a swarm drops
the published ports of containers already running (Docker 20.10), and
``swarm_mode`` refuses to make one while any container publishes a port.  Traffic goes to the edge task's host ports on
127.0.0.1 only, from loops bounded in count and time.

Under load through edge (four clients, fresh connections, four kinds of
request) the appserver service gets a rolling update to a second local tag of
the image, is scaled 2 -> 4 -> 2, and loses one task's container to SIGKILL;
the number of failed requests must be zero.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.support.swarm import STACK_FILE, SwarmStack, Task, docker, swarm_mode
from tests.support.topology import Load, TopologyError, failures, fetch, summary

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

DISCOVERY_BOUND = 20.0  # a new task serves through edge within this (about 2 s here)


@pytest.fixture(scope="module")
def swarm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmStack]:
    stack = SwarmStack(tmp_path_factory.mktemp("swarm"))
    started = time.monotonic()
    try:
        with swarm_mode():
            try:
                stack.deploy()
                print(f"swarm: stack serving {time.monotonic() - started:.1f} s after init")
                yield stack
            finally:
                stack.remove()
    except TopologyError as exc:
        pytest.fail(f"the Swarm stack: {exc}", pytrace=False)


def _served_by(stack: SwarmStack, hosts: set[str], port: int, path: str, bound: float) -> None:
    """Until every host in ``hosts`` has answered a request through edge."""
    seen: set[str] = set()
    deadline = time.monotonic() + bound
    while not hosts <= seen:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"edge did not reach {sorted(hosts - seen)} within {bound:.0f} s "
                f"(it reached {sorted(seen)})\n{stack.describe()}"
            )
        response = fetch(port, path, timeout=10)
        if response.status == 200 and response.header("x-served-by"):
            seen.add(response.header("x-served-by").partition("/")[0])  # type: ignore[union-attr]


def _wait_for_tasks(
    stack: SwarmStack, count: int, *, exclude: set[str], bound: float = 120
) -> list[Task]:
    """``count`` running, healthy appserver tasks, none of them in ``exclude``."""
    deadline = time.monotonic() + bound
    while True:
        tasks = [t for t in stack.tasks("appserver") if t.running]
        healthy = [t for t in tasks if t.healthy and t.container not in exclude]
        if len(healthy) == count and len(tasks) == count:
            return healthy
        if time.monotonic() > deadline:
            raise AssertionError(
                f"expected {count} healthy appserver tasks, have {len(healthy)} of "
                f"{len(tasks)}\n{stack.describe()}"
            )
        time.sleep(0.5)


def test_secrets_are_files_and_never_in_the_spec(swarm_stack: SwarmStack) -> None:
    stack_text = STACK_FILE.read_text()
    for short in ("appserver", "migrate", "edge", "postgres"):
        spec = swarm_stack.inspect_service(short)
        for value in swarm_stack.secret_values.values():
            assert value not in spec, f"a secret's value is in the {short} service spec"
    for value in swarm_stack.secret_values.values():
        assert value not in stack_text
    assert not re.search(r"(?m)^\s+DJANGO_SECRET_KEY:", stack_text)
    assert "PASSWORD:" not in stack_text.replace("POSTGRES_PASSWORD_FILE:", "")

    # The running appserver has the key (run.sh read it from /run/secrets) and
    # the settings did not fall back to a development key.
    task = swarm_stack.tasks("appserver")[0]
    environ = docker(
        "exec", task.container, "python", "-c",
        "import pathlib\n"
        "for proc in pathlib.Path('/proc').glob('[0-9]*'):\n"
        "    argv = (proc / 'cmdline').read_bytes().split(b'\\0')\n"
        "    if any(arg.rpartition(b'/')[2] == b'appserver' for arg in argv[:2]):\n"
        "        print((proc / 'environ').read_bytes().decode()); break\n",
    )  # fmt: skip
    variables = dict(item.partition("=")[::2] for item in environ.split("\0") if item)
    assert variables.get("DJANGO_SECRET_KEY") == swarm_stack.secret_values["django_secret_key"]
    assert "DJANGO_SECRET_KEY_FILE" not in variables
    assert "DJANGO_SECRET_KEY is not set" not in swarm_stack.logs("appserver")
    # The database password reached PostgreSQL through its own secret: a write works.
    created = fetch(
        swarm_stack.ports["django"],
        "/api/items",
        method="POST",
        body=b'{"name": "written on the swarm"}',
        headers={"Content-Type": "application/json"},
    )
    assert created.status == 201, created.body[:300]


def test_migrations_ran_once_in_the_job(swarm_stack: SwarmStack) -> None:
    assert swarm_stack.task_states("migrate") == ["Complete"]
    assert "Applying shop.0001_initial... OK" in swarm_stack.logs("migrate")
    appserver_log = swarm_stack.logs("appserver")
    assert "run.sh: migrated schema: ok" in appserver_log
    assert "Applying " not in appserver_log


def test_the_edge_collected_the_static_files_it_serves(swarm_stack: SwarmStack) -> None:
    port = swarm_stack.ports["django"]
    page = fetch(port, "/")
    assert page.status == 200
    assets = re.findall(rb'(?:href|src)="(/static/[^"]+)"', page.body)
    assert len(assets) >= 3, page.body[:500]
    for asset in assets:
        response = fetch(port, asset.decode(), headers={"Accept-Encoding": "gzip"})
        assert response.status == 200, asset
    css = fetch(port, "/static/shop/css/site.css", headers={"Accept-Encoding": "gzip"})
    assert css.header("content-encoding") == "gzip"  # the .gz run.sh made


def test_rolling_update_scale_and_kill_under_load_fail_no_request(swarm_stack: SwarmStack) -> None:
    django, spa = swarm_stack.ports["django"], swarm_stack.ports["spa"]
    targets = [
        (django, "/hello"),
        (django, "/api/items?limit=5"),
        (spa, "/api/items?limit=1"),
        (django, "/static/shop/css/site.css"),
    ]
    image_b = f"{swarm_stack.image.rpartition(':')[0] or swarm_stack.image}:{swarm_stack.name}-b"
    docker("tag", swarm_stack.image, image_b)
    swarm_stack.update_tag = image_b
    events: list[tuple[float, str]] = []

    with Load(targets, concurrency=4, max_seconds=300, max_requests=60_000, timeout=20) as load:

        def mark(what: str) -> None:
            events.append((load.now(), what))

        load.wait_for_answers(50, 60)  # traffic flows before the first operation
        before = {t.container for t in swarm_stack.tasks("appserver")}
        assert len(before) == 2

        mark("update --image")
        swarm_stack.update_image(image_b)
        updated = _wait_for_tasks(swarm_stack, 2, exclude=before)
        assert {t.image for t in updated} == {image_b}
        _served_by(swarm_stack, {t.hostname for t in updated}, django, "/hello", DISCOVERY_BOUND)
        mark("updated")

        mark("scale 4")
        swarm_stack.scale("appserver", 4)
        four = _wait_for_tasks(swarm_stack, 4, exclude=set())
        _served_by(swarm_stack, {t.hostname for t in four}, django, "/hello", DISCOVERY_BOUND)
        mark("scaled 4")

        mark("scale 2")
        swarm_stack.scale("appserver", 2)
        two = _wait_for_tasks(swarm_stack, 2, exclude=set())
        mark("scaled 2")

        victim = two[0]
        mark(f"kill {victim.hostname}")
        swarm_stack.kill(victim.container)
        replaced = _wait_for_tasks(swarm_stack, 2, exclude={victim.container})
        _served_by(swarm_stack, {t.hostname for t in replaced}, django, "/hello", DISCOVERY_BOUND)
        mark("replaced")
        load.wait_for_answers(50, 60, after=load.now())  # and after the last one

    outcomes = load.stop()
    timeline = ", ".join(f"+{t:.1f}s {what}" for t, what in events)
    print(f"swarm load: {len(outcomes)} requests, {len(failures(outcomes))} failed; {timeline}")
    assert not failures(outcomes), f"{timeline}\n{summary(outcomes)}\n{swarm_stack.describe()}"
    assert len(outcomes) >= 200, f"too little load to mean anything: {summary(outcomes)}"
    assert len(outcomes) < load.max_requests, "the load ran out before the operations ended"
    last_event = events[-1][0]
    assert outcomes[-1].started > last_event, "the load did not cover the last operation"
