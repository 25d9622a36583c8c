"""Run shoprank_training on the tiny profile in a real Airflow and screenshot its grid view.

    .venv/bin/python scripts/airflow_screenshot.py [--out docs/img/airflow-run.png] [--port 8793]

Everything happens in a temporary folder: a private copy of the project (tiny params.yaml,
its own DVC repo and Feast store, as tests/test_dags.py makes it) and an AIRFLOW_HOME with
SQLite. The script starts `airflow standalone` with authentication on (SimpleAuthManager, a
generated admin password), triggers shoprank_training through the REST API, waits for the run
to succeed, logs in with headless Chromium (Selenium) and saves the grid view. Needs chromium
and chromedriver on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "shoprank_training"


def request(url: str, method: str = "GET", body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=30) as r:
        return json.loads(r.read() or b"{}")


def wait(what: str, check, timeout: float, every: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
            pass
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def screenshot(base: str, user: str, password: str, run_id: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    if shutil.which("chromium"):
        options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(f"{base}/")
        form = WebDriverWait(driver, 60)
        form.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(user)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        form.until(lambda d: "login" not in d.current_url)
        driver.get(f"{base}/dags/{DAG_ID}/runs/{run_id}")
        WebDriverWait(driver, 60).until(lambda d: "record" in d.page_source and "simulate" in d.page_source)
        time.sleep(4)  # let the grid finish rendering
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "airflow-run.png")
    ap.add_argument("--port", type=int, default=8799)  # 8793/8794: log servers
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.test_dags import airflow_env, make_project

    tmp = Path(tempfile.mkdtemp(prefix="shoprank-airflow-"))
    home = make_project(tmp)
    env = airflow_env(tmp, home)
    password = secrets.token_urlsafe(12)
    passwords = Path(env["AIRFLOW_HOME"]) / "passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    env.update(
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(args.port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{args.port}",
    )
    base = f"http://127.0.0.1:{args.port}"
    log = open(tmp / "standalone.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait("the API server", lambda: request(f"{base}/api/v2/monitor/health"), 300)
        token = request(f"{base}/auth/token", "POST", {"username": "admin", "password": password})[
            "access_token"
        ]
        dag = wait("the DAG to be parsed", lambda: request(f"{base}/api/v2/dags/{DAG_ID}", token=token), 300)
        # the run takes the slot the scheduler would fill on unpausing (catchup is off, but the latest
        # daily slot still runs), so the grid shows this one run rather than two
        slot = dag.get("next_dagrun_logical_date")
        run = request(f"{base}/api/v2/dags/{DAG_ID}/dagRuns", "POST", {"logical_date": slot}, token)
        request(f"{base}/api/v2/dags/{DAG_ID}", "PATCH", {"is_paused": False}, token)
        run_id = run["dag_run_id"]
        print(f"triggered {DAG_ID} run {run_id}; waiting (log: {tmp / 'standalone.log'})", flush=True)
        start = time.monotonic()

        def finished():
            state = request(f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", token=token)["state"]
            if state == "failed":
                raise RuntimeError(f"run {run_id} failed; see {tmp}")
            return state == "success"

        wait("the run to succeed", finished, args.timeout, every=10)
        print(f"run succeeded in {time.monotonic() - start:.0f} s", flush=True)
        screenshot(base, "admin", password, run_id, args.out)
        print(f"saved {args.out}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
