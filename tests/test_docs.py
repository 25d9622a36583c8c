"""Docs and code describe the product, not how the team worked on it.

Words about the working process (numbered sessions, helpers, issue numbers, stops,
targets in the sense of goals) belong in commit messages. The scan is precise on
purpose: HTTP, SQL and pytest sessions, Makefile, DVC and Dockerfile targets, the
target policy of off-policy evaluation, training targets (labels), CSS colours,
Markdown anchors and ``owner/repo#123`` references to other projects are product words
and do not match.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, project_files

SCANNED = (
    "README.md",
    "docs",
    "src",
    "dags",
    "serving",
    "features",
    "bench",
    "tests",
    "Makefile",
    "dvc.yaml",
    "params.yaml",
    "Dockerfile",
    "docker-compose.yml",
    "deploy",
)
SKIPPED_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".pyc", ".parquet", ".db", ".onnx", ".pt"}
THIS = Path(__file__).resolve()

NOCASE = re.IGNORECASE
_GOAL_VERBS = (
    r"(?:meets?|met|meeting|miss(?:es|ed|ing)?|reach(?:es|ed|ing)?|exceed(?:s|ed|ing)?|achieve[sd]?)"
)
PATTERNS: dict[str, re.Pattern[str]] = {
    "numbered session": re.compile(r"\bsessions?[- ]\d+\b", NOCASE),
    "helper": re.compile(r"\bhelpers?[- ]\d+\b|\bthe helper's\b", NOCASE),
    "issue number": re.compile(r"\bissues? #?\d+\b|\bthe issue's\b", NOCASE),
    "#number": re.compile(r"(?<![\w/&#])#\d+\b(?![\w-])"),
    "stop number": re.compile(r"\bstop \d+\b", NOCASE),
    "target met": re.compile(
        r"\btargets? (?:(?:is|are|was|were|not|still|both|all) )*"
        r"(?:met|missed|reached|hit|holds?|held|achieved|exceeded|above|below|out of reach)\b",
        NOCASE,
    ),
    "meets the target": re.compile(
        rf"\b{_GOAL_VERBS} (?:(?:the|its|our|their|both|all|every) )?(?:[\w%.<>=-]+ ){{0,2}}targets?\b",
        NOCASE,
    ),
    "target on cores": re.compile(
        r"\btargets? on \d+ (?:cores?|cpus?|gpus?|machines?)\b|\b\d+-(?:core|cpu|gpu) target\b", NOCASE
    ),
    "measure target": re.compile(
        r"\b(?:quality|latency|throughput|p50|p99|auc|uplift|rps) targets?\b", NOCASE
    ),
    "target figure": re.compile(
        r"\btargets? (?:p\d\d|auc|uplift)\b|\btargets? \((?:rank|p\d\d|auc)|\(targets? \d"
        r"|\b\d+(?:\.\d+)?\s*(?:%|ms|s|x|req/s) targets?\b",
        NOCASE,
    ),
    "target constant": re.compile(r"\b\w*TARGET_(?:P\d\d|RPS|MS|AUC|UPLIFT)\w*"),
}


def _css_colour(line: str, match: re.Match[str]) -> bool:
    """``color: #222;``: a hex colour in a declaration, not a number."""
    before, after = line[: match.start()], line[match.end() :]
    return ":" in before and re.match(r"\s*(?:;|}|!important)", after) is not None


def files() -> list[Path]:
    """The project's own text files in the scanned places (builds, data and caches are ignored by git)."""
    return [
        f
        for f in project_files(*SCANNED)
        if f.resolve() != THIS and "__pycache__" not in f.parts and f.suffix.lower() not in SKIPPED_SUFFIXES
    ]


def hits_in(text: str) -> list[tuple[int, str, str]]:
    """(line number, pattern name, line) of every process word in ``text``."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        for name, pattern in PATTERNS.items():
            for match in pattern.finditer(line):
                if name == "#number" and _css_colour(line, match):
                    continue
                out.append((number, name, line.strip()))
                break
    return out


def test_no_process_words_in_docs_or_code():
    report = []
    for f in files():
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, name, line in hits_in(text):
            report.append(f"{f.relative_to(ROOT)}:{number}: [{name}] {line[:160]}")
    print("\n".join(report))
    assert not report, f"{len(report)} process word(s):\n" + "\n".join(report)


# numbered references to the work itself, built from their parts so the tree holds none
NUMBERED = [
    f"{word}{sep}{n}" for word in ("session", "helper", "issue", "stop") for sep, n in ((" ", 5), ("-", 13))
]
PROCESS_WORDS = [
    *(f"as in {ref} of the plan" for ref in NUMBERED if not ref.startswith(("issue-", "stop-"))),
    "fixed in #12",
    "see #4.",
    "Stop 3: the features",
    "online p99 target met as a median",
    "quality targets not met",
    "the target holds when the machine is quiet",
    "Both targets are above them",
    "meets the target",
    "met the p99 target in all runs",
    "Targets on 2 cores: p99 < 20 ms",
    "Target p99 < 5 ms",
    "(targets 0.97 and 80%)",
    "the 80% target needs a better estimate",
    "Targets (rank of 100 candidates, 2 cores)",
    "the AUC target",
    "RANK_TARGET_P99_MS = 20.0",
    "one worker per core of the 2-core target",
]

PRODUCT_WORDS = [
    "with requests.Session() as session:",
    'options.add_session_config_entry("session.intra_op.allow_spinning", "1")',
    '@pytest.fixture(scope="session")',
    "one tiny marketplace shared by the whole session",
    "simulating sessions",
    "help: ## list the targets",
    "Dockerfile (targets `serving` and `pipeline`)",
    "docker build --target serving .",
    "dvc repro --single-item train",
    "The target policy is deterministic: it puts item a at position k.",
    "estimates the target's clicks per shown slot",
    "the training target is the click",
    "per request: intent, target (product type, subcategory or category)",
    "level: how specific the target is",
    "body { color: #222; }",
    ".meta { color: #555; font-size: .9rem; }",
    '"\'": "&#39;"',
    "x = 1  # noqa: F401",
    "([feast-dev/feast#6787](https://github.com/feast-dev/feast/issues/6787))",
    "[Query vectors](#query-vectors)",
    "def reference_work(seconds: float):",
    "threading.Thread(target=client)",
    "a target of the Makefile",
]


@pytest.mark.parametrize("text", PROCESS_WORDS)
def test_the_scan_finds_process_words(text):
    assert hits_in(text), text


@pytest.mark.parametrize("text", PRODUCT_WORDS)
def test_the_scan_leaves_product_words_alone(text):
    assert not hits_in(text), hits_in(text)
