"""Typed, validated settings for one pipeline run, with defaults under a single output folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = PROJECT_ROOT / "data"
DEFAULT_SCHEMA = PROJECT_ROOT / "schema" / "schema.pbtxt"
DEFAULT_OUTPUT = PROJECT_ROOT / "outputs"

# Measured on a 2-core machine: in_memory beats multi_processing on small data (see README).
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


class ConfigError(ValueError):
    """A setting a user gave is wrong; the message says which and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where the data comes from and where every artifact lands."""

    data_root: Path = DEFAULT_DATA
    schema_file: Path | None = DEFAULT_SCHEMA  # None: infer the schema with SchemaGen
    output_root: Path = DEFAULT_OUTPUT

    @property
    def pipeline_root(self) -> Path:
        """TFX artifacts, one folder per component and execution."""
        return self.output_root / "pipeline"

    @property
    def metadata_path(self) -> Path:
        """The sqlite ML Metadata store recording every artifact and execution."""
        return self.output_root / "metadata.sqlite"

    @property
    def serving_root(self) -> Path:
        """Pushed models, in TF Serving's `<model_name>/<version>/` layout."""
        return self.output_root / "serving"

    @property
    def logs_dir(self) -> Path:
        """Full TensorFlow/Beam logs of each `tfxp run`, kept out of the terminal."""
        return self.output_root / "logs"


@dataclasses.dataclass(frozen=True)
class Training:
    """How long to train and tune, and what a model must reach to be pushed."""

    train_steps: int = 200
    eval_steps: int = 20
    tuner_enabled: bool = True
    tuner_trials: int = 3
    tuner_steps: int = 60
    min_accuracy: float = 0.8
    max_accuracy_drop: float = 0.02  # a regression beyond this against the baseline blocks the push


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything `create_pipeline` needs, grouped into a few typed records."""

    pipeline_name: str = "penguins"
    model_name: str = "penguins"
    paths: Paths = Paths()
    training: Training = Training()
    beam_args: tuple[str, ...] = DEFAULT_BEAM_ARGS
    enable_cache: bool = True

    def validate(self) -> "Settings":
        """Checks what a user can get wrong, raising ConfigError with a fix, and returns self."""
        data = self.paths.data_root
        if not data.is_dir():
            raise ConfigError(f"data folder {data} does not exist (give a folder of CSV files with --data)")
        if not any(data.glob("*.csv")):
            raise ConfigError(f"data folder {data} holds no *.csv file")
        schema = self.paths.schema_file
        if schema is not None and not schema.is_file():
            raise ConfigError(f"schema file {schema} does not exist (use --infer-schema to let SchemaGen infer one)")
        _check_writable(self.paths.output_root)
        t = self.training
        for name in ("train_steps", "eval_steps", "tuner_trials", "tuner_steps"):
            if getattr(t, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(t, name)}")
        if not 0.0 <= t.min_accuracy <= 1.0:
            raise ConfigError(f"min_accuracy must be between 0 and 1, got {t.min_accuracy}")
        if t.max_accuracy_drop < 0:
            raise ConfigError(f"max_accuracy_drop must not be negative, got {t.max_accuracy_drop}")
        return self


def _check_writable(folder: Path) -> None:
    """Creates `folder` if needed and proves a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"output folder {folder} is not writable: {error.strerror or error}") from None
