"""params.yaml loads into typed settings; typos and bad values are errors, not defaults."""

from __future__ import annotations

import pytest
import yaml

from shoprank.config import Params, ParamsError, load_params, parse_params
from tests.conftest import ROOT


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_build_every_section(params):
    assert isinstance(params, Params)
    assert {"tiny", "default", "large"} <= set(params.simulate.profiles)
    tiny, large = params.simulate.sized("tiny"), params.simulate.sized("large")
    assert tiny.n_requests < params.simulate.sized("default").n_requests < large.n_requests
    assert large.n_requests * params.simulate.market.page_size >= 1_000_000  # millions of impressions


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("simulate", "clicks", "w_typo"), 1.0, "simulate.clicks.w_typo"),
        (("simulate", "market", "page_size"), 80, "page_size must not exceed"),
        (("simulate", "market", "intents"), {"buy": 0.5, "browse": 0.2}, "sum to 1"),
        (("simulate", "legacy", "temperature"), -1, "simulate.legacy.temperature"),
        (("features", "online_store"), "cassandra", "features.online_store"),
        (("unknown_section",), {}, "unknown_section"),
    ],
)
def test_bad_settings_are_rejected_with_their_key(path, value, needle):
    raw = raw_params()
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ParamsError, match=needle.replace(".", r"\.")):
        parse_params(raw)


def test_unknown_profile_names_the_known_ones(params):
    with pytest.raises(KeyError, match="tiny"):
        params.simulate.sized("huge")


def test_missing_params_file_says_where(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "params.yaml")
