"""How the benchmark times things: whole processes by wall clock, components from ML Metadata."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from pipeline import lineage, rerun

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


@dataclasses.dataclass
class Timed:
    """One process: its wall time, exit code and output."""

    seconds: float
    code: int
    stdout: str
    stderr: str


def run_process(args: list[str], cwd: Path | None = None, timeout: float = 1800) -> Timed:
    """Runs a command (from the project folder by default) and times it from start to exit."""
    started = time.perf_counter()
    proc = subprocess.run(
        args, cwd=cwd or PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **QUIET}
    )
    return Timed(time.perf_counter() - started, proc.returncode, proc.stdout, proc.stderr)


def tfxp(*args: str, cwd: Path | None = None) -> Timed:
    """`tfxp ARGS` as a user runs it, failing loudly when the run fails; `cwd` first on the import path."""
    timed = run_process([sys.executable, "-m", "pipeline", *args], cwd)
    if timed.code not in (0, 3):  # 3: ran, but not blessed
        raise RuntimeError(
            f"tfxp {' '.join(args)} exited {timed.code}:\n{timed.stdout[-3000:]}\n{timed.stderr[-3000:]}"
        )
    return timed


def python_json(module: str, *args: str) -> tuple[float, dict]:
    """Runs `python -m MODULE ARGS`, which prints one JSON line last; returns its wall time and that JSON."""
    timed = run_process([sys.executable, "-m", module, *args])
    if timed.code != 0:
        raise RuntimeError(f"{module} {' '.join(args)} exited {timed.code}:\n{timed.stderr[-3000:]}")
    return timed.seconds, json.loads(timed.stdout.strip().splitlines()[-1])


@dataclasses.dataclass
class ComponentRun:
    """One component's execution in a run, as MLMD recorded it."""

    seconds: float
    state: str  # COMPLETE, CACHED, ...


def components(output: Path) -> dict[str, ComponentRun]:
    """Each component of the newest run in `output`, with its execution time from MLMD."""
    store = lineage.open_store(output)
    executions = lineage.latest_run_executions(store)
    return {
        node: ComponentRun(
            (e.execution.last_update_time_since_epoch - e.execution.create_time_since_epoch) / 1000, e.state
        )
        for node, e in sorted(executions.items(), key=lambda kv: kv[1].execution.create_time_since_epoch)
    }


def serving_versions(output: Path, model_name: str = "penguins") -> list[str]:
    """Model versions in the serving folder of a `tfxp run --output` folder."""
    return rerun.serving_versions(output / "serving" / model_name)


def machine() -> dict:
    """What the figures were measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "tfx": version("tfx"),
        "tensorflow": version("tensorflow"),
        "apache_beam": version("apache-beam"),
    }
