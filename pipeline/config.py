"""The project file (`tfxp.toml`): parsed once with tomllib into typed, validated pydantic models."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models import evaluation
from models.distribution import Strategy
from models.features import Override, Problem

CONFIG_FILE = "tfxp.toml"
PATTERNS = {"csv": "*.csv", "parquet": "*.parquet", "tfrecord": "*.tfrecord*"}  # files read per format


class ConfigError(ValueError):
    """A setting a user gave is wrong; the message says which and how to fix it."""


class _Section(BaseModel):
    """Unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the data is and how it is stored."""

    path: Path = Path("data")  # a folder of files, or of span-<N>/ folders
    format: Literal["csv", "parquet", "tfrecord"] = "csv"
    pattern: str | None = None  # file glob inside the folder; default per format
    allow_outside_project: bool = False  # refuse paths that leave the project folder by .. or a symlink

    @property
    def file_pattern(self) -> str:
        """The glob matching data files in one folder."""
        return self.pattern or PATTERNS[self.format]


class SchemaConfig(_Section):
    """The curated schema every batch is checked against."""

    path: Path = Path("schema/schema.pbtxt")


class LabelConfig(_Section):
    """The column to predict, and what kind of prediction it is."""

    column: str
    problem: Problem | None = None  # inferred from the schema when omitted


class FeaturesConfig(_Section):
    """Which columns are not inputs, and per-column encoding overrides."""

    exclude: list[str] = []  # ids, and leaks such as a column computed from the label
    overrides: dict[str, Override] = {}


class SplitConfig(_Section):
    """How ExampleGen hash-splits each batch."""

    eval_fraction: float = Field(0.33, gt=0, lt=1)


class EvaluationConfig(_Section):
    """How the Evaluator slices the eval split, and what a model needs to be blessed."""

    slices: list[str] = []
    metric: str | None = None  # default: accuracy (multiclass), auc (binary), rmse (regression)
    threshold: float | None = None  # at least this (accuracy, auc) or at most this (rmse, mae)
    max_regression: float = Field(evaluation.DEFAULT_MAX_REGRESSION, ge=0)
    # Fairness gate, off by default: a slice at least min_slice_size examples large may be at most this much worse
    # than the overall value of the gate metric, in its units.
    max_slice_gap: float | None = Field(None, ge=0)
    min_slice_size: int = Field(evaluation.DEFAULT_MIN_SLICE_SIZE, ge=1)  # smaller slices are reported, never gated


class TrainingConfig(_Section):
    """How long to tune and train: passes over the whole training split, stopped early when the eval
    loss stops falling, and capped in time (models/budget.py applies it to the table's size)."""

    epochs: int = Field(50, ge=1)  # at most this many passes over the training split
    patience: int = Field(5, ge=1)  # epochs without a better eval AUC (binary) or loss before training stops
    max_minutes: float = Field(10.0, gt=0)  # wall-clock cap on the final training
    batch_size: int | None = Field(None, ge=1)  # default: 32, doubling with the table above 64k rows
    train_steps: int | None = Field(None, ge=1)  # a fixed number of steps instead of epochs
    eval_steps: int | None = Field(None, ge=1)  # evaluation steps per epoch; default: the whole eval split
    tuner: bool = True
    tuner_trials: int = Field(3, ge=1)
    tuner_epochs: int = Field(10, ge=1)  # per trial, with the same early stopping; max_minutes is shared out
    strategy: Strategy = Strategy.AUTO  # how the final training is spread over devices and machines


class DeliveryConfig(_Section):
    """How pushed models are kept in the serving folder."""

    keep_versions: int = Field(5, ge=1)  # newest versions kept after a push; a pinned version is never removed
    approval: Literal["auto", "manual"] = "auto"  # manual: a blessed model waits for `tfxp approve`


class MonitoringConfig(_Section):
    """When a span, or serving traffic, has moved too far from what the model was trained on (TFDV's comparators:
    L-infinity distance for categorical features, Jensen-Shannon divergence for numeric ones, both from 0 to 1)."""

    drift_threshold: float = Field(0.1, gt=0, le=1)  # for every feature and the label, unless overridden below
    thresholds: dict[str, float] = {}  # per-column overrides of drift_threshold, which `tfxp monitor` uses too
    on_drift: Literal["warn", "stop"] = "warn"  # stop: a drifted span trains nothing and pushes nothing
    min_rows_ratio: float = Field(0.5, gt=0, lt=1)  # a split with fewer rows than this × the baseline's is reported
    max_rows_ratio: float = Field(2.0, gt=1)  # and one with more than this × as many
    max_model_age_days: float | None = Field(None, gt=0)  # `tfxp status` exits non-zero past this age

    @pydantic.field_validator("thresholds")
    @classmethod
    def _in_range(cls, thresholds: dict[str, float]) -> dict[str, float]:
        for column, value in thresholds.items():
            if not 0 < value <= 1:
                raise ValueError(f"threshold for '{column}' must be greater than 0 and at most 1, got {value}")
        return thresholds

    def threshold(self, column: str) -> float:
        """The distance above which `column` counts as drifted or skewed."""
        return self.thresholds.get(column, self.drift_threshold)


class CardConfig(_Section):
    """What only a person can write on the model card that travels with each pushed version."""

    intended_use: str = ""
    users: str = ""
    limitations: str = ""


REMOTE_URI = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s]+(/\S*)?$")


def _remote(uri: str) -> str:
    """A URI a cluster's workers can read (gs://, s3://, hdfs://, ...), without a trailing slash; never a path on
    this machine, which the workers do not have."""
    if not REMOTE_URI.match(uri) or uri.startswith("file://"):
        raise ValueError(f"{uri!r} is not a remote URI; a cluster reads and writes URIs such as gs://bucket/folder")
    return uri.rstrip("/")


RemoteUri = Annotated[str, AfterValidator(_remote)]


class ClusterConfig(_Section):
    """Where the pipeline runs when `tfxp compile` writes it for Vertex AI Pipelines or Kubeflow Pipelines: the
    container image every task runs in, remote folders in place of the local ones, and Dataflow for Beam."""

    image: str = Field(pattern=r"^[^\s:/][^\s]*$")  # built from this repository's Dockerfile and pushed to a registry
    pipeline_root: RemoteUri  # every artifact, as <output>/pipeline holds them locally
    data: RemoteUri  # the data folder's layout: files, or span-<N>/ folders
    spans: bool = False  # the data folder holds span-<N>/ folders; each run reads the newest
    serving: RemoteUri  # pushed models: <serving>/<model_name>/<version>/
    runner: Literal["DataflowRunner", "DirectRunner"] = "DataflowRunner"  # DirectRunner: Beam inside each task
    project: str | None = Field(None, min_length=1)  # the Google Cloud project Dataflow runs in
    region: str | None = Field(None, min_length=1)  # where Dataflow runs, e.g. europe-west4
    temp_location: RemoteUri | None = None  # Dataflow's scratch folder; default <pipeline_root>/_beam_temp
    beam_args: list[str] = []  # more Beam arguments, e.g. "--machine_type=n2-standard-4", "--max_num_workers=8"

    @pydantic.model_validator(mode="after")
    def _dataflow_needs_a_place(self) -> ClusterConfig:
        if self.runner == "DataflowRunner" and not (self.project and self.region):
            raise ValueError('runner = "DataflowRunner" needs project and region (the Google Cloud project and region)')
        return self

    @property
    def beam_temp(self) -> str:
        """Dataflow's scratch folder."""
        return self.temp_location or f"{self.pipeline_root}/_beam_temp"


class Project(_Section):
    """Everything one project's `tfxp.toml` says."""

    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # serving/<model_name>/<version>/
    output: Path = Path("outputs")
    data: DataConfig = DataConfig()
    schema_: SchemaConfig = Field(SchemaConfig(), alias="schema")
    label: LabelConfig
    features: FeaturesConfig = FeaturesConfig()
    split: SplitConfig = SplitConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    training: TrainingConfig = TrainingConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    card: CardConfig = CardConfig()
    cluster: ClusterConfig | None = None  # only `tfxp compile` reads it; `tfxp run` runs here


def _merge(raw: dict, overrides: dict[str, Any]) -> dict:
    """Applies 'section.key' → value overrides (CLI flags) on the parsed TOML."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        target = merged
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return merged


def _describe(error: pydantic.ValidationError, path: Path) -> str:
    """One line per problem, naming the TOML section and key."""
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        where = (
            f"[{'.'.join(location[:-1])}] {location[-1]}" if len(location) > 1 else (location[0] if location else "")
        )
        message = problem["msg"]
        if problem["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "is not a known setting"
        elif problem["type"] == "missing":
            message = "is required"
        lines.append(f"{where.replace('schema_', 'schema')}: {message}")
    return f"{path}: " + "; ".join(lines)


def load_project(path: Path, overrides: dict[str, Any] | None = None) -> Project:
    """Reads and validates a project file, with CLI overrides applied, or raises ConfigError."""
    if not path.is_file():
        raise ConfigError(
            f"no project file at {path}; create one with `tfxp init --data PATH --label COLUMN`, or pass --config"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    try:
        return Project.model_validate(_merge(raw, overrides or {}))
    except pydantic.ValidationError as error:
        raise ConfigError(_describe(error, path)) from None
