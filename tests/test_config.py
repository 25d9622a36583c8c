"""params.yaml loads into typed settings; typos and bad values are errors, not defaults.

``SHOPRANK__<SECTION>__<KEY>`` environment variables override any key, with the same checks.
"""

from __future__ import annotations

import pytest
import yaml

from shoprank.config import Params, ParamsError, Serve, load_params, parse_params
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
        (("serve", "encoder_runtime"), "tensorflow", "serve.encoder_runtime"),
        (("serve", "max_k"), 0, "serve.max_k"),
        (("serve", "explore_share"), 1.5, "serve.explore_share"),
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


def test_the_serve_section_spells_out_the_models_defaults():
    """params.yaml lists every serving knob, at the value the code would use without it."""
    assert set(raw_params()["serve"]) == set(Serve.model_fields)
    assert load_params(ROOT / "params.yaml", env={}).serve == Serve()


def test_environment_overrides_any_key_with_its_type():
    params = load_params(
        ROOT / "params.yaml",
        env={
            "SHOPRANK__SERVE__MAX_K": "7",
            "SHOPRANK__SERVE__FAST_PATH": "false",
            "SHOPRANK__SIMULATE__MARKET__PAGE_SIZE": "10",
            "SHOPRANK__features__redis_url": "redis:6379,db=0",
            "SHOPRANK__TRAIN__MLP": "[64, 32]",
            "SHOPRANK__IMPORT__TABLES": "{impressions: {file: logs.csv, invalid_rows: drop}}",
            "SHOPRANK_SERVE_MAX_K": "9",  # one underscore: not an override
        },
    )
    assert params.serve.max_k == 7 and params.serve.fast_path is False
    assert params.serve.search_diversity == Serve().search_diversity  # keys not named keep the file's values
    assert params.simulate.market.page_size == 10
    assert params.simulate.market.candidates_per_request == 50
    assert params.features.redis_url == "redis:6379,db=0"
    assert params.train.mlp == (64, 32)
    assert str(params.import_.tables["impressions"].file) == "logs.csv"
    assert params.import_.tables["impressions"].invalid_rows == "drop"


def test_overrides_come_from_the_process_environment(monkeypatch):
    monkeypatch.setenv("SHOPRANK__SERVE__EXPLORE_SHARE", "0.25")
    assert load_params(ROOT / "params.yaml").serve.explore_share == 0.25


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("SHOPRANK__SERVE__MAX_K", "seven", "serve.max_k: Input should be a valid integer"),
        ("SHOPRANK__SERVE__MAX_K", "0", "serve.max_k: Input should be greater than 0"),
        ("SHOPRANK__SERVE__ENCODER_RUNTIME", "tensorflow", "serve.encoder_runtime"),
        ("SHOPRANK__SERVE__MAX_KK", "7", "serve.max_kk: Extra inputs are not permitted"),
        ("SHOPRANK__SERV__MAX_K", "7", "serv: Extra inputs are not permitted"),
        ("SHOPRANK__SIMULATE__MARKET__PAGE_SIZE", "80", "page_size must not exceed"),
        ("SHOPRANK__SERVE__MAX_K__LIMIT", "7", "serve.max_k is a value"),
        ("SHOPRANK__SERVE____MAX_K", "7", "SHOPRANK__<SECTION>__<KEY>"),
        ("SHOPRANK__TRAIN__MLP", "[64,", "not a YAML list or mapping"),
    ],
)
def test_a_bad_override_names_its_variable(var, value, needle):
    with pytest.raises(ParamsError) as caught:
        load_params(ROOT / "params.yaml", env={var: value, "SHOPRANK__SERVE__FEED_DIVERSITY": "0.5"})
    message = str(caught.value)
    assert needle in message and f"${var}" in message
    assert "SHOPRANK__SERVE__FEED_DIVERSITY" not in message  # a good override is not blamed


def test_two_variables_for_one_key_are_an_error():
    with pytest.raises(
        ParamsError,
        match=r"SHOPRANK__serve__max_k.*SHOPRANK__SERVE__MAX_K|SHOPRANK__SERVE__MAX_K.*SHOPRANK__serve__max_k",
    ):
        load_params(ROOT / "params.yaml", env={"SHOPRANK__SERVE__MAX_K": "7", "SHOPRANK__serve__max_k": "8"})
