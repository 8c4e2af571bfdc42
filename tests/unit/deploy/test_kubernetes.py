"""The Kustomize base (deploy/k8s/base) checked without a cluster: every resource it lists
exists and parses, each is valid against the Kubernetes schemas (kubernetes-validate, which
bundles them) or its operator's CRD (vendored in schemas/, strict as `kubectl
--validate=strict` is), and what it says about hookline matches hookline: the probes, the
settings, the commands, the queues KEDA watches, the broker's settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ingress.app import HEALTH_ROUTES
from shared.runtime.probes import probe_app
from shared.settings import Settings
from shared.wire import topology
from tests.unit.deploy.manifests import (
    BASE,
    DEPLOY,
    REQUIRED,
    SCHEMAS,
    SETTING_NAMES,
    Resource,
    base_resources,
    check_command,
    containers,
    kustomization,
    of_kind,
    pod_spec,
)

KUBERNETES = "1.30"  # the oldest release the base is meant for
SERVICES = ("hookline-ingress", "hookline-dispatcher", "hookline-worker")
DEFAULTS = Settings(database_url="postgresql://x/y", amqp_url="amqp://x/")


@cache
def crd_schemas() -> dict[tuple[str, str], Resource]:
    """(apiVersion, kind) -> the CRD's openAPIV3Schema, made strict."""
    found = {}
    for path in SCHEMAS.glob("*.json"):
        crd = json.loads(path.read_text())
        for version, schema in crd["versions"].items():
            found[(f"{crd['group']}/{version}", crd["kind"])] = _strict(schema)
    return found


def _strict(schema: Any) -> Any:
    """Unknown fields refused where the CRD lists the fields (the API server would drop them)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def validate(resource: Resource) -> None:
    """Raise if `resource` is not valid for its kind."""
    schema = crd_schemas().get((resource["apiVersion"], resource["kind"]))
    if schema is not None:
        jsonschema.validate(resource, schema)
    else:
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)


def rendered() -> list[Resource]:
    """`kubectl kustomize` of the base (or `kustomize build`), when one of them is installed."""
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(BASE)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(BASE)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed: the listed files are checked alone")
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout
    return [r for r in yaml.safe_load_all(out) if r]


def test_every_resource_the_kustomization_lists_exists_parses_and_is_valid() -> None:
    resources = base_resources()
    kinds = {r["kind"] for _, r in resources}
    assert {
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "RabbitmqCluster",
        "Cluster",
    } <= kinds
    for name, resource in resources:
        try:
            validate(resource)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            pytest.fail(f"{name}: {resource['kind']} {resource['metadata']['name']}: {exc.message}")
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed, "a manifest in the base that the kustomization leaves out"


def test_the_rendered_base_is_valid_and_in_one_namespace() -> None:
    resources = rendered()
    assert len(resources) == len(base_resources())
    for resource in resources:
        validate(resource)
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "hookline"
        assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hookline"


def test_crd_kinds_are_checked_against_their_crds_not_waved_through() -> None:
    assert set(crd_schemas()) == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
        ("postgresql.cnpg.io/v1", "Cluster"),
    }
    for path in SCHEMAS.glob("*.json"):
        crd = json.loads(path.read_text())
        assert crd["source"].startswith("https://github.com/"), path.name
        assert re.fullmatch(r"v\d+\.\d+\.\d+", crd["version"]), path.name


def _probe_routes() -> set[str]:
    async def checks() -> dict[str, bool]:
        return {}

    return {route.path for route in probe_app(checks).routes}


def _ingress_routes() -> set[str]:
    # The handlers create_app() mounts at the root (ingress/app.py).
    return {path for handler in HEALTH_ROUTES for path in handler.paths}


def test_each_service_is_probed_where_it_answers() -> None:
    deployments = of_kind(base_resources(), "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        [container] = containers(deployment)
        env = {e["name"]: e.get("value") for e in container["env"]}
        if name == "hookline-ingress":
            port, routes = int(env.get("HOOKLINE_PORT") or DEFAULTS.port), _ingress_routes()
        else:
            # Worker and dispatcher probes listen only when HOOKLINE_METRICS_PORT is set.
            port, routes = int(env["HOOKLINE_METRICS_PORT"]), _probe_routes()
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name} {probe}"
            assert ports.get(get["port"], get["port"]) == port, f"{name} {probe}: not the port it listens on"
            assert path in routes, f"{name} serves no {path}"


def test_every_pod_is_bounded_and_locked_down() -> None:
    resources = base_resources()
    pods = [*of_kind(resources, "Deployment").values(), *of_kind(resources, "Job").values()]
    for resource in pods:
        name, spec = resource["metadata"]["name"], pod_spec(resource)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in containers(resource):
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}, name
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}, name
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "privileged": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, name


def test_every_setting_the_manifests_set_is_one_the_services_read() -> None:
    resources = base_resources()
    pods = [*of_kind(resources, "Deployment").values(), *of_kind(resources, "Job").values()]
    for resource in pods:
        for container in containers(resource):
            names = [e["name"] for e in container["env"]]
            where = f"{resource['metadata']['name']}/{container['name']}"
            assert [n for n in names if n.startswith("HOOKLINE_") and n not in SETTING_NAMES] == [], where
            assert [n for n in REQUIRED if n not in names] == [], where
            check_command(container["args"])
    [ingress] = containers(of_kind(resources, "Deployment")["hookline-ingress"])
    assert "HOOKLINE_ADMIN_TOKEN" in {e["name"] for e in ingress["env"]}  # else the API is off


def test_disruption_budgets_and_autoscalers_cover_the_services() -> None:
    resources = base_resources()
    deployments = of_kind(resources, "Deployment")
    budgets = of_kind(resources, "PodDisruptionBudget").values()
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, f"{name}: {len(covering)} disruption budgets"
        assert covering[0]["spec"]["minAvailable"] < deployment["spec"]["replicas"], name
    [hpa] = of_kind(resources, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hookline-ingress"
    [scaled] = of_kind(resources, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "hookline-worker"
    assert deployments["hookline-dispatcher"]["spec"]["replicas"] == 2


def _keda_pattern() -> re.Pattern[str]:
    [scaled] = of_kind(base_resources(), "ScaledObject").values()
    [trigger] = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert (trigger["type"], meta["protocol"], meta["useRegex"], meta["operation"]) == (
        "rabbitmq",
        "http",  # a pattern over queue names needs the management API
        "true",
        "sum",
    )
    return re.compile(meta["queueName"])


def test_keda_watches_every_queue_workers_consume_and_no_other() -> None:
    prefix = DEFAULTS.amqp_prefix
    consumed = [
        topology.work_queue_name(prefix),
        topology.trigger_queue_name(prefix, "acme", "orders"),
        topology.trigger_queue_name(prefix, "my-ws", "create-customer"),
        topology.ordered_queue_name(prefix, "acme", "ledger"),
        topology.ordered_queue_name(prefix, "acme", "ledger", 2),
        topology.ordered_queue_name(prefix, "acme", "ledger", 3, 7),
    ]
    not_consumed = [
        topology.dead_letter_queue_name(prefix),
        topology.hold_queue_name(prefix, "acme", "orders"),
        *(topology.retry_queue_name(prefix, tier) for tier in topology.RETRY_TIERS),
        topology.work_queue_name("other"),
    ]
    pattern = _keda_pattern()
    assert [q for q in consumed if not pattern.search(q)] == []
    assert [q for q in not_consumed if pattern.search(q)] == []


def test_the_broker_cluster_has_three_nodes_and_hooklines_settings() -> None:
    resources = base_resources()
    [rabbitmq] = of_kind(resources, "RabbitmqCluster").values()
    assert rabbitmq["spec"]["replicas"] == 3
    config = _conf_lines(rabbitmq["spec"]["rabbitmq"]["additionalConfig"])
    wanted = _conf_lines((DEPLOY / "rabbitmq" / "hookline.conf").read_text())
    assert wanted <= config, "deploy/rabbitmq/hookline.conf and the RabbitmqCluster disagree"
    assert {"cluster_partition_handling = pause_minority", "queue_leader_locator = balanced"} <= wanted
    plugins = set(rabbitmq["spec"]["rabbitmq"]["additionalPlugins"])
    assert "rabbitmq_consistent_hash_exchange" in plugins  # ordering keys' partitions
    [postgres] = of_kind(resources, "Cluster").values()
    assert postgres["spec"]["instances"] >= 2
    assert postgres["spec"]["postgresql"]["synchronous"]["number"] >= 1
    assert postgres["spec"]["postgresql"]["synchronous"].get("dataDurability", "required") == "required"


def _conf_lines(text: str) -> set[str]:
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return {" ".join(line.split()) for line in lines if line}


def test_checkov_skips_in_the_manifests_say_why() -> None:
    for path in sorted(Path(BASE).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            annotations = (document or {}).get("metadata", {}).get("annotations", {})
            for key, value in annotations.items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check), f"{path.name}: {value}"
                    assert len(reason.split()) >= 3, f"{path.name}: {check} skipped without a reason"
