"""Champion selection, promotion and rollback on a temporary models folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shoprank import selection
from shoprank.artifacts import write_checksum
from shoprank.selection import load_champion, promote, rollback, select_winner

LINEAGE = {"data_version": "d1", "params_hash": "p1", "code_version": "abc123"}


def make_artifact(folder: Path, name: str, payload: bytes) -> Path:
    """A checkpoint as training writes it: the file plus its .sha256 sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(payload)
    write_checksum(path)
    return path


def run_promote(models: Path, artifact: Path, auc: float, margin: float = 0.01, **kw):
    metrics = {"auc": auc, "log_loss": 0.4}
    return promote(models, artifact.stem, artifact, metrics, LINEAGE, "auc", margin, **kw)


@pytest.fixture()
def models(tmp_path) -> Path:
    return tmp_path / "models"


def test_select_winner():
    cands = {"bert": {"auc": 0.71, "ll": 0.40}, "lgbm": {"auc": 0.73, "ll": 0.42}, "pop": {"auc": 0.6}}
    assert select_winner(cands, "auc") == "lgbm"
    assert (
        select_winner({k: v for k, v in cands.items() if k != "pop"}, "ll", higher_is_better=False) == "bert"
    )
    # NaN never wins; ties go to the first name in sorted order
    assert select_winner({"a": {"m": float("nan")}, "b": {"m": 0.1}}, "m") == "b"
    assert select_winner({"z": {"m": 0.5}, "y": {"m": 0.5}}, "m") == "y"
    with pytest.raises(ValueError, match="pop"):
        select_winner(cands, "ll")
    with pytest.raises(ValueError):
        select_winner({"a": {"m": float("nan")}}, "m")


def test_first_promotion_copies_artifact_and_writes_record(models, tmp_path):
    art = make_artifact(tmp_path / "train", "bert.ckpt", b"weights-1")
    result = run_promote(models, art, auc=0.70)
    assert result.promoted
    rec = json.loads((models / "champion.json").read_text())
    assert rec == result.record
    assert rec["version"] == "v0001" and rec["previous_version"] is None
    assert rec["candidate"] == "bert" and rec["metric"] == "auc"
    assert rec["metrics"] == {"auc": 0.70, "log_loss": 0.4}
    assert rec["lineage"] == LINEAGE and rec["created_at"].endswith("+00:00")
    assert (models / rec["artifact"]).read_bytes() == b"weights-1"
    assert rec["artifact"] == "champions/v0001/bert.ckpt"
    assert (models / "champions/v0001/record.json").read_text() == (models / "champion.json").read_text()


def test_worse_or_within_margin_refused_and_record_unchanged(models, tmp_path):
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.70)
    before = (models / "champion.json").read_bytes()
    worse = run_promote(models, make_artifact(tmp_path / "t2", "b.ckpt", b"b"), auc=0.69)
    assert not worse.promoted and "does not beat" in worse.reason
    # 0.705 - 0.70 = 0.005 <= margin 0.01: better, but not by enough
    close = run_promote(models, make_artifact(tmp_path / "t3", "c.ckpt", b"c"), auc=0.705)
    assert not close.promoted
    assert (models / "champion.json").read_bytes() == before
    assert sorted(p.name for p in (models / "champions").iterdir()) == ["v0001"]
    assert worse.record == json.loads(before)


def test_beyond_margin_promoted_and_previous_kept(models, tmp_path):
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.70)
    # 0.72 - 0.70 = 0.02 > 0.01
    result = run_promote(models, make_artifact(tmp_path / "t2", "b.ckpt", b"b"), auc=0.72)
    assert result.promoted
    rec = load_champion(models)
    assert rec["version"] == "v0002" and rec["previous_version"] == "v0001"
    assert (models / "champions/v0001/a.ckpt").read_bytes() == b"a"
    assert (models / "champions/v0002/b.ckpt").read_bytes() == b"b"


def test_the_champion_rescored_on_the_challengers_split_is_what_it_is_compared_with(models, tmp_path):
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.80)  # promoted on an easy split
    art = make_artifact(tmp_path / "t2", "b.ckpt", b"b")
    # on today's harder split the champion scores 0.70: the challenger's 0.75 beats it there
    rescored = {"version": "v0001", "candidate": "a", "metrics": {"auc": 0.70}}
    result = run_promote(models, art, auc=0.75, rescored=rescored)
    assert result.promoted and result.record["previous_version"] == "v0001"
    # and a champion that is better on the same rows is kept, with where it was measured
    rescored = {"version": "v0002", "candidate": "b", "metrics": {"auc": 0.76}}
    kept = run_promote(models, make_artifact(tmp_path / "t3", "c.ckpt", b"c"), auc=0.765, rescored=rescored)
    assert not kept.promoted and "0.76 on the same test split" in kept.reason
    # an entry for another version, or one that could not be scored, falls back to the record
    for stale in ({"version": "v0001", "metrics": {"auc": 0.1}}, {"version": "v0002", "not_scored": "x"}):
        art = make_artifact(tmp_path / "t4", "d.ckpt", b"d")
        refused = run_promote(models, art, auc=0.755, rescored=stale)
        assert not refused.promoted and "0.75 as promoted" in refused.reason


def test_a_champion_whose_artifact_is_gone_is_replaced_not_kept(models, tmp_path):
    """A fresh clone has models/champion.json (git) but not the artifact (DVC): serve a new one."""
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.80)
    record = (models / "champion.json").read_text()
    clone = tmp_path / "clone" / "models"
    clone.mkdir(parents=True)
    (clone / "champion.json").write_text(record)  # the record without models/champions/
    worse = run_promote(clone, make_artifact(tmp_path / "t2", "b.ckpt", b"b"), auc=0.70)
    assert worse.promoted and "v0001 could not serve" in worse.reason and "missing" in worse.reason
    rec = json.loads((clone / "champion.json").read_text())
    assert rec["version"] == "v0002" and rec["previous_version"] is None  # no reuse of v0001
    assert (clone / rec["artifact"]).read_bytes() == b"b"
    # a champion artifact that no longer matches its record is not kept either
    (clone / rec["artifact"]).write_bytes(b"tampered")
    again = run_promote(clone, make_artifact(tmp_path / "t3", "c.ckpt", b"c"), auc=0.60)
    assert again.promoted and "does not match" in again.reason and again.record["version"] == "v0003"
    # a healthy champion still defends itself by its metric
    assert not run_promote(clone, make_artifact(tmp_path / "t4", "d.ckpt", b"d"), auc=0.50).promoted


def test_lower_is_better_metric(models, tmp_path):
    kw = {"higher_is_better": False}
    art = make_artifact(tmp_path / "t", "a.ckpt", b"a")
    assert promote(models, "a", art, {"ll": 0.50}, LINEAGE, "ll", 0.01, **kw).promoted
    assert not promote(models, "b", art, {"ll": 0.495}, LINEAGE, "ll", 0.01, **kw).promoted
    assert promote(models, "c", art, {"ll": 0.48}, LINEAGE, "ll", 0.01, **kw).promoted


def test_corrupted_or_truncated_checkpoint_never_promoted(models, tmp_path):
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.70)
    before = (models / "champion.json").read_bytes()

    flipped = make_artifact(tmp_path / "t2", "b.ckpt", b"0123456789")
    flipped.write_bytes(b"0123456780")  # one byte changed after training
    truncated = make_artifact(tmp_path / "t3", "c.ckpt", b"0123456789")
    truncated.write_bytes(b"01234")
    no_sidecar = tmp_path / "t4" / "d.ckpt"
    no_sidecar.parent.mkdir()
    no_sidecar.write_bytes(b"x")
    missing = tmp_path / "t5" / "e.ckpt"
    for art in (flipped, truncated, no_sidecar, missing):
        result = run_promote(models, art, auc=0.9)
        assert not result.promoted, art
        assert result.record["version"] == "v0001"
    assert "checksum" in run_promote(models, truncated, auc=0.9).reason

    def refuse(path: Path) -> None:
        raise RuntimeError("not a checkpoint")

    intact = make_artifact(tmp_path / "t6", "f.ckpt", b"f")
    result = run_promote(models, intact, auc=0.9, verify=refuse)
    assert not result.promoted and "not a checkpoint" in result.reason
    assert (models / "champion.json").read_bytes() == before
    assert sorted(p.name for p in (models / "champions").iterdir()) == ["v0001"]  # no leftovers

    seen = []
    assert run_promote(models, intact, auc=0.9, verify=lambda p: seen.append(p.read_bytes())).promoted
    assert seen == [b"f"]  # verify ran on the copy, which holds the same bytes


def test_rollback_restores_previous(models, tmp_path):
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.70)
    first = (models / "champion.json").read_bytes()
    run_promote(models, make_artifact(tmp_path / "t2", "b.ckpt", b"b"), auc=0.80)
    rec = rollback(models)
    assert rec["version"] == "v0001"
    assert (models / "champion.json").read_bytes() == first
    assert (models / "champions/v0002/b.ckpt").exists()  # rolled-back version stays on disk
    with pytest.raises(ValueError):
        rollback(models)  # v0001 has no predecessor
    # the next promotion gets a fresh number and points back at the restored champion
    result = run_promote(models, make_artifact(tmp_path / "t3", "c.ckpt", b"c"), auc=0.75)
    assert result.record["version"] == "v0003" and result.record["previous_version"] == "v0001"


def test_rollback_refuses_a_corrupted_previous_artifact(models, tmp_path):
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.70)
    run_promote(models, make_artifact(tmp_path / "t2", "b.ckpt", b"b"), auc=0.80)
    current = (models / "champion.json").read_bytes()
    (models / "champions/v0001/a.ckpt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupted"):
        rollback(models)
    assert (models / "champion.json").read_bytes() == current


def test_crash_before_replace_leaves_old_record_intact(models, tmp_path, monkeypatch):
    run_promote(models, make_artifact(tmp_path / "t1", "a.ckpt", b"a"), auc=0.70)
    before = (models / "champion.json").read_bytes()
    real_replace = os.replace

    def crash(src, dst):
        if Path(dst).name == "champion.json":
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(selection.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        run_promote(models, make_artifact(tmp_path / "t2", "b.ckpt", b"b"), auc=0.80)
    assert (models / "champion.json").read_bytes() == before
    assert (models / "champions/v0002/b.ckpt").exists()  # the copy happened; it is unreferenced
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []  # no temp files left
    monkeypatch.undo()
    # the next attempt does not collide with the orphaned folder
    result = run_promote(models, make_artifact(tmp_path / "t3", "c.ckpt", b"c"), auc=0.80)
    assert result.record["version"] == "v0003" and result.record["previous_version"] == "v0001"


def test_promote_rejects_bad_arguments(models, tmp_path):
    art = make_artifact(tmp_path / "t", "a.ckpt", b"a")
    with pytest.raises(ValueError, match="lineage"):
        promote(models, "a", art, {"auc": 0.7}, {"data_version": "d"}, "auc", 0.0)
    with pytest.raises(ValueError, match="margin"):
        promote(models, "a", art, {"auc": 0.7}, LINEAGE, "auc", -0.1)
    result = promote(models, "a", art, {"ll": 0.7}, LINEAGE, "auc", 0.0)
    assert not result.promoted and not (models / "champion.json").exists()
