"""Proof on real engines: the tiny pipeline with Airflow's metadata in PostgreSQL and Feast's
online store in Redis, then the ranking service reading that Redis, and losing it.

Both servers are Debian packages started by the tests themselves on 127.0.0.1 (free ports,
data in temporary folders): PostgreSQL from /usr/lib/postgresql/*/bin (run as the
``postgres`` system user when the tests run as root: postgres refuses root), redis-server
from PATH. Without them the tests skip; .ci/run installs both.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from bench.bench_features import redis_server

from tests.conftest import missing_server
from tests.serving_fixtures import Server, ServingEnv, free_port, simulated_user
from tests.test_dag_runs import _tail, airflow, airflow_env, dags_test, make_project
from tests.test_dags import stage_list

PG_TOOLS = ("initdb", "pg_ctl", "postgres")


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, pg_ctl and postgres, else PATH's."""

    def version(d: str) -> tuple[int, ...]:
        v = Path(d).parent.name
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(Path(d) / t, os.X_OK) for t in PG_TOOLS):
            return Path(d)
    found = [shutil.which(t) for t in PG_TOOLS]
    if all(found):
        return Path(str(found[0])).parent
    return None


def db_user() -> str | None:
    """The system user postgres runs as when we are root (postgres, else nobody); None: ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    missing_server("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as")


@dataclass
class Postgres:
    port: int
    socket_dir: Path
    log: Path
    user: str = "airflow"
    password: str = ""
    database: str = "airflow"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the Airflow database: TCP on 127.0.0.1 with a password (scram-sha-256)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def connect(self, superuser: bool = False):
        import psycopg2

        if superuser:  # the unix socket in the private folder (trust): roles and databases
            return psycopg2.connect(
                host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres"
            )
        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=self.database
        )

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.is_file() else ""


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with an ``airflow`` role and database."""
    bindir = postgres_bin()
    if bindir is None:
        missing_server("PostgreSQL is not installed")
    user = db_user()
    if user is not None and shutil.which("runuser") is None:
        missing_server("running as root without runuser (util-linux) to start PostgreSQL as another user")
    as_user = ["runuser", "-u", user, "--"] if user else []

    # not under pytest's tmp: its root folder is private to us, and the server runs as `user`
    root = Path(tempfile.mkdtemp(prefix="shoprank-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user:
        for path in (root, sock):
            shutil.chown(path, user)
    pg = Postgres(
        port=free_port(), socket_dir=sock, log=root / "postgres.log", password=secrets.token_hex(12)
    )

    def run(*argv: str) -> None:
        done = subprocess.run([*as_user, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale",
        "--auth-local=trust", "--auth-host=scram-sha-256")  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# tests/test_platform.py: private, loopback only, durability off (throwaway data)\n"
            f"listen_addresses = '127.0.0.1'\nport = {pg.port}\nunix_socket_directories = '{sock}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        )
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(pg.log), "-w", "-t", "60", "start")
    try:
        con = pg.connect(superuser=True)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f"CREATE ROLE {pg.user} LOGIN PASSWORD %s", (pg.password,))
            cur.execute(f"CREATE DATABASE {pg.database} OWNER {pg.user}")
        con.close()
        yield pg
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        if url is None:
            missing_server("redis-server is not installed")
        yield url


def redis_client(url: str):
    import redis

    host, port = url.split(":")
    return redis.Redis(host=host, port=int(port))


@dataclass
class PipelineRun:
    tmp: Path
    home: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess
    seconds: float


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, postgres, redis_url) -> PipelineRun:
    """`airflow dags test shoprank_training` once: metadata in PostgreSQL, online store in Redis."""
    try:  # Airflow 3 opens an async engine too: postgresql:// -> postgresql+asyncpg://
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.fail("Airflow 3 on PostgreSQL needs asyncpg (its async metadata engine): not installed")
    tmp = tmp_path_factory.mktemp("platform")
    home = make_project(tmp, params={"features": {"online_store": "redis", "redis_url": redis_url}})
    env = {**airflow_env(tmp, home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url}
    start = time.perf_counter()
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, (
        f"airflow db migrate on PostgreSQL:\n{_tail(migrated)}\n{postgres.log_tail()}"
    )
    migrate_s = time.perf_counter() - start
    result, seconds = dags_test(env, "shoprank_training", "2025-06-01")
    print(f"airflow db migrate (PostgreSQL): {migrate_s:.0f} s; dags test shoprank_training: {seconds:.0f} s")
    return PipelineRun(tmp, home, env, result, seconds)


def task_states(pg: Postgres, dag_id: str) -> dict[str, str]:
    con = pg.connect()
    try:
        with con.cursor() as cur:
            cur.execute("select task_id, state from task_instance where dag_id = %s", (dag_id,))
            return dict(cur.fetchall())
    finally:
        con.close()


def dag_run_states(pg: Postgres, dag_id: str) -> list[str]:
    con = pg.connect()
    try:
        with con.cursor() as cur:
            cur.execute("select state from dag_run where dag_id = %s", (dag_id,))
            return [r[0] for r in cur.fetchall()]
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.integration
def test_training_dag_on_postgres_materialises_into_redis(pipeline, postgres, redis_url):
    from shoprank.artifacts import FEATURE_SERVICE
    from shoprank.config import load_params
    from shoprank.features import OnlineReader

    home, env = pipeline.home, pipeline.env
    states = task_states(postgres, "shoprank_training")  # read from PostgreSQL, not Airflow's API
    assert pipeline.result.returncode == 0 and set(states.values()) == {"success"}, (
        f"{states}\n{_tail(pipeline.result)}"
    )
    assert set(states) == {*(t.replace("@", ".") for t in stage_list(home)), "record"}  # every stage ran
    assert dag_run_states(postgres, "shoprank_training") == ["success"]
    assert not list(Path(env["AIRFLOW_HOME"]).glob("*.db"))  # no SQLite metadata database on the side

    # the materialize stage wrote into this Redis, and only there
    assert redis_client(redis_url).dbsize() > 0
    repo = home / "features"
    assert not (repo / "data" / "online_store.db").exists()
    assert not list(home.rglob("online_store.db"))
    settings = load_params(home / "params.yaml").features.model_copy(update={"repo": repo})
    assert settings.online_store == "redis" and settings.redis_url == redis_url
    reader = OnlineReader(settings, FEATURE_SERVICE)
    assert reader.store_type == "redis"
    items = pd.read_parquet(home / "data/raw/catalog.parquet")["item_id"].astype(str).tolist()[:3]
    user = pd.read_parquet(home / "data/raw/users.parquet")["user_id"].astype(str).iloc[0]
    got = reader.read([{"item_id": i, "user_id": user, "query_id": ""} for i in items])
    assert len(got) == 3
    for column in ("price", "category", "brand", "item_embedding", "user_clicks"):
        assert got[column].notna().all(), f"{column} is null in Redis:\n{got[column]}"
    assert all(len(v) > 0 for v in got["item_embedding"])
    missing = reader.read([{"item_id": "no-such-item", "user_id": user, "query_id": ""}])
    assert missing["price"].isna().all()  # a real read, not a default


@pytest.mark.slow
@pytest.mark.integration
def test_service_reads_redis_then_falls_back_when_it_goes_away(pipeline, redis_url):
    """The packaged champion served with the project's params: features from Redis, then Redis stops."""
    home, tmp = pipeline.home, pipeline.tmp
    assert pipeline.result.returncode == 0, _tail(pipeline.result)
    bentoml_home = Path(pipeline.env["BENTOML_HOME"])
    (manifest,) = bentoml_home.glob("models/*/*/manifest.json")  # what the DAG's package task stored
    bundle = manifest.parent
    serving = ServingEnv(
        root=home,
        params_file=home / "params.yaml",
        raw={},
        bentoml_home=bentoml_home,
        bundle=bundle,
        tag=f"{bundle.parent.name}:{bundle.name}",
    )
    # feature_ttl_s 0: every request reads the store (no in-process reuse hides a dead Redis)
    env = serving.env(SHOPRANK__SERVE__FEATURE_TTL_S="0")
    server = Server(env, home, log_dir=tmp).start()
    try:
        ready = server.get("/ready").json()
        assert ready["online_store"] == "ok", f"{ready}\n{server.log()}"
        items = pd.read_parquet(home / "data/raw/catalog.parquet")["item_id"].astype(str).tolist()[:5]
        pseudonym = pd.read_parquet(home / "data/raw/users.parquet")["user_id"].astype(str).iloc[0]
        user = simulated_user(pseudonym, home / ".secrets")  # what a request sends: the shopper's own id
        store = redis_client(redis_url)
        hits = store.info("stats")["keyspace_hits"]
        r = server.post("/rank", {"query": "running shoes", "user_id": user, "item_ids": items})
        assert r.status_code == 200, f"{r.text}\n{server.log()}"
        body = r.json()
        assert body["degraded"] is False and body["fallback"] is None, body
        assert body["user_known"] is True and sorted(body["order"]) == sorted(items)
        assert store.info("stats")["keyspace_hits"] > hits  # this request's features came from Redis

        store.shutdown(nosave=True)  # the same Redis goes away while the service runs
        import redis.exceptions

        with pytest.raises(redis.exceptions.ConnectionError):  # it is really gone
            redis_client(redis_url).ping()
        r = server.post("/rank", {"query": "running shoes", "user_id": user, "item_ids": items})
        assert r.status_code == 200, f"{r.text}\n{server.log()}"
        body = r.json()
        assert body["degraded"] is True and body["fallback"] == "online_store_unreachable", body
        assert body["user_known"] is True  # the packaged user table
        assert sorted(body["order"]) == sorted(items)
        assert server.get("/ready").json()["online_store"] == "unreachable"
    finally:
        server.stop()
