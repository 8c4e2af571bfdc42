"""deploy/compose.yaml and deploy/Dockerfile checked without Docker: the services it runs
(a 3-node broker cluster, PostgreSQL, two ingresses, two dispatchers, N workers), every
HOOKLINE_* variable it sets is a setting the services read and decodes as one, and every
command it gives the image is one hookline takes."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from shared.errors import ConfigError
from shared.settings import load_settings
from tests.unit.deploy.manifests import (
    DEPLOY,
    REQUIRED,
    ROOT,
    SETTING_NAMES,
    Resource,
    check_command,
    compose,
)

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")
HOOKLINE_IMAGE = {"context": "..", "dockerfile": "deploy/Dockerfile"}


def hookline_services() -> dict[str, Resource]:
    """The services built from hookline's image."""
    return {n: s for n, s in compose()["services"].items() if s.get("build") == HOOKLINE_IMAGE}


def environment(service: Resource) -> dict[str, str]:
    """Its environment, `${VAR...}` as a placeholder the operator would give."""
    env: Any = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: _INTERPOLATION.sub(lambda m: f"given-{m[1].lower()}", str(v)) for k, v in env.items()}


def test_the_pipeline_runs_on_a_three_node_cluster_with_two_of_each_service() -> None:
    services = compose()["services"]
    nodes = sorted(n for n in services if n.startswith("rabbitmq-"))
    assert nodes == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    cluster = (DEPLOY / "rabbitmq" / "cluster.conf").read_text()
    for node in nodes:
        assert services[node]["hostname"] == node
        assert f"= rabbit@{node}\n" in cluster  # classic config peer discovery names each node
        mounts = [v.split(":")[1] for v in services[node]["volumes"]]
        assert "/etc/rabbitmq/conf.d/10-cluster.conf" in mounts
        assert "/etc/rabbitmq/conf.d/20-hookline.conf" in mounts
    cookies = {environment(services[n])["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] for n in nodes}
    assert len(cookies) == 1, "the nodes must share one Erlang cookie"
    conf = (DEPLOY / "rabbitmq" / "hookline.conf").read_text()
    assert "cluster_partition_handling = pause_minority" in conf
    assert "queue_leader_locator = balanced" in conf
    assert "postgres" in services
    ours = hookline_services()
    replicas = {n: s.get("deploy", {}).get("replicas", 1) for n, s in ours.items()}
    assert replicas["ingress"] == 2
    assert replicas["dispatcher"] == 2
    assert replicas["worker"] >= 2
    for name in ("ingress", "dispatcher", "worker"):
        assert set(ours[name]["depends_on"]) >= {"migrate", *nodes}, name


def test_every_hookline_variable_is_a_setting_and_decodes() -> None:
    for name, service in hookline_services().items():
        env = environment(service)
        unknown = sorted(k for k in env if k.startswith("HOOKLINE_") and k not in SETTING_NAMES)
        assert unknown == [], f"{name} sets variables no service reads"
        missing = [k for k in REQUIRED if not env.get(k)]
        assert missing == [], f"{name} lacks required settings"
        try:
            load_settings(env)
        except ConfigError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    for name in ("dispatcher", "worker"):  # their healthchecks need the probe port open
        assert environment(hookline_services()[name])["HOOKLINE_METRICS_PORT"] == "9090", name
    assert environment(hookline_services()["ingress"])["HOOKLINE_ADMIN_TOKEN"]


def test_no_credential_is_written_in_the_compose_file() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert re.findall(r"://\w+:(?!\$\{)[^@\s]+@", text) == []
    for service in compose()["services"].values():
        for key, value in environment(service).items():
            if re.search(r"PASS|TOKEN|COOKIE", key):
                assert str(value).startswith("given-"), key


def test_every_command_given_to_the_image_is_one_hookline_takes() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [entrypoint] = re.findall(r"^ENTRYPOINT \[\"([^\"]+)\"\]$", dockerfile, re.MULTILINE)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint in scripts, f"ENTRYPOINT {entrypoint} is no console script of pyproject.toml"
    [default] = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    check_command(json.loads(default))
    for name, service in hookline_services().items():
        assert isinstance(service["command"], list), name
        check_command(service["command"])
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"
