"""docker-compose.yml, Dockerfile and Grafana provisioning, checked without a Docker engine.

The files are parsed and cross-checked against each other and against the code: every
``AGENTWATCH_*`` variable is a real settings field, the worker's bootstrap is a listener
Kafka advertises, the DSN points at the ClickHouse service with its credentials, mounts
exist, and the image's entry point is the project's console script.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from pydantic import BaseModel

from agentwatch.config import KafkaSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
PROVIDER_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "agentwatch.yaml"
DATASOURCE_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml"

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose variable interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``$$`` (a literal ``$``), with ``env`` (default: empty, so the defaults apply)."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, default = match[1], match[2], match[3] or ""
        if op in (":-", ":?"):
            return env.get(name) or default
        if op in ("-", "?"):
            return env.get(name, default)
        return env.get(name, "")

    return _INTERPOLATION.sub(replace, value)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment (mapping or list form), interpolated with the defaults."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): interpolate(str(v)) for k, v in raw.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def listeners(spec: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {NAME: (host, port)}."""
    out: dict[str, tuple[str, int]] = {}
    for item in spec.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


# --- services ---------------------------------------------------------------------------


def test_services_present(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "clickhouse", "init", "worker", "grafana"} <= set(services)
    for name, service in services.items():
        assert "zookeeper" not in name.lower()
        assert "zookeeper" not in str(service.get("image", "")).lower()
        assert not any("ZOOKEEPER" in key for key in env_of(service)), name


def test_kafka_runs_kraft_combined(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith(("apache/kafka:3.9", "bitnami/kafka:3.9"))
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["CLUSTER_ID"]
    node_id = env["KAFKA_NODE_ID"]
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound
    assert controller not in advertised  # the controller listener is never advertised
    assert set(bound) | set(advertised) <= set(protocols)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert set(advertised) <= set(bound)  # every advertised listener is bound
    hostname = kafka.get("hostname", "kafka")
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@{hostname}:{bound[controller][1]}"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_NUM_PARTITIONS"] == str(KafkaSettings().partitions)
    assert "healthcheck" in kafka
    assert any(str(v).endswith(":/var/lib/kafka/data") for v in kafka["volumes"])
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"


def test_clickhouse(services: dict[str, dict[str, Any]]) -> None:
    ch = services["clickhouse"]
    assert str(ch["image"]).startswith("clickhouse/clickhouse-server:")
    raw_env = ch["environment"]
    for key in ("CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"):
        assert re.fullmatch(r"\$\{[A-Z_]+:-[^}]+\}", raw_env[key]), key  # env with a default
    assert ch["ulimits"]["nofile"]["soft"] >= 262144
    assert ch["ulimits"]["nofile"]["hard"] >= 262144
    test = " ".join(map(str, ch["healthcheck"]["test"]))
    assert "SELECT 1" in test or "wget" in test
    assert any(str(v).endswith(":/var/lib/clickhouse") for v in ch["volumes"])


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


def test_init_runs_after_kafka_and_clickhouse_are_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["init"]
    assert init["command"] == ["init"]
    assert _depends(init) == {"kafka": "service_healthy", "clickhouse": "service_healthy"}
    assert init.get("restart", "no") == "no"


def test_worker_is_scalable_and_waits_for_init(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker  # replicas would clash on a host port
    assert "hostname" not in worker
    assert "replicas" in worker["deploy"]
    assert int(interpolate(str(worker["deploy"]["replicas"]))) >= 1
    deps = _depends(worker)
    assert deps["init"] == "service_completed_successfully"
    assert deps.get("kafka", "service_healthy") == "service_healthy"
    assert deps.get("clickhouse", "service_healthy") == "service_healthy"
    env = env_of(worker)
    assert env["AGENTWATCH_WORKER__WEB_HOST"] == "0.0.0.0"
    assert env["AGENTWATCH_WORKER__WEB_PORT"] in [str(p) for p in worker["expose"]]
    assert "/agentwatch/stats/" in " ".join(worker["healthcheck"]["test"])
    assert worker["image"] == services["init"]["image"]  # one image for both


def test_grafana(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert str(grafana["image"]).startswith("grafana/grafana")
    env = env_of(grafana)
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"]
    assert any(str(p).endswith(":3000") for p in grafana["ports"])
    assert _depends(grafana) == {"clickhouse": "service_healthy"}
    ch_env = env_of(services["clickhouse"])
    assert env["CLICKHOUSE_USER"] == ch_env["CLICKHOUSE_USER"]
    assert env["CLICKHOUSE_PASSWORD"] == ch_env["CLICKHOUSE_PASSWORD"]


# --- cross-checks ----------------------------------------------------------------------------


def settings_field(var: str) -> None:
    """Assert that ``AGENTWATCH_<SECTION>__<FIELD>`` names a field of :class:`Settings`."""
    assert var.startswith("AGENTWATCH_"), var
    path = var.removeprefix("AGENTWATCH_").lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(path):
        fields = model.model_fields
        assert part in fields, f"{var}: {model.__name__} has no field {part!r}"
        annotation = fields[part].annotation
        if depth < len(path) - 1:
            assert isinstance(annotation, type), f"{var}: {model.__name__}.{part}"
            assert issubclass(annotation, BaseModel), f"{var}: {part!r} is not a section"
            model = annotation


def test_every_agentwatch_variable_is_a_settings_field(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    names: set[str] = set()
    for service in services.values():
        names |= {k for k in env_of(service) if k.startswith("AGENTWATCH_")}
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    names |= {
        m[1] for m in _INTERPOLATION.finditer(text) if m[1] and m[1].startswith("AGENTWATCH_")
    }
    assert "AGENTWATCH_KAFKA__BOOTSTRAP" in names
    assert "AGENTWATCH_STORAGE__DSN" in names
    for name in sorted(names):
        settings_field(name)


@pytest.mark.parametrize("service", ["init", "worker"])
def test_settings_load_from_the_service_environment(
    services: dict[str, dict[str, Any]], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
    for key, value in env_of(services[service]).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka.bootstrap == "kafka:9092"
    assert settings.storage_dsn.startswith("http://")
    assert settings.storage.database == "agentwatch"


def test_worker_bootstrap_is_an_advertised_listener(services: dict[str, dict[str, Any]]) -> None:
    kafka_env = env_of(services["kafka"])
    advertised = set(listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"]).values())
    kafka_names = {"kafka", services["kafka"].get("hostname", "kafka")}
    for service in ("init", "worker"):
        bootstrap = env_of(services[service])["AGENTWATCH_KAFKA__BOOTSTRAP"]
        for address in bootstrap.split(","):
            host, _, port = address.strip().rpartition(":")
            assert host in kafka_names, address
            assert (host, int(port)) in advertised, f"{service}: {address} is not advertised"


def test_dsn_points_at_the_clickhouse_service(services: dict[str, dict[str, Any]]) -> None:
    ch_env = env_of(services["clickhouse"])
    for service in ("init", "worker"):
        dsn = urlsplit(env_of(services[service])["AGENTWATCH_STORAGE__DSN"])
        assert dsn.scheme == "http"
        assert dsn.hostname in {"clickhouse", services["clickhouse"].get("hostname")}
        assert dsn.port == 8123
        assert unquote(dsn.username or "") == ch_env["CLICKHOUSE_USER"]
        assert unquote(dsn.password or "") == ch_env["CLICKHOUSE_PASSWORD"]
    raw = services["worker"]["environment"]["AGENTWATCH_STORAGE__DSN"]
    assert "${CLICKHOUSE_PASSWORD:-" in raw  # the password comes from the environment


def test_no_hard_coded_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        raw = service.get("environment", {})
        for key, value in raw.items():
            if "PASSWORD" in key or "SECRET" in key:
                assert str(value).startswith("${"), f"{name}.{key} is hard-coded"
            if key.endswith("__DSN"):
                assert "${CLICKHOUSE_PASSWORD" in str(value), f"{name}.{key}"


def test_named_volumes_declared_and_bind_mounts_exist(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    assert {"kafka-data", "clickhouse-data", "grafana-data"} <= declared


def test_grafana_mounts_match_provisioning(services: dict[str, dict[str, Any]]) -> None:
    mounts = {}
    for volume in services["grafana"]["volumes"]:
        source, target, *_ = str(volume).split(":")
        mounts[target] = source
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    (provider,) = yaml.safe_load(PROVIDER_FILE.read_text(encoding="utf-8"))["providers"]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == "./deploy/grafana/dashboards"
    assert list((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    for path in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    home = env_of(services["grafana"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(dashboards_dir + "/")
        assert (ROOT / "deploy/grafana/dashboards" / Path(home).name).is_file()
    datasource = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))["datasources"][0]
    grafana_env = env_of(services["grafana"])
    for value in (datasource["jsonData"]["username"], datasource["secureJsonData"]["password"]):
        assert value.lstrip("$") in grafana_env  # the variables the provisioning file reads
    assert datasource["jsonData"]["host"] in services  # the ClickHouse service


# --- Dockerfile ------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    instructions = _instructions()
    (entrypoint,) = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    command = json.loads(entrypoint)
    assert command[0] in scripts
    assert command[0] == "agentwatch"


def test_dockerfile_base_image_and_user() -> None:
    instructions = _instructions()
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    bases = [interpolate(rest.split()[0], args) for kw, rest in instructions if kw == "FROM"]
    assert bases
    assert all(base == "python:3.11-slim" for base in bases)
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    installs = [rest for kw, rest in instructions if kw == "RUN" and "pip install ." in rest]
    assert installs, "the project is installed from the source tree"


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch(path, pattern) or fnmatch(path, pattern.removeprefix("**/")):
            ignored = not negate
    return ignored


def test_dockerfile_copies_what_the_build_needs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: set[str] = set()
    for keyword, rest in _instructions():
        if keyword == "COPY" and "--from=" not in rest:
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not _ignored(source.rstrip("/"), patterns), f"{source} is dockerignored"
                copied.add(source.rstrip("/").removeprefix("./"))
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert {"pyproject.toml", "src", project["readme"]} <= copied
    for noise in (".git", ".venv", "tests"):
        assert _ignored(noise, patterns), noise


def test_compose_builds_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = [s for s in services.values() if "build" in s]
    assert built
    for service in built:
        context = (
            service["build"] if isinstance(service["build"], str) else service["build"]["context"]
        )
        assert (ROOT / context / "Dockerfile").is_file()


def test_alerts_dispatcher_service(services: dict[str, dict[str, Any]]) -> None:
    alerts = services["alerts"]
    command = alerts["command"]
    assert command[:2] == ["alerts", "run"]
    config = command[command.index("--config") + 1]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in alerts["volumes"]}
    assert (ROOT / mounts[config]).is_file()  # the routing config is mounted
    assert alerts["image"] == services["worker"]["image"]
    deps = _depends(alerts)
    assert deps["init"] == "service_completed_successfully"
    env = env_of(alerts)
    assert env["AGENTWATCH_KAFKA__BOOTSTRAP"] == "kafka:9092"
    assert env["AGENTWATCH_STORAGE__DSN"].startswith("http://")  # tables beside the others
    assert "/healthz" in " ".join(alerts["healthcheck"]["test"])
    for key, value in alerts["environment"].items():
        if key.isupper() and not key.startswith("AGENTWATCH_"):
            assert str(value).startswith("${"), f"alerts.{key} is hard-coded"
