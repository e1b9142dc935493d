"""Shared fixtures: the `tfxp` command run as a user runs it, a fresh copy of the penguins project, and
pipeline runs in temporary folders. Tests marked `pipeline` start a TFX pipeline; `make test-fast` skips them."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)
from pipeline.config import CONFIG_FILE
from tests.datasets import PROJECT_ROOT

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small but real: the Tuner runs one trial; the Trainer keeps its default 200 steps, which every
# corner of the search space needs to classify penguins well.
FAST_RUN_ARGS = ("--tuner-trials", "1")


@dataclasses.dataclass
class CliResult:
    """What a user saw from one `tfxp` invocation."""

    code: int
    stdout: str
    stderr: str


def run_tfxp(*args: str, timeout: float = 900) -> CliResult:
    """Runs `python -m pipeline ARGS` in a fresh process, as the console script would."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh copy of the penguins project (project file, schema, data) that a test may change."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(PROJECT_ROOT / CONFIG_FILE, folder / CONFIG_FILE)
    for part in ("schema", "data"):
        shutil.copytree(PROJECT_ROOT / part, folder / part)
    return folder


@dataclasses.dataclass
class TwoRuns:
    """A cold run and an unchanged rerun of the default pipeline into one output folder."""

    output: Path
    first: CliResult
    second: CliResult


def cold_run(output: Path, *args: str) -> CliResult:
    """One `tfxp run` of the default project into `output`, which must succeed."""
    result = run_tfxp("run", "--output", str(output), *FAST_RUN_ARGS, *args)
    assert result.code == 0, f"run failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory) -> TwoRuns:
    """The whole pipeline on the default data, run twice; shared, so tests only read it."""
    output = tmp_path_factory.mktemp("e2e") / "outputs"
    return TwoRuns(output, cold_run(output), cold_run(output))


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """The output folder of one finished run of the default pipeline, for a test to continue from."""
    output = tmp_path / "outputs"
    cold_run(output)
    return output
