"""Shoppers' pseudonyms, scrubbed queries: no raw user id or contact detail is kept."""

from __future__ import annotations

import stat

import pandas as pd
import pytest

from shoprank.data.raw import simulate_batch
from shoprank.feedback import FeedbackLog
from shoprank.privacy import PseudonymKeyError, Shoppers, load_key, pseudonym, scrub
from shoprank.privacy.pseudonyms import KEY_ENV, KEY_FILE

KEY = b"k" * 32


def test_a_pseudonym_is_a_stable_keyed_hash_with_a_prefix():
    a = pseudonym("alice@example.com", KEY)
    assert a == pseudonym("alice@example.com", KEY) and a.startswith("ps_") and len(a) == 3 + 24
    assert "alice" not in a
    assert a != pseudonym("bob@example.com", KEY) and a != pseudonym("alice@example.com", b"j" * 32)


def test_the_key_comes_from_the_environment_or_a_file_made_once(tmp_path):
    assert load_key(tmp_path, {KEY_ENV: "e" * 40}) == b"e" * 40
    assert not (tmp_path / KEY_FILE).exists()  # the environment's key: no file made
    first = load_key(tmp_path / "s", {})
    path = tmp_path / "s" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) == 64
    assert load_key(tmp_path / "s", {}) == first  # made once, then read
    with pytest.raises(PseudonymKeyError, match="at least 32"):
        load_key(tmp_path, {KEY_ENV: "short"})


@pytest.mark.parametrize(
    "query, kept",
    [
        ("red shoes for jane.doe+shop@mail.example.org", "red shoes for <email>"),
        ("call +44 20 7946 0958 about tents", "call <phone> about tents"),
        ("(555) 123-4567 boots", "<phone> boots"),
        ("iphone 15 pro 256gb", "iphone 15 pro 256gb"),  # short numbers are products, sizes, years
        ("size 10.5 trail 2024", "size 10.5 trail 2024"),
        ("tv 3840x2160 65 inch", "tv 3840x2160 65 inch"),
    ],
)
def test_queries_lose_email_addresses_and_phone_numbers(query, kept):
    assert scrub(query) == kept


def test_the_feedback_log_keeps_scrubbed_queries(tmp_path):
    log = FeedbackLog(tmp_path)
    log.append([{"event": "served", "request_id": "r", "item_id": "i", "position": 1,
                 "query": "tent a.b@c.de 0151 2345 6789", "user_id": "ps_x"}])  # fmt: skip
    text = log.files()[0].read_text()
    assert "a.b@c.de" not in text and "2345" not in text
    assert log.read()["query"].tolist() == ["tent <email> <phone>"]


def test_a_simulated_batch_names_shoppers_as_the_service_does(tmp_path, params):
    shoppers = Shoppers(KEY)
    simulate_batch(params.simulate, tmp_path, shoppers, profile="tiny")
    users = pd.read_parquet(tmp_path / "users.parquet")["user_id"]
    impressions = pd.read_parquet(tmp_path / "impressions.parquet")["user_id"]
    truth = pd.read_parquet(tmp_path / "truth" / "users.parquet")["user_id"]
    assert users.str.startswith("ps_").all() and set(impressions) <= set(users) and set(truth) == set(users)
    assert pseudonym("user_000003", KEY) in set(users)  # what a request for user_000003 looks up
    for path in tmp_path.rglob("*.parquet"):  # the simulator's own ids are nowhere
        df = pd.read_parquet(path)
        text = [c for c in df if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype)]
        assert not any(df[c].astype(str).str.contains("user_0").any() for c in text), path


def test_an_erased_shopper_is_left_out_of_a_new_batch(tmp_path, params):
    gone = pseudonym("user_000003", KEY)
    simulate_batch(params.simulate, tmp_path, Shoppers(KEY, frozenset({gone})), profile="tiny")
    for path in tmp_path.rglob("*.parquet"):
        df = pd.read_parquet(path)
        if "user_id" in df:
            assert gone not in set(df["user_id"]), path


def test_a_bundle_named_under_another_key_is_reported_not_silent(caplog):
    from shoprank.privacy import fingerprint
    from shoprank.ranking.loader import key_matches

    pipeline, service = b"k" * 32, b"q" * 32
    assert fingerprint(pipeline) != fingerprint(service) and fingerprint(pipeline) == fingerprint(b"k" * 32)
    assert "k" * 8 not in fingerprint(pipeline)  # a keyed hash, not the key
    assert key_matches({"pseudonym_key": fingerprint(pipeline)}, pipeline)
    assert key_matches({}, service)  # a bundle that does not say
    assert not key_matches({"pseudonym_key": fingerprint(pipeline)}, service)
    assert "every shopper will look new" in caplog.text
