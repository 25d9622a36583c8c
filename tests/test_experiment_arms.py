"""Arm models: found among the models and copied into the bundle, or an error naming the arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoprank.config_experiment import Arm, Experiment
from shoprank.experiments.arms import ArmError, artifact_of, digest, package_arms
from shoprank.models.baselines import PopularityModel
from shoprank.models.scorers import load, save
from shoprank.ranking.bundle import model_tag


@pytest.fixture()
def models(tmp_path) -> Path:
    root = tmp_path / "models"
    save(PopularityModel(), root / "candidates" / "popularity.pt", "popularity")
    save(PopularityModel(prior_strength=5.0), root / "champions" / "v0002" / "popularity.pt", "popularity")
    (root / "champions" / "v0002" / "record.json").write_text(
        json.dumps({"artifact": "champions/v0002/popularity.pt"})
    )
    return root


def experiment(*models: str) -> Experiment:
    arms = [Arm(name="control", model="champion", share=0.5)]
    share = 0.5 / len(models)
    arms += [Arm(name=f"arm{i}", model=m, share=share) for i, m in enumerate(models)]
    return Experiment(name="exp1", arms=arms)


def test_each_challenger_model_is_copied_into_the_bundle(models, tmp_path):
    out = tmp_path / "bundle"
    got = package_arms(experiment("popularity", "v0002", "legacy"), models, out)
    assert got is not None and got["name"] == "exp1" and got["mode"] == "ab"
    assert got["arms"]["control"] == {"model": "champion"} and got["arms"]["arm2"] == {"model": "legacy"}
    assert got["arms"]["arm0"]["kind"] == "popularity" and len(got["arms"]["arm0"]["sha256"]) == 64
    assert sorted(p.name for p in (out / "arms").iterdir()) == ["arm0.pt", "arm1.pt"]
    _, version = load(out / "arms" / "arm1.pt")  # the promoted version's own model
    assert isinstance(version, PopularityModel) and version.prior_strength == 5.0
    assert package_arms(Experiment(), models, out) is None


@pytest.mark.parametrize(
    "model, needle",
    [
        ("lightgbm", "arm 'arm0': model 'lightgbm' not found"),
        ("v0009", "arm 'arm0': no promoted version v0009"),
        ("broken", "arm 'arm0':"),
    ],
)
def test_an_arm_whose_model_is_missing_or_corrupted_is_an_error_naming_it(models, tmp_path, model, needle):
    (models / "candidates" / "broken.pt").write_bytes(b"not a model")
    with pytest.raises(ArmError, match=needle):
        package_arms(experiment(model), models, tmp_path / "bundle")


def test_champion_and_legacy_arms_have_no_file_and_a_changed_experiment_gets_a_new_tag(models):
    assert artifact_of(models, Arm(name="a", model="champion", share=1)) is None
    assert artifact_of(models, Arm(name="a", model="legacy", share=1)) is None
    record = {"version": "v0003", "sha256": "ab" * 32}
    plain = model_tag(record)
    assert plain == "shoprank-ranker:v0003-abababababab" and model_tag(record, Experiment()) == plain
    one, other = model_tag(record, experiment("popularity")), model_tag(record, experiment("v0002"))
    assert one.startswith(plain + "-x") and one != other
    assert digest(experiment("popularity")) == digest(experiment("popularity"))
