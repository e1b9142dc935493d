"""Shared fixtures: the `tfxp` command run as a user runs it, a fresh copy of the penguins project, and
pipeline runs in temporary folders. Tests marked `pipeline` start a TFX pipeline; `make test-fast` skips them."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)
from pipeline.config import CONFIG_FILE
from tests.datasets import PROJECT_ROOT

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Small but real. Most tests leave the Tuner out (its trial is about 7 s of every cold run) and train the default
# hyperparameters; tests of the whole DAG run it with one trial. The Trainer keeps its default 200 steps, which
# every corner of the search space needs to classify penguins well.
FAST_RUN_ARGS = ("--no-tuner",)
FULL_RUN_ARGS = ("--tuner-trials", "1")


def documented_cluster_section() -> str:
    """The example [cluster] section of the README's "Running on a cluster", as a user would copy it."""
    section = (
        (PROJECT_ROOT / "README.md")
        .read_text(encoding="utf-8")
        .split("\n## Running on a cluster\n", 1)[1]
        .split("\n## ", 1)[0]
    )
    block = re.search(r"```toml\n(\[cluster\]\n.*?)```", section, re.S)
    assert block, "the README's Running on a cluster section has no ```toml [cluster] example"
    return block.group(1)


@dataclasses.dataclass
class CliResult:
    """What a user saw from one `tfxp` invocation."""

    code: int
    stdout: str
    stderr: str


def run_tfxp(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> CliResult:
    """Runs `python -m pipeline ARGS` in a fresh process, as the console script would; `env` adds variables."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
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


def cold_run(output: Path, *args: str, run_args: tuple[str, ...] = FAST_RUN_ARGS) -> CliResult:
    """One `tfxp run` of the default project into `output`, which must succeed."""
    result = run_tfxp("run", "--output", str(output), *run_args, *args)
    assert result.code == 0, f"run failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory, worker_id) -> TwoRuns:
    """The whole pipeline (Tuner included) on the default data, run twice; shared, so tests only read it.

    Made once per session: under xdist, the first worker to need it makes it in the session's common folder
    while any other waits, and the rest read what it recorded.
    """
    if worker_id == "master":  # no xdist: this process is the session
        output = tmp_path_factory.mktemp("e2e") / "outputs"
        return TwoRuns(output, cold_run(output, run_args=FULL_RUN_ARGS), cold_run(output, run_args=FULL_RUN_ARGS))
    common = tmp_path_factory.getbasetemp().parent  # pytest-N/, which holds each worker's popen-gwK/
    output, record = common / "e2e" / "outputs", common / "e2e.json"
    with open(common / "e2e.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the worker dies
        if not record.exists():
            runs = [cold_run(output, run_args=FULL_RUN_ARGS) for _ in range(2)]
            record.write_text(json.dumps([dataclasses.asdict(r) for r in runs]))
    first, second = (CliResult(**r) for r in json.loads(record.read_text()))
    return TwoRuns(output, first, second)


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """The output folder of one finished run of the default pipeline, for a test to continue from."""
    output = tmp_path / "outputs"
    cold_run(output)
    return output


def pytest_collection_modifyitems(session, config, items):
    """Files that start pipelines first, quick files last: with one file per worker at a time (`make test`),
    the quick ones then fill the end instead of a long file starting when the others are nearly done."""
    heavy = {item.path for item in items if item.get_closest_marker("pipeline")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: the order within each group is kept


def pytest_sessionstart(session):
    """On Linux, adopts the processes the tests start once their parent dies, so the check at the end sees them.

    A server whose parent dies (the leak of issue #18: TensorBoard outliving the `tfxp` a test stopped)
    would otherwise be re-parented to init, out of reach of `children()`. Best effort: elsewhere, or if
    the kernel refuses, orphans go unseen.
    """
    if sys.platform == "linux":
        import ctypes

        pr_set_child_subreaper = 36  # from <linux/prctl.h>
        ctypes.CDLL(None).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


# Helpers multiprocessing starts for the pytest process itself when something in it asks for them (none
# does today); they exit with it, so they are no leak. Matched on the code they run with `python -c`.
INTERPRETER_HELPERS = (
    "from multiprocessing.resource_tracker import main",
    "from multiprocessing.forkserver import main",
)


def pytest_sessionfinish(session, exitstatus):
    """Fails the run if a process the tests started is still running: a leaked server keeps its port for hours.

    Reports each survivor's pid and command line, then kills it so it does not linger either.
    """
    if session.config.pluginmanager.has_plugin("dsession"):  # xdist's controller: its workers check their own
        return
    survivors = _leftover_processes(grace=3.0)
    if not survivors:
        return
    lines = [f"{len(survivors)} process(es) started by the tests still running at the end of the session:"]
    for process in survivors:
        try:
            lines.append(f"  pid {process.pid}: {' '.join(process.cmdline())}")
            process.kill()
        except psutil.NoSuchProcess:
            lines.append(f"  pid {process.pid}: exited while being reported")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")  # the progress line is still open
        reporter.write_sep("=", "processes left behind", red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines), file=sys.stderr)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _leftover_processes(grace: float) -> list[psutil.Process]:
    """Descendants of this process still running after up to `grace` seconds, the interpreter's own helpers aside."""
    me = psutil.Process()
    deadline = time.monotonic() + grace
    while True:  # polls: a process a test just stopped may take a moment to exit
        survivors = []
        for process in me.children(recursive=True):
            try:
                if process.status() == psutil.STATUS_ZOMBIE:  # exited, only not reaped yet
                    continue
                cmdline = process.cmdline()
                if process.ppid() == me.pid and cmdline[-1:] and cmdline[-1].startswith(INTERPRETER_HELPERS):
                    continue
            except psutil.NoSuchProcess:
                continue
            survivors.append(process)
        if not survivors or time.monotonic() >= deadline:
            return survivors
        time.sleep(0.2)
