"""params.yaml -> typed settings.

Only entry points (the CLI, the service, tests) call :func:`load_params`; library
functions take the typed section they need. Every model forbids unknown keys, so a typo
in params.yaml is an error naming the key instead of a silent default.

A deployment overrides any key with an environment variable named after its path,
``SHOPRANK__<SECTION>__<KEY>`` (``__`` between levels, keys in any case):
``SHOPRANK__SERVE__MAX_K=50``, ``SHOPRANK__FEATURES__ONLINE_STORE=redis``,
``SHOPRANK__TRAIN__MLP=[128, 64]``. Values are text that pydantic converts to the key's
type; one that starts with ``[`` or ``{`` is read as a YAML list or mapping. A bad value
or an unknown key is an error naming the variable. DVC reads params.yaml itself, so keys
that a stage tracks (``paths``, a step's parameters) belong in the file, not here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from shoprank.config_compute import Compute  # noqa: F401 (re-exported)
from shoprank.config_data import EXTRA_TABLES, ColumnKind, Data, Import, Strict  # noqa: F401 (re-exported)
from shoprank.config_env import OVERRIDE_PREFIX, Origins, ParamsError, apply_overrides, env_overrides  # noqa: F401
from shoprank.config_experiment import Experiment
from shoprank.config_serve import Serve  # noqa: F401 (re-exported)
from shoprank.config_text import Adapt, Fill, Text, Understand  # noqa: F401 (re-exported)

PARAMS_ENV = "SHOPRANK_PARAMS"
DEFAULT_PARAMS = Path("params.yaml")


class Paths(Strict):
    raw: Path = Path("data/raw")
    truth: Path = Path("data/raw/truth")
    quarantine: Path = Path("data/quarantine")
    validated: Path = Path("data/validated")
    features: Path = Path("data/features")
    training: Path = Path("data/training")
    feedback: Path = Path("data/feedback")
    models: Path = Path("models")
    metrics: Path = Path("metrics")
    secrets: Path = Path(".secrets")  # the pseudonym key file when $SHOPRANK_PSEUDONYM_KEY is unset
    erasure: Path = Path("data/erasure")  # the erased shoppers' pseudonyms (`shoprank forget`)
    catalog_updates: Path = Path("data/catalog_updates")  # catalogue rows the service applies


class Profile(Strict):
    """How big a simulated marketplace is."""

    n_items: int = Field(gt=0)
    n_users: int = Field(gt=0)
    n_requests: int = Field(gt=0)
    days: int = Field(gt=0)


class Market(Strict):
    new_item_share: float = Field(0.15, ge=0, lt=1)
    new_user_share: float = Field(0.10, ge=0, lt=1)
    search_share: float = Field(0.75, ge=0, le=1)
    candidates_per_request: int = Field(50, gt=1)
    page_size: int = Field(20, gt=0)
    missing_attribute_rate: float = Field(0.3, ge=0, le=1)
    intents: dict[str, float] = {"buy": 0.35, "browse": 0.2, "compare": 0.15, "price": 0.15, "learn": 0.15}

    @model_validator(mode="after")
    def _check(self) -> Market:
        if self.page_size > self.candidates_per_request:
            raise ValueError("page_size must not exceed candidates_per_request")
        known = {"buy", "browse", "compare", "price", "learn"}
        if unknown := set(self.intents) - known:
            raise ValueError(f"unknown intents {sorted(unknown)}; known: {sorted(known)}")
        if abs(sum(self.intents.values()) - 1) > 1e-6:
            raise ValueError(f"intent shares must sum to 1, got {sum(self.intents.values()):.4f}")
        return self


class Clicks(Strict):
    examination_decay: float = Field(0.9, ge=0)
    base_utility: float = -2.6
    w_type: float = 3.0
    w_subcategory: float = 1.0
    w_attribute: float = 1.2
    w_brand: float = 0.8
    w_category_pref: float = 1.2
    w_price: float = 1.0
    w_quality: float = 0.8
    w_novelty: float = 1.0
    noise: float = Field(0.3, ge=0)
    drift: float = Field(0.6, ge=0)
    purchase_base: float = -1.0


class Legacy(Strict):
    w_lexical: float = 1.0
    w_popularity: float = 0.6
    temperature: float = Field(0.3, gt=0)
    propensity_samples: int = Field(64, gt=0)


class Simulate(Strict):
    profile: str = "default"
    seed: int = 42
    chunk_requests: int = Field(
        50_000, gt=0
    )  # requests simulated and written at once (bounds `shoprank raw`'s memory)
    profiles: dict[str, Profile]
    market: Market = Market()
    clicks: Clicks = Clicks()
    legacy: Legacy = Legacy()

    def sized(self, profile: str | None = None) -> Profile:
        name = profile or self.profile
        if name not in self.profiles:
            raise KeyError(f"unknown profile {name!r}; params.yaml defines {sorted(self.profiles)}")
        return self.profiles[name]


class Validate(Strict):
    """Data quality gate. Owned by src/shoprank/quality/."""

    min_ctr: float = Field(0.001, ge=0, le=1)  # plausible bounds of a batch's overall CTR
    max_ctr: float = Field(0.5, ge=0, le=1)
    min_row_ratio: float = Field(0.5, ge=0)  # rows must not collapse below this share of the previous batch
    max_position: int = Field(20, gt=0)  # largest 1-based position: the page size of the logging system
    min_timestamp: datetime = datetime(2000, 1, 1, tzinfo=UTC)  # earlier timestamps are junk (epoch zero)

    @field_validator("min_timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # naive means UTC, as in the contract


class Features(Strict):
    """Feature computation and Feast. Owned by src/shoprank/features/."""

    # history windows of the CTR and count features, in days; "all": the whole history before the row
    windows_days: tuple[int | Literal["all"], ...] = (1, 7, 28, "all")
    ctr_prior_strength: float = Field(20.0, gt=0)  # pseudo-impressions of the smoothed CTR prior
    history_length: int = Field(20, gt=0)  # recent clicked items kept per user
    new_item_days: int = Field(14, gt=0)  # an item younger than this is flagged new (cold start)
    repo: Path = Path("features")  # the Feast feature repository
    online_store: str = Field("sqlite", pattern="^(sqlite|redis)$")
    redis_url: str = "127.0.0.1:6379"
    # engine of the point-in-time joins (training set, evaluation's candidates): duckdb | feast
    offline_engine: str = Field("duckdb", pattern="^(duckdb|feast)$")

    @field_validator("windows_days")
    @classmethod
    def _windows(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if not value or len(set(value)) != len(value) or any(isinstance(w, int) and w < 1 for w in value):
            raise ValueError("list distinct windows: whole days of at least 1, and/or all")
        return value


# a dotted params.yaml key, e.g. features.history_length
PARAMS_KEY = r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$"


class Candidate(Strict):
    """The params.yaml keys, besides the time split, whose change re-trains one candidate.

    dvc.yaml's ``train`` stage iterates over ``train.candidates`` and lists these two keys as
    the stage's params; a candidate that reads only the split names split keys here.
    """

    reads: str = Field(pattern=PARAMS_KEY)
    also: str = Field(pattern=PARAMS_KEY)


def _default_candidates() -> dict[str, Candidate]:
    return {
        "bert_ctr": Candidate(reads="train", also="features.history_length"),
        "no_text": Candidate(reads="train", also="features.history_length"),
        "lightgbm": Candidate(reads="lightgbm", also="train.seed"),
        "popularity": Candidate(reads="train.val_share", also="train.test_share"),
    }


class Train(Strict):
    """Candidates, the time split and the BERT-CTR training loop."""

    # name -> what its training reads; iterating gives the names, in params.yaml's order
    candidates: dict[str, Candidate] = Field(default_factory=_default_candidates)
    mode: str = Field("frozen", pattern="^(frozen|finetune|lora)$")  # how bert_ctr uses the encoder
    val_share: float = Field(0.1, gt=0, lt=0.5)  # last shares of the time range (by request time)
    test_share: float = Field(0.2, gt=0, lt=0.5)
    batch_size: int = Field(1024, gt=0)
    max_epochs: int = Field(6, gt=0)
    patience: int = Field(1, ge=0)  # early stopping on validation loss
    lr: float = Field(2e-3, gt=0)
    encoder_lr: float = Field(3e-5, gt=0)
    lora_rank: int = Field(8, gt=0)  # lora: rank of the adapters on the attention projections
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(100, ge=0)
    d: int = Field(64, gt=0)  # projection width of the text towers
    # training rows an item or user id needs for an embedding of its own (rarer ones share one); 0: no ids
    id_min_count: int = Field(0, ge=0)
    cross_layers: int = Field(2, ge=0)
    mlp: tuple[int, ...] = (256, 128)
    dropout: float = Field(0.1, ge=0, lt=1)
    accelerator: str = "auto"  # Lightning: auto picks a GPU when present
    devices: str | int = "auto"
    strategy: str = "auto"  # e.g. ddp, ddp_spawn (tests run gloo DDP on CPU)
    num_nodes: int = Field(1, gt=0)  # machines in a multi-node DDP run (devices is per node)
    precision: str = "auto"  # auto: bf16-mixed on GPUs that support it, 32 on CPU
    seed: int = 0
    # rows of the split read at once by the neural candidates and LightGBM (bounds their memory)
    chunk_rows: int = Field(1_000_000, gt=0)

    @field_validator("candidates", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            raise ValueError(
                "a mapping of each candidate to the params keys it reads, e.g. "
                "{lightgbm: {reads: lightgbm, also: train.seed}}, not a list"
            )
        return value


class LightGBM(Strict):
    """The LightGBM baseline (its own section, so DVC re-trains only it when these change)."""

    rounds: int = Field(400, gt=0)
    # training rows the trees learn from at most: a larger split is sampled uniformly, chunk by chunk
    max_rows: int = Field(2_000_000, gt=0)


class CF(Strict):
    """The collaborative-filtering candidate: logistic matrix factorisation (src/shoprank/models/cf.py)."""

    dim: int = Field(32, gt=0)  # factors per shopper and item
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(4096, gt=0)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(1.0e-4, ge=0)  # AdamW's decay of every factor and bias
    min_count: int = Field(5, gt=0)  # ids seen fewer times in training share one fallback row
    patience: int = Field(2, ge=0)  # epochs without a better validation loss before stopping


class Select(Strict):
    """Champion selection."""

    metric: str = "auc"  # a key of each candidate's entry in metrics/evaluate.json
    higher_is_better: bool = True
    margin: float = Field(0.002, ge=0)  # the challenger must beat the champion by more than this


class Package(Strict):
    """`shoprank package`: what the bundle holds beside the champion (the feed's click tables)."""

    neighbours: int = Field(50, gt=0)  # co-clicked items kept per item in the neighbour table
    popular_days: int = Field(7, gt=0)  # the window of clicks that ranks the popular items


class Feedback(Strict):
    """Feedback ingestion: when the service's log holds enough new data to retrain."""

    min_new_impressions: int = Field(
        1000, ge=0
    )  # new impressions that make the feedback DAG schedule training


class Drift(Strict):
    """`shoprank drift`: the test split (the latest requests) against the training split."""

    sample_rows: int = Field(20_000, gt=0)  # rows drawn from each split for the inputs and the scores
    bins: int = Field(10, gt=1)  # reference quantile bins of a numeric input
    max_categories: int = Field(20, gt=0)  # commonest reference values of a categorical kept; the rest: other
    psi_warn: float = Field(0.1, gt=0)  # population stability index that warns ...
    psi_alert: float = Field(0.25, gt=0)  # ... and that alerts
    seed: int = 0

    @model_validator(mode="after")
    def _order(self) -> Drift:
        if self.psi_alert < self.psi_warn:
            raise ValueError("psi_alert must not be below psi_warn")
        return self


class Params(Strict):
    paths: Paths = Paths()
    data: Data = Data()
    simulate: Simulate
    import_: Import = Field(Import(), alias="import")
    validate_: Validate = Field(Validate(), alias="validate")
    text: Text = Text()
    adapt: Adapt = Adapt()
    features: Features = Features()
    compute: Compute = Compute()
    train: Train = Train()
    lightgbm: LightGBM = LightGBM()
    cf: CF = CF()
    select: Select = Select()
    package: Package = Package()
    serve: Serve = Serve()
    feedback: Feedback = Feedback()
    understand: Understand = Understand()
    drift: Drift = Drift()
    experiment: Experiment = Experiment()


def params_path() -> Path:
    return Path(os.environ.get(PARAMS_ENV, DEFAULT_PARAMS))


def parse_params(raw: dict[str, Any], source: str = "params", origins: Origins | None = None) -> Params:
    """Validate ``raw``; errors name each bad key and, via ``origins``, the variable that set it."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: invalid settings"]
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            blamed = sorted({var for path, var in (origins or {}).items() if _nested(path, loc)})
            origin = f" (from ${', $'.join(blamed)})" if blamed else ""
            lines.append(f"  {'.'.join(loc)}: {err['msg']}{origin}")
        raise ParamsError("\n".join(lines)) from None
    _declare_inputs(params)
    return params


def _declare_inputs(params: Params) -> None:
    """The loaded params' windows and shop columns become declared model inputs."""
    from shoprank.inputs.declare import configure

    try:
        configure(params.features.windows_days, params.data.columns)
    except ValueError as exc:
        raise ParamsError(str(exc)) from None


def _nested(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One path lies inside the other (an error on a section concerns the keys set under it)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def load_params(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Params:
    """Read params.yaml (or $SHOPRANK_PARAMS) into typed settings, with the ``SHOPRANK__*`` overrides.

    ``env``: where the overrides come from (default: the process environment).
    """
    path = Path(path) if path is not None else params_path()
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file (run from the project root or set ${PARAMS_ENV})")
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    merged, origins = apply_overrides(raw, os.environ if env is None else env)
    return parse_params(merged, source=str(path), origins=origins)
