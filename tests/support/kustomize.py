"""Render a kustomization the way ``kubectl kustomize`` does, for the fields we use.

kustomize is a Go program and not a test dependency; deploy/kubernetes/ needs
only a small part of it, which this module does the same way:

- ``resources``: YAML files (every document) and directories (a base: their
  own kustomization, rendered first);
- ``namespace``: set on every namespaced object;
- ``configMapGenerator`` with ``files`` (``KEY=path`` or ``path``) and
  ``literals`` (``KEY=VALUE``): a ConfigMap named ``NAME-HASH``, with
  kustomize's content hash (``api/hasher``: SHA-256 of the JSON encoding of
  kind, name and data as Go's ``json.Marshal`` writes it, the first ten hex
  digits with 0 1 3 a e replaced by g h k m t), and every reference to it in a
  pod template rewritten (volumes, projected volumes, ``envFrom``, ``env``).
  The "name" in that encoding is always empty: kustomize looks it up with the
  one path element "metadata/name", which finds nothing (kustomize 5.5 does
  this; ``kubectl kustomize`` gives ``x-h468698b8f`` for ``one=two`` whatever
  the generator's name ``x`` is);
- ``images``: ``newName``, ``newTag`` and ``digest`` for the containers and init
  containers whose image has that name.

Any other key in a kustomization, or in a generator, is an error naming it,
so the renderer can never silently ignore something kustomize would do.
tests/unit/deploy/test_kubernetes.py also compares the result with
``kubectl kustomize`` itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "images",
}
GENERATOR_KEYS = {"name", "files", "literals"}
IMAGE_KEYS = {"name", "newName", "newTag", "digest"}
# Kinds without a namespace among those a kustomization like ours could hold.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

Resource = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully; the message names the key."""


def go_json(value: Any) -> str:
    """``json.Marshal`` of Go for maps of strings: sorted keys, compact, HTML-safe escapes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def configmap_hash(data: dict[str, str]) -> str:
    encoded = go_json({"kind": "ConfigMap", "name": "", "data": data})
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def render(directory: Path) -> list[Resource]:
    path = directory / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text())
    unknown = sorted(set(spec) - KUSTOMIZATION_KEYS)
    if unknown:
        raise KustomizeError(f"{path}: {', '.join(unknown)}: not supported by this renderer")

    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        if target.is_dir():
            resources += render(target)
        else:
            resources += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]

    renamed: dict[str, str] = {}
    for generator in spec.get("configMapGenerator", []):
        resources.append(_generate(directory, path, generator, renamed))

    namespace = spec.get("namespace")
    for resource in resources:
        if namespace and resource["kind"] not in CLUSTER_SCOPED:
            resource["metadata"]["namespace"] = namespace
        for pod in _pod_specs(resource):
            _rename_configmaps(pod, renamed)
            for image in spec.get("images", []):
                _set_image(pod, image, path)
    return resources


def _generate(
    directory: Path, path: Path, generator: dict[str, Any], renamed: dict[str, str]
) -> Resource:
    unknown = sorted(set(generator) - GENERATOR_KEYS)
    if unknown:
        raise KustomizeError(
            f"{path}: configMapGenerator {generator.get('name')}: {', '.join(unknown)}: "
            "not supported by this renderer"
        )
    name = generator["name"]
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=")
        data[key or Path(source).name] = (directory / source).read_text()
    for entry in generator.get("literals", []):
        key, separator, value = entry.partition("=")
        if not separator:
            raise KustomizeError(f"{path}: configMapGenerator {name}: literal {entry!r} has no '='")
        data[key] = value
    hashed = f"{name}-{configmap_hash(data)}"
    renamed[name] = hashed
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": hashed}, "data": data}


def _pod_specs(resource: Resource) -> Iterator[dict[str, Any]]:
    if resource["kind"] in POD_TEMPLATE_KINDS:
        yield resource["spec"]["template"]["spec"]
    elif resource["kind"] == "CronJob":
        yield resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif resource["kind"] == "Pod":
        yield resource["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _rename_configmaps(pod: dict[str, Any], renamed: dict[str, str]) -> None:
    def rename(holder: dict[str, Any] | None) -> None:
        if holder is not None and holder.get("name") in renamed:
            holder["name"] = renamed[holder["name"]]

    for volume in pod.get("volumes", []):
        rename(volume.get("configMap"))
        for source in volume.get("projected", {}).get("sources", []):
            rename(source.get("configMap"))
    for container in containers(pod):
        for source in container.get("envFrom", []):
            rename(source.get("configMapRef"))
        for variable in container.get("env", []):
            rename(variable.get("valueFrom", {}).get("configMapKeyRef"))


def _split_image(image: str) -> tuple[str, str, str]:
    """name, ":tag" or "", "@digest" or "" (a registry port is part of the name)."""
    name, at, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon:], at + digest
    return name, "", at + digest


def _set_image(pod: dict[str, Any], image: dict[str, Any], path: Path) -> None:
    unknown = sorted(set(image) - IMAGE_KEYS)
    if unknown:
        raise KustomizeError(
            f"{path}: images {image.get('name')}: {', '.join(unknown)}: not supported"
        )
    for container in containers(pod):
        name, tag, digest = _split_image(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            tag, digest = "", "@" + image["digest"]
        elif "newTag" in image:
            tag, digest = ":" + str(image["newTag"]), ""
        container["image"] = f"{name}{tag}{digest}"


def key(resource: Resource) -> tuple[str, str, str]:
    metadata = resource["metadata"]
    return resource["kind"], metadata.get("namespace", ""), metadata["name"]


def by_key(resources: list[Resource]) -> dict[tuple[str, str, str], Resource]:
    found: dict[tuple[str, str, str], Resource] = {}
    for resource in resources:
        if key(resource) in found:
            raise KustomizeError(f"two resources are {key(resource)}")
        found[key(resource)] = copy.deepcopy(resource)
    return found
