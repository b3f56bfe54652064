"""deploy/kubernetes/: rendered as `kubectl apply -k` would, validated, and held to the image.

No cluster runs here.  Instead:

1. the kustomization is rendered by tests/support/kustomize.py, and the result
   is compared with ``kubectl kustomize`` itself;
2. every rendered object is validated against the Kubernetes OpenAPI schemas
   (PyPI kubernetes-validate, strict: unknown fields are errors) for the
   newest release it knows and for one four minor releases older;
3. the probes, ports, service names, signals, grace periods and security
   settings are checked against what the image and the compose stack define
   (tests/support/image_roles.py reads them from their files).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from edge.config.load import load_config
from edge.master import FAST_STOP_GRACE
from edge.server import GRACEFUL_TIMEOUT
from tests.support import kustomize
from tests.support.image_roles import edge_config_for, image_roles
from tests.support.processes import REPO

KUSTOMIZATION = REPO / "deploy" / "kubernetes"
LATEST = kubernetes_validate.latest_version()
_major, _minor = (int(part) for part in LATEST.split(".")[:2])
# Four minors back: a cluster about a year and a half behind, past upstream
# support but still common in extended-support offerings.
OLDER = f"{_major}.{_minor - 4}"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize.render(KUSTOMIZATION)


@pytest.fixture(scope="module")
def objects(rendered: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object; generated ConfigMaps under their name without the hash."""
    found = {}
    for resource in rendered:
        name = resource["metadata"]["name"]
        if resource["kind"] == "ConfigMap":
            name = name.rsplit("-", 1)[0]
        found[(resource["kind"], name)] = resource
    return found


def _pod(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return objects[(kind, name)]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in kustomize.containers(pod) if c["name"] == name]
    return found


def _port(container: dict[str, Any], ref: str | int) -> int:
    if isinstance(ref, int):
        assert ref in {p["containerPort"] for p in container["ports"]}, (ref, container["ports"])
        return ref
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == ref]
    return int(port)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- 1. rendering ------------------------------------------------------------------


def test_the_renderer_agrees_with_kubectl_kustomize(rendered: list[dict[str, Any]]) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, (
        "kubectl (with its built-in kustomize) is not on PATH: this machine's image ships it; "
        "elsewhere install kubectl to check the renderer against the real kustomize"
    )
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    theirs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert kustomize.by_key(rendered) == kustomize.by_key(theirs)


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(kustomize.KustomizeError, match="commonLabels: not supported"):
        kustomize.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "configMapGenerator:\n  - {name: x, envs: [a.env]}\n"
    )
    with pytest.raises(kustomize.KustomizeError, match="configMapGenerator x: envs"):
        kustomize.render(tmp_path)


def test_generated_names_follow_the_content(tmp_path: Path) -> None:
    # kustomize 5's hash of {one: two}, whatever the generator's name.
    (tmp_path / "kustomization.yaml").write_text(
        "configMapGenerator:\n  - {name: x, literals: [one=two]}\n"
    )
    (generated,) = kustomize.render(tmp_path)
    assert generated["metadata"]["name"] == "x-h468698b8f"


def test_everything_is_in_the_namespace_and_runs_the_kustomized_image(
    rendered: list[dict[str, Any]],
) -> None:
    spec = yaml.safe_load((KUSTOMIZATION / "kustomization.yaml").read_text())
    image = spec["images"][0]
    assert {r["metadata"].get("namespace") for r in rendered} == {spec["namespace"]}
    for resource in rendered:
        for pod in kustomize._pod_specs(resource):
            for container in kustomize.containers(pod):
                assert container["image"] == f"{image['newName']}:{image['newTag']}"


# --- 2. schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [LATEST, OLDER])
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]], version: str
) -> None:
    kinds = set()
    for resource in rendered:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{kustomize.key(resource)} against {version}: {path}: {error.message}")
        kinds.add(resource["kind"])
    assert kinds == {
        "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
        "HorizontalPodAutoscaler", "Job",
    }  # fmt: skip


def test_the_validator_catches_a_typo(rendered: list[dict[str, Any]]) -> None:
    # Proof that the schema check can fail: a misspelt probe field.
    deployment = next(r for r in rendered if r["kind"] == "Deployment")
    broken = kustomize.by_key([deployment])[kustomize.key(deployment)]
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, LATEST, strict=True)


# --- 3. agreement with the image and the compose stack -------------------------------


def test_containers_run_the_image_roles_through_its_entrypoint(
    rendered: list[dict[str, Any]],
) -> None:
    roles = image_roles().roles
    for resource in rendered:
        for pod in kustomize._pod_specs(resource):
            for container in kustomize.containers(pod):
                where = f"{resource['metadata']['name']}/{container['name']}"
                # args, never command: the image's ENTRYPOINT (tini, the role
                # dispatch, the role file the healthcheck reads) stays in front.
                assert "command" not in container, where
                first = container["args"][0]
                if first == "sh":
                    assert "/docker/entrypoint.sh manage " in container["args"][-1], where
                else:
                    assert first in roles, f"{where}: {first!r} is not a role of the image {roles}"


def test_appserver_ports_probes_and_services_agree(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    facts = image_roles()
    pod = _pod(objects, "Deployment", "appserver")
    container = _container(pod, "appserver")
    assert container["args"] == ["appserver", "--ini", "/app/deploy/appserver.ini"]
    assert (REPO / "deploy" / "appserver.ini").is_file()  # the image has the repo at /app
    assert _port(container, "uwsgi") == facts.appserver_port == 3031
    assert facts.appserver_port in facts.exposed
    # compose.yaml's health check, word for word: a uwsgi GET /healthz answered 200.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == facts.appserver_probe, probe
    assert f'("127.0.0.1", {facts.appserver_port})' in facts.appserver_probe[-1]

    labels = objects[("Deployment", "appserver")]["spec"]["template"]["metadata"]["labels"]
    for name in ("appserver", "appserver-pods"):
        service = objects[("Service", name)]["spec"]
        assert _matches(service["selector"], labels), name
        (port,) = service["ports"]
        assert (port["port"], _port(container, port["targetPort"])) == (3031, 3031)
    headless = objects[("Service", "appserver-pods")]["spec"]
    assert headless["clusterIP"] == "None" and headless.get("publishNotReadyAddresses") is False


def test_edge_ports_probes_config_and_upstream_agree(
    objects: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    facts = image_roles()
    pod = _pod(objects, "Deployment", "edge")
    container = _container(pod, "edge")
    config_text = objects[("ConfigMap", "edge-config")]["data"]["edge.yaml"]
    config = yaml.safe_load(config_text)

    # The config edge reads: the ConfigMap's key, mounted where args point.
    assert container["args"] == ["edge", "-c", "/etc/wsgistack/edge.yaml"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/wsgistack"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == objects[("ConfigMap", "edge-config")]["metadata"]["name"]
    # It is valid edge config, and deploy/edge.yaml but for the upstream and gunicorn
    # (worker_processes: the pod's CPU limit, not the node's cores).
    (tmp_path / "edge.yaml").write_text(config_text)
    load_config(tmp_path / "edge.yaml", check_paths=False)
    expected = edge_config_for("appserver-pods:3031")
    assert {**config, "worker_processes": "auto"} == expected
    assert config["worker_processes"] == int(float(container["resources"]["limits"]["cpu"]))

    # Ports: the config's listens, which the image exposes, and the Service's targets.
    listens = {int(server["listen"]) for server in config["servers"]}
    assert {p["containerPort"] for p in container["ports"]} == listens == {8000, 8080}
    assert listens <= facts.exposed
    service = objects[("Service", "edge")]["spec"]
    labels = objects[("Deployment", "edge")]["spec"]["template"]["metadata"]["labels"]
    assert _matches(service["selector"], labels)
    assert {_port(container, p["targetPort"]) for p in service["ports"]} == listens

    # Probes: edge's own /healthz on :8080, as compose.yaml's HEALTHCHECK_URL.
    spa = next(s for s in config["servers"] if int(s["listen"]) == 8080)
    healthz = next(loc for loc in spa["locations"] if loc["path"] == "= /healthz")
    assert healthz["return"]["status"] == 200
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        url = f"http://127.0.0.1:{_port(container, get['port'])}{get['path']}"
        assert url == facts.edge_probe_url, probe

    # The upstream is the headless Service, on its port, whose pods are appserver's.
    host, _, port = config["upstreams"]["appserver"]["servers"][0]["address"].rpartition(":")
    headless = objects[("Service", host)]["spec"]
    assert headless["clusterIP"] == "None"
    assert int(port) == headless["ports"][0]["port"]
    assert config["upstreams"]["appserver"]["resolve"] == "1s"


def test_the_edge_stops_gracefully_although_kubernetes_sends_sigterm(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pod = _pod(objects, "Deployment", "edge")
    command = _container(pod, "edge")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    script = command[2]
    delay = int(re.match(r"sleep (\d+); ", script).group(1))  # type: ignore[union-attr]
    # SIGQUIT (graceful) to PID 1, then wait for it to exit: only then SIGTERM.
    assert "kill -QUIT 1;" in script and "while kill -0 1" in script
    assert pod["terminationGracePeriodSeconds"] >= delay + GRACEFUL_TIMEOUT + FAST_STOP_GRACE


def test_the_appserver_drains_inside_its_grace_period(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pod = _pod(objects, "Deployment", "appserver")
    command = _container(pod, "appserver")["lifecycle"]["preStop"]["exec"]["command"]
    delay = int(re.fullmatch(r"sleep (\d+)", command[2]).group(1))  # type: ignore[union-attr]
    # SIGTERM is the appserver's graceful stop (no preStop signal needed).
    assert pod["terminationGracePeriodSeconds"] > delay + image_roles().worker_reload_mercy


def test_every_container_is_non_root_read_only_and_unprivileged(
    rendered: list[dict[str, Any]],
) -> None:
    facts = image_roles()
    for resource in rendered:
        for pod in kustomize._pod_specs(resource):
            context = pod["securityContext"]
            assert context["runAsNonRoot"] is True
            assert (context["runAsUser"], context["runAsGroup"]) == (facts.uid, facts.gid)
            assert pod["automountServiceAccountToken"] is False
            empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            for container in kustomize.containers(pod):
                where = f"{resource['metadata']['name']}/{container['name']}"
                own = container["securityContext"]
                assert own["allowPrivilegeEscalation"] is False, where
                assert own["readOnlyRootFilesystem"] is True, where
                assert own["capabilities"]["drop"] == ["ALL"], where
                # The only writable places: emptyDirs (the entrypoint's role
                # file and the appserver's upload spool live in /tmp).
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert mounts.get("/tmp") in empty_dirs, where
                assert {"requests", "limits"} <= set(container["resources"]), where


def test_rollouts_disruptions_and_autoscaling_keep_capacity(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for name in ("appserver", "edge"):
        deployment = objects[("Deployment", name)]["spec"]
        assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        pdb = objects[("PodDisruptionBudget", name)]["spec"]
        labels = deployment["template"]["metadata"]["labels"]
        assert _matches(pdb["selector"]["matchLabels"], labels), name
        if "minAvailable" in pdb:
            assert pdb["minAvailable"] < deployment["replicas"], name
        else:
            assert pdb["maxUnavailable"] < deployment["replicas"], name
    hpa = objects[("HorizontalPodAutoscaler", "appserver")]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "appserver",
    }
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert (
        hpa["minReplicas"]
        >= 2
        > objects[("PodDisruptionBudget", "appserver")]["spec"]["maxUnavailable"]
    )
    # Utilization is of the request: the container must have one.
    appserver = _container(_pod(objects, "Deployment", "appserver"), "appserver")
    assert "cpu" in appserver["resources"]["requests"]


def test_migrations_run_in_the_job_and_the_appserver_only_waits(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    job = objects[("Job", "migrate")]["spec"]["template"]["spec"]
    assert _container(job, "migrate")["args"] == ["manage", "migrate", "--noinput"]
    pod = _pod(objects, "Deployment", "appserver")
    wait = _container(pod, "wait-for-migrations")["args"][-1]
    assert "manage migrate --check" in wait
    assert not re.search(r"migrate(?! --check)", wait)


def test_secrets_come_from_a_secret_and_never_from_the_files(
    rendered: list[dict[str, Any]],
) -> None:
    for resource in rendered:
        for pod in kustomize._pod_specs(resource):
            for container in kustomize.containers(pod):
                for variable in container.get("env", []):
                    if variable["name"] in ("DJANGO_SECRET_KEY", "DATABASE_URL"):
                        assert "value" not in variable
                        assert variable["valueFrom"]["secretKeyRef"]["name"] == "wsgistack"
        if resource["kind"] == "ConfigMap":
            for text in resource["data"].values():
                assert "SECRET_KEY" not in text and "postgres://" not in text
