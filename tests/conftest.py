"""Shared fixtures: the `tfxp` command run as a user runs it, and a pipeline run twice in a temp folder."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
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
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Terminates a process a test started and waits for it; kills it if it ignores the request."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@dataclasses.dataclass
class TwoRuns:
    """A cold run and an unchanged rerun of the default pipeline into one output folder."""

    output: Path
    first: CliResult
    second: CliResult


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory) -> TwoRuns:
    """Runs the whole pipeline on the default data twice; the second run should be all cache."""
    output = tmp_path_factory.mktemp("e2e") / "outputs"
    first = run_tfxp("run", "--output", str(output), *FAST_RUN_ARGS)
    assert first.code == 0, f"first run failed:\n{first.stdout}\n{first.stderr}"
    second = run_tfxp("run", "--output", str(output), *FAST_RUN_ARGS)
    assert second.code == 0, f"second run failed:\n{second.stdout}\n{second.stderr}"
    return TwoRuns(output, first, second)


def pytest_configure(config):
    """Hides the stack's deprecation chatter (Google client libraries, Beam) from test output."""
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::PendingDeprecationWarning")
