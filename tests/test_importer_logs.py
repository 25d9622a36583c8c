"""`shoprank import` of a ratings log shaped like MovieLens: every conversion declared in settings.

Epoch-second times, clicks from ratings, one-hot genres as a category, a missing release
date repaired from the first impression, request ids from sessions, a shop's own user
columns kept; and every invalid row reported, dropped or fatal as the settings say.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shoprank.config import Data
from shoprank.config_data import Import, Sessions
from shoprank.data.importer import REPORT_FILE, ImportFailed, import_tables
from shoprank.data.importer.sessions import by_gap, request_ids
from shoprank.data.io import read_table
from tests.conftest import SHOPPERS
from tests.test_importer import ps

T0 = 1_000_000_000  # 2001-09-09T01:46:40Z
MIN = 60
FUTURE = 4_102_444_800  # 2100-01-01
DATA = Data(
    columns={
        "users": {"age": "numeric", "gender": "categorical", "occupation": "categorical"},
        "catalog": {"year": "numeric"},
    }
)
GENRES = ["Action", "Adventure", "Children's"]


def ratings(*extra: tuple) -> pd.DataFrame:
    """User 1 rates twice, pauses 40 minutes, rates twice more; user 2 rates two days apart."""
    rows = [
        (1, 10, 5, T0),
        (1, 20, 3, T0 + 10 * MIN),
        (1, 30, 4, T0 + 50 * MIN),
        (1, 10, 2, T0 + 55 * MIN),
        (2, 20, 1, T0 + 5 * MIN),
        (2, 30, 4, T0 + 2 * 24 * 60 * MIN),
        *extra,
    ]
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"], dtype=object)


def items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": [10, 20, 30],
            "movie_title": ["Toy Story (1995)", "GoldenEye (1995)", "Unknown"],
            "release_date": ["01-Jan-1995", "15-Mar-1996", None],
            "IMDb_URL": ["http://a", "http://b", None],
            "Action": [0, 1, 0],
            "Adventure": [0, 1, 0],
            "Children's": [1, 0, 0],
        }
    )


def users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 2],
            "age": [24, 53],
            "gender": ["M", "F"],
            "occupation": ["technician", "other"],
            "zip_code": ["85711", "94043"],
        }
    )


def tables(**changed: dict) -> dict:
    """The MovieLens settings of docs/data-contract.md, with some keys of some tables changed."""
    spec = {
        "impressions": {
            "file": "ratings.csv",
            "columns": {"item_id": "movie_id", "ts": "timestamp"},
            "timestamps": {"ts": {"unit": "s"}},
            "click": {"column": "rating", "min": 4},
            "constants": {"query": "", "position": 1},
            "request_id": {"session_gap_minutes": 30},
        },
        "catalog": {
            "file": "items.csv",
            "columns": {"item_id": "movie_id", "title": "movie_title", "created_at": "release_date"},
            "timestamps": {"created_at": {"format": "%d-%b-%Y"}},
            "labels": {"category": {"columns": GENRES, "sep": ", "}},
            "template": {"description": "{title}. {category}", "year": "{created_at:%Y}"},
            "constants": {"brand": "", "price": 1.0, "attributes": "{}"},
            "defaults": {"created_at": "first_seen"},
        },
        "users": {"file": "users.csv", "defaults": {"created_at": "first_seen"}},
    }
    for name, keys in changed.items():
        spec[name] = {**spec.get(name, {}), **keys}
    return {name: keys for name, keys in spec.items() if keys.get("file")}


def write(folder: Path, log: pd.DataFrame | None = None) -> None:
    (log if log is not None else ratings()).to_csv(folder / "ratings.csv", index=False)
    items().to_csv(folder / "items.csv", index=False)
    users().to_csv(folder / "users.csv", index=False)


def settings(folder: Path, **changed: dict) -> Import:
    return Import.model_validate({"dir": str(folder), "tables": tables(**changed)})


def failure(folder: Path, imp: Import, data: Data = DATA) -> str:
    """Import that must fail; returns the message after checking nothing was written."""
    out = folder / "refused"
    with pytest.raises(ImportFailed) as info:
        import_tables(imp, data, out, SHOPPERS)
    assert not out.exists() or not list(out.iterdir())
    return str(info.value)


def at(*seconds: int) -> pd.DatetimeIndex:
    return pd.to_datetime(list(seconds), unit="s", utc=True).as_unit("us")


def test_a_ratings_log_imports_into_contract_tables(tmp_path):
    write(tmp_path)
    result = import_tables(settings(tmp_path), DATA, tmp_path / "out", SHOPPERS)
    imp = read_table(tmp_path / "out", "impressions")
    assert imp["request_id"].tolist() == [f"{ps(u)}-{n}" for u, n in ("11", "11", "12", "12", "21", "22")]
    assert imp["clicked"].tolist() == [1, 0, 1, 0, 0, 1]
    assert imp["item_id"].tolist() == ["10", "20", "30", "10", "20", "30"]
    assert set(imp["query"]) == {""} and set(imp["position"]) == {1}
    assert list(imp["ts"]) == list(at(T0, T0 + 600, T0 + 3000, T0 + 3300, T0 + 300, T0 + 172800))
    cat = read_table(tmp_path / "out", "catalog").set_index("item_id")
    assert cat["category"].tolist() == ["Children's", "Action, Adventure", ""]
    assert cat["description"].tolist() == [
        "Toy Story (1995). Children's",
        "GoldenEye (1995). Action, Adventure",
        "Unknown. ",
    ]
    assert cat.loc["30", "created_at"] == at(T0 + 3000)[0]  # no release date: first rated
    assert cat.loc["10", "created_at"] == pd.Timestamp("1995-01-01", tz="UTC")
    assert cat["year"].tolist()[:2] == [1995.0, 1996.0] and pd.isna(cat.loc["30", "year"])
    usr = read_table(tmp_path / "out", "users")
    assert usr.columns.tolist() == ["user_id", "created_at", "age", "gender", "occupation"]
    assert list(usr["created_at"]) == list(at(T0, T0 + 300))
    assert usr["age"].dtype == "float64" and usr["gender"].tolist() == ["M", "F"]

    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text(), parse_constant=lambda c: pytest.fail(c))
    assert report == result.report
    assert report["impressions"] == {
        "impressions": 6,
        "requests": 4,
        "users": 2,
        "items": 3,
        "clicks": 3,
        "ctr": 0.5,
    }
    assert report["tables"]["catalog"]["repaired"] == {"created_at <- first_seen": 1}
    assert report["tables"]["catalog"]["declared_columns_null"] == {"year": 1}
    assert report["tables"]["catalog"]["source_columns_dropped"] == ["IMDb_URL"]
    assert report["tables"]["users"]["repaired"] == {"created_at <- first_seen": 2}
    assert report["tables"]["users"]["source_columns_dropped"] == ["zip_code"]


def test_invalid_rows_are_dropped_and_reported_by_reason(tmp_path):
    log = ratings(
        (1, 20, "x", T0 + 70 * MIN),  # line 8: no rating
        (2, 10, 5, FUTURE),  # line 9
        (1, 30, 5, T0 + 52 * MIN),  # line 10: movie 30 again in the same session
        (3, 10, 5, T0),  # line 11: no such user
        (2, 99, 5, T0),  # line 12: no such movie
        (None, 10, 5, T0),  # line 13: no user
    )
    write(tmp_path, log)
    result = import_tables(
        settings(tmp_path, impressions={"invalid_rows": "drop"}), DATA, tmp_path / "out", SHOPPERS
    )
    dropped = result.report["tables"]["impressions"]["dropped"]
    assert dropped == {
        "column 'rating': not a number, cannot tell a click": {"rows": 1, "first_rows": [8]},
        "column 'user_id': nulls not allowed": {"rows": 1, "first_rows": [13]},
        "column 'ts': later than the time of import": {"rows": 1, "first_rows": [9]},
        "key ['request_id', 'item_id'] not unique": {"rows": 1, "first_rows": [10]},
        "column 'user_id': not in users": {"rows": 1, "first_rows": [11]},
        "column 'item_id': not in catalog": {"rows": 1, "first_rows": [12]},
    }
    assert result.report["tables"]["impressions"]["rows_dropped"] == 6
    assert len(read_table(tmp_path / "out", "impressions")) == 6


def test_invalid_rows_fail_by_default_with_lines_and_values(tmp_path):
    write(tmp_path, ratings((2, 10, 5, FUTURE)))
    msg = failure(tmp_path, settings(tmp_path))
    assert "ratings.csv (impressions; rows are CSV line numbers" in msg
    assert "column 'ts': later than the time of import, 1 row(s): 8" in msg
    write(tmp_path, ratings((2, 99, 5, T0)))
    assert "column 'item_id': not in catalog: 1 value(s); first rows: 8='99'" in failure(
        tmp_path, settings(tmp_path)
    )


def test_a_catalog_row_dropped_takes_its_impressions_along_only_when_they_may_drop(tmp_path):
    write(tmp_path)
    bad = items().assign(release_date=["01-Jan-1995", "1996/03/15", None])
    bad.to_csv(tmp_path / "items.csv", index=False)
    msg = failure(tmp_path, settings(tmp_path))
    assert "column 'release_date': not a valid timestamp (text in the format '%d-%b-%Y')" in msg
    assert "3='1996/03/15'" in msg
    msg = failure(tmp_path, settings(tmp_path, catalog={"invalid_rows": "drop"}))
    assert "column 'item_id': not in catalog: 2 value(s); first rows: 3='20', 6='20'" in msg
    both = settings(tmp_path, catalog={"invalid_rows": "drop"}, impressions={"invalid_rows": "drop"})
    result = import_tables(both, DATA, tmp_path / "out", SHOPPERS)
    assert result.report["tables"]["catalog"]["rows_dropped"] == 1
    assert result.report["tables"]["impressions"]["dropped"] == {
        "column 'item_id': not in catalog": {"rows": 2, "first_rows": [3, 6]}
    }


def test_a_table_with_no_valid_row_and_a_log_without_clicks_fail(tmp_path):
    write(tmp_path, ratings().assign(timestamp=FUTURE))
    msg = failure(tmp_path, settings(tmp_path, impressions={"invalid_rows": "drop"}))
    assert "every row is invalid" in msg and "later than the time of import, 6 row(s)" in msg
    write(tmp_path, ratings().assign(rating=2))
    msg = failure(tmp_path, settings(tmp_path))
    assert "no clicks: all 6 impressions have clicked = 0" in msg and "impressions.click" in msg


def test_misspelt_source_columns_name_the_closest(tmp_path):
    write(tmp_path)
    msg = failure(tmp_path, settings(tmp_path, impressions={"click": {"column": "ratng", "min": 4}}))
    assert "import.tables.impressions.click.column: unknown source column 'ratng'; closest: 'rating'" in msg
    assert "available: ['user_id', 'movie_id', 'rating', 'timestamp']" in msg
    labels = {"category": {"columns": ["Action", "Childrens"]}}
    msg = failure(tmp_path, settings(tmp_path, catalog={"labels": labels}))
    assert "unknown source column 'Childrens'; closest: \"Children's\"" in msg


def test_templates_use_columns_that_exist(tmp_path):
    write(tmp_path)
    data = Data(columns={**DATA.columns, "users": {"region_name": "categorical"}})
    users().assign(region_name=["north", None]).to_csv(tmp_path / "users.csv", index=False)
    imp = settings(tmp_path, users={"template": {"region": "{region_name} region", "device": "{region}"}})
    msg = failure(tmp_path, imp, data)
    # region is built before device reads it; a null region gives a null device, which is allowed
    assert (
        "users.csv" in msg
        and "column 'device': values must be 'mobile', 'desktop', 'app', 1 row(s): 2" in msg
    )
    imp = settings(tmp_path, users={"template": {"device": "{region}"}})
    msg = failure(tmp_path, imp, data)
    assert "import.tables.users.template.device: ['region'] neither in the source nor built" in msg
    imp = settings(tmp_path, users={"template": {"region": "{region_name} region"}})
    import_tables(imp, data, tmp_path / "out", SHOPPERS)
    region = read_table(tmp_path / "out", "users")["region"]
    assert region[0] == "north region" and pd.isna(region[1])


def test_declared_columns_must_be_in_the_source(tmp_path):
    write(tmp_path)
    data = Data(columns={**DATA.columns, "users": {**DATA.columns["users"], "income": "numeric"}})
    msg = failure(tmp_path, settings(tmp_path), data)
    assert "users.csv" in msg and "missing column(s) 'income'" in msg
    msg = failure(tmp_path, settings(tmp_path, users={"file": None}), data)
    assert "data.columns.users declares ['age', 'gender', 'occupation', 'income']" in msg


def test_without_a_users_file_users_come_from_the_log(tmp_path):
    write(tmp_path)
    result = import_tables(
        settings(tmp_path, users={"file": None}),
        Data(columns={"catalog": {"year": "numeric"}}),
        tmp_path / "out",
        SHOPPERS,
    )
    usr = read_table(tmp_path / "out", "users")
    first = dict(zip([ps("1"), ps("2")], at(T0, T0 + 300), strict=True))
    assert dict(zip(usr["user_id"], usr["created_at"], strict=True)) == first
    assert result.report["tables"]["users"]["repaired"] == {"created_at <- first_seen": 2}


def test_click_values_and_a_session_column(tmp_path):
    log = ratings().assign(
        event=["click", "view", "view", "Click", "view", "click"], visit=[1, 1, 1, 2, 1, 2]
    )
    write(tmp_path, log)
    imp = settings(
        tmp_path,
        impressions={
            "click": {"column": "event", "values": ["click", "Click"]},
            "request_id": {"column": "visit"},
        },
    )
    import_tables(imp, DATA, tmp_path / "out", SHOPPERS)
    got = read_table(tmp_path / "out", "impressions")
    assert got["clicked"].tolist() == [1, 0, 0, 1, 0, 1]
    assert got["request_id"].tolist() == [f"{ps(u)}-{n}" for u, n in ("11", "11", "11", "12", "21", "22")]
    bad = log.assign(visit=[1, 1, 1, None, 1, 2])
    write(tmp_path, bad)
    assert "column 'visit': null, cannot tell the request, 1 row(s): 5" in failure(tmp_path, imp)


def test_sessions_split_on_the_gap_whatever_the_row_order():
    user = pd.Series(["a", "b", "a", "a", "b", "a"], dtype="string")
    ts = pd.Series(pd.to_datetime([0, 0, 29, 70, 31, 100], unit="m", utc=True))
    ids = by_gap(user, ts, pd.Timedelta(minutes=30))
    assert ids.tolist() == ["a-1", "b-1", "a-1", "a-2", "b-2", "a-2"]
    order = [5, 3, 1, 0, 4, 2]
    shuffled = by_gap(
        user[order].reset_index(drop=True), ts[order].reset_index(drop=True), pd.Timedelta(minutes=30)
    )
    assert shuffled.tolist() == ids[order].tolist()
    same, problems = request_ids(user, ts, Sessions(session_gap_minutes=30), pd.DataFrame(index=user.index))
    assert same.tolist() == ids.tolist() and problems == []


def test_an_item_listed_after_it_was_first_shown_is_listed_when_first_shown(tmp_path):
    write(tmp_path)
    late = items()
    late.loc[1, "release_date"] = "01-Jan-2002"  # movie 20 was first rated in 2001
    late.to_csv(tmp_path / "items.csv", index=False)
    result = import_tables(settings(tmp_path), DATA, tmp_path / "out", SHOPPERS)
    cat = read_table(tmp_path / "out", "catalog").set_index("item_id")
    assert cat.loc["20", "created_at"] == at(T0 + 300)[0]  # user 2's rating, five minutes in
    assert cat.loc["10", "created_at"] == pd.Timestamp("1995-01-01", tz="UTC")  # earlier dates stay
    repaired = result.report["tables"]["catalog"]["repaired"]
    assert repaired["created_at after the first impression <- first_seen"] == 1
