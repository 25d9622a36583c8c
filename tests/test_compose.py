"""docker-compose.yml, the scaled deployment, read as data (no Docker engine needed).

It must use the Dockerfile's targets, run every Airflow component from one configuration,
switch engines by settings only (the Airflow keys are real ones), and read the image's
params.yaml, with its differences as ``SHOPRANK__<SECTION>__<KEY>`` overrides of real keys.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import yaml

from shoprank.config import Params, env_overrides, load_params
from tests.test_dockerfile import DOCKERFILE, parse

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def airflow_services(services: dict[str, dict]) -> dict[str, dict]:
    return {n: s for n, s in services.items() if (s.get("command") or [""])[0] == "airflow"}


def test_built_services_use_targets_of_the_dockerfile(services):
    _, stages = parse(DOCKERFILE.read_text())
    names = {s.name for s in stages}
    built = {n: s for n, s in services.items() if "build" in s}
    assert built
    for name, svc in built.items():
        assert svc["build"]["target"] in names, f"{name}: no stage {svc['build']['target']!r}"
        assert svc["build"]["context"] == "."
    for name, svc in services.items():
        if svc.get("image", "").startswith("shoprank-"):
            assert "build" in svc, f"{name} uses a shoprank image without building it"


def test_engine_images_are_pinned(services):
    for name, svc in services.items():
        if "build" in svc:
            continue
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"
        assert re.search(r":[^:]*\d", image), f"{name}: {image} has no version in its tag"


def test_the_engines_are_there(services):
    images = {n: s.get("image", "") for n, s in services.items()}
    assert any(i.startswith("postgres:") for i in images.values())
    assert any(i.startswith("redis:") for i in images.values())
    assert any(i.startswith("minio/minio:") for i in images.values())
    commands = {" ".join(s.get("command", [])) for s in airflow_services(services).values()}
    for component in ("api-server", "scheduler", "dag-processor", "celery worker"):
        assert f"airflow {component}" in commands, f"no airflow {component} service"


def test_airflow_components_share_one_configuration(services):
    airflow = airflow_services(services)
    assert len(airflow) >= 5  # init, api-server, scheduler, dag-processor, worker
    first = next(iter(airflow.values()))
    for name, svc in airflow.items():
        assert svc["environment"] == first["environment"], f"{name} has its own environment"
        assert svc["image"] == first["image"], f"{name} runs another image"
        assert svc["volumes"] == first["volumes"], f"{name} mounts other volumes"


def test_scaled_settings(services):
    env = next(iter(airflow_services(services).values()))["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "@postgres:" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:")
    for secret in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert env[secret].startswith("${"), f"{secret} must come from .env, not the file"
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2
    assert services["bento"]["deploy"]["replicas"] > 1


def known_airflow_keys() -> set[tuple[str, str]]:
    """(section, key) of Airflow core's config.yml and of the providers (installed, or the fallbacks)."""
    import airflow

    templates = Path(airflow.__file__).parent / "config_templates"
    core = yaml.safe_load((templates / "config.yml").read_text())
    keys = {(section, key) for section, body in core.items() for key in body.get("options", {})}
    fallback = configparser.ConfigParser(interpolation=None)
    fallback.read(templates / "provider_config_fallback_defaults.cfg")
    keys |= {(section, key) for section in fallback.sections() for key in fallback[section]}
    try:  # the celery provider ships in the pipeline image (deploy/requirements-scale.lock)
        from airflow.providers.celery.get_provider_info import get_provider_info

        for section, body in get_provider_info()["config"].items():
            keys |= {(section, key) for key in body["options"]}
    except ImportError:
        keys.add(("celery", "result_backend"))  # documented by the celery provider, not in the fallbacks
    return keys


def test_airflow_settings_are_real_config_keys(services):
    known = known_airflow_keys()
    for name, svc in services.items():
        for var in svc.get("environment") or {}:
            if not var.startswith("AIRFLOW__"):
                continue
            section, key = var.removeprefix("AIRFLOW__").lower().split("__", 1)
            assert (section, key) in known, f"{name}: {var} is not an Airflow setting"


def shoprank_services(services: dict[str, dict]) -> dict[str, dict]:
    """The services that run shoprank (they read params.yaml): pipeline and serving."""
    return {n: s for n, s in services.items() if "SHOPRANK_PARAMS" in (s.get("environment") or {})}


def compose_overrides(services: dict[str, dict]) -> dict[str, str]:
    env = next(iter(shoprank_services(services).values()))["environment"]
    return {k: str(v) for k, v in env.items() if k.startswith("SHOPRANK__")}


def test_pipeline_and_service_read_one_params_file_with_the_same_overrides(services):
    readers = shoprank_services(services)
    assert {"bento", "airflow-worker", "airflow-scheduler"} <= set(readers)
    overrides = compose_overrides(services)
    assert overrides
    for name, svc in readers.items():
        env = svc["environment"]
        assert env["SHOPRANK_PARAMS"] == "/app/params.yaml"
        assert {k: str(v) for k, v in env.items() if k.startswith("SHOPRANK__")} == overrides, name
        for volume in svc.get("volumes", []):  # the image's params.yaml, not a copy mounted over it
            assert not volume.split(":")[1].endswith("params.yaml"), f"{name} mounts {volume}"
    refresh = " ".join(services["workspace-init"]["command"])
    assert re.search(r"tar -C /app .*\bparams\.yaml\b.*\| tar -C /workspace", refresh), (
        "workspace-init must refresh the workspace's params.yaml from the image"
    )


def test_overrides_switch_the_online_store_to_the_redis_service(services):
    params = load_params(ROOT / "params.yaml", env=compose_overrides(services))
    assert params.features.online_store == "redis"
    host = params.features.redis_url.split(":")[0]
    assert services[host]["image"].startswith("redis:")


def test_every_override_named_in_the_deployment_files_is_a_params_key(services):
    """Overrides in docker-compose.yml (set, or in comments) and compose.env.example's examples."""
    known = load_params(ROOT / "params.yaml", env={}).model_dump(by_alias=True)
    names = set()
    for path in (COMPOSE, ROOT / "deploy" / "compose.env.example"):
        names |= set(re.findall(r"\bSHOPRANK__\w+", path.read_text()))
    assert set(compose_overrides(services)) <= names
    for name in names:
        (path,) = env_overrides({name: ""})
        node = known
        for key in path:
            assert isinstance(node, dict) and key in node, f"{name}: params has no {'.'.join(path)}"
            node = node[key]
    load_params(ROOT / "params.yaml", env=compose_overrides(services))  # the values parse too


def test_redis_url_becomes_feasts_connection_string(services):
    pytest.importorskip("feast")
    from shoprank.features.store import store_config

    params: Params = load_params(ROOT / "params.yaml", env=compose_overrides(services))
    settings = params.features.model_copy(update={"repo": ROOT / "features"})
    config = store_config(settings)
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "redis:6379,db=0"


def test_mounted_files_exist_and_dvc_uses_the_object_store(services):
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name} mounts {source}, which does not exist"
    dvc = configparser.ConfigParser()
    dvc.read(ROOT / "deploy" / "dvc" / "config.local")
    assert dvc["core"]["remote"] == "minio"
    remote = dvc["'remote \"minio\"'"]  # DVC quotes its section names
    assert remote["url"].startswith("s3://") and remote["endpointurl"] == "http://minio:9000"
    bucket = remote["url"].removeprefix("s3://").split("/")[0]
    assert bucket in " ".join(services["minio-init"]["entrypoint"])
