"""Runs the pipeline under LocalDagRunner, showing component progress and keeping the noise in a log file."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from pipeline import faults, file_modes, redaction
from pipeline.settings import Settings

# The launcher's own log lines (tfx/orchestration/local/local_dag_runner.py, portable/launcher.py).
_STARTED = "Component %s is running."
_FINISHED = "Component %s is finished."
_CACHED = "A cached execution %d is used."


@dataclasses.dataclass
class ComponentTiming:
    """How one component went in this run, as the user saw it."""

    node_id: str
    seconds: float = 0.0
    cached: bool = False
    finished: bool = False


class RunFailed(RuntimeError):
    """A component failed; carries which one, why, and where the full log is."""

    def __init__(self, node_id: str | None, cause: BaseException, log_path: Path | None):
        self.node_id, self.cause, self.log_path = node_id, cause, log_path
        super().__init__(f"{node_id or 'pipeline'} failed: {cause}")


class _ProgressHandler(logging.Handler):
    """Turns the launcher's log lines into one progress line per component, with its duration."""

    def __init__(self, console: Console):
        super().__init__(logging.INFO)
        self.console = console
        self.timings: list[ComponentTiming] = []
        self._started_at = 0.0
        self._status = None

    @property
    def current(self) -> ComponentTiming | None:
        """The component running now, if any."""
        return self.timings[-1] if self.timings and not self.timings[-1].finished else None

    def emit(self, record: logging.LogRecord) -> None:
        """Starts a spinner when a component starts; prints its line when it finishes."""
        if record.msg == _STARTED:
            self.timings.append(ComponentTiming(record.args[0]))
            self._started_at = time.monotonic()
            self._status = self.console.status(f"[bold]{record.args[0]}[/] running…")
            self._status.start()
        elif record.msg == _CACHED and self.current:
            self.current.cached = True
        elif record.msg == _FINISHED and self.current:
            self._stop_status()
            timing = self.current
            timing.seconds, timing.finished = time.monotonic() - self._started_at, True
            how = "[dim]cached[/]" if timing.cached else "done"
            self.console.print(f"  [green]✓[/] {timing.node_id:<24} {timing.seconds:6.1f} s  {how}")

    def fail(self) -> str | None:
        """Marks the running component failed and returns its id."""
        self._stop_status()
        if not self.current:
            return None
        self.console.print(
            f"  [red]✗[/] {self.current.node_id:<24} {time.monotonic() - self._started_at:6.1f} s  failed"
        )
        return self.current.node_id

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


@contextlib.contextmanager
def terminal(log_path: Path | None) -> Iterator[tuple[Console, Console]]:
    """Consoles for the user's stdout and stderr; with `log_path`, all other output goes to that file.

    File descriptors 1 and 2 are redirected, so TensorFlow's C++ logs and Beam workers land in
    the log too, not just Python's.
    """
    if log_path is None:
        yield Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False, soft_wrap=True)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    out, err = os.fdopen(os.dup(saved[0]), "w"), os.fdopen(os.dup(saved[1]), "w")
    with open(log_path, "ab") as log, out, err:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield Console(file=out, highlight=False, soft_wrap=True), Console(file=err, highlight=False, soft_wrap=True)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def new_log_path(settings: Settings) -> Path:
    """A fresh, timestamped log file for one run."""
    return settings.paths.logs_dir / f"run-{datetime.datetime.now():%Y%m%d-%H%M%S}.log"


def stage_schema(settings: Settings) -> Path:
    """Writes the schema ImportSchemaGen reads to its content-named path, whole or not at all."""
    path = settings.imported_schema_file
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        file_modes.write_whole(path, settings.imported_schema_text)
    return path


def run_pipeline(settings: Settings, console: Console, log_path: Path | None) -> list[ComponentTiming]:
    """Runs the DAG once; returns per-component timings, or raises RunFailed."""
    from absl import logging as absl_logging
    from tfx import v1 as tfx

    from pipeline.wiring import create_pipeline

    redaction.install(settings.beam_args)  # TFX logs every Beam argument; Beam logs the ones it does not know
    absl_logging.set_verbosity(absl_logging.INFO)
    progress = _ProgressHandler(console)
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(progress)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(settings.paths.metadata_path))
    stage_schema(settings)
    try:
        with faults.in_components():
            tfx.orchestration.LocalDagRunner().run(create_pipeline(settings, connection))
    except Exception as error:  # any component failure: logged in full, reported in one line
        logging.getLogger(__name__).exception("Pipeline run failed")
        raise RunFailed(progress.fail(), error, log_path) from error
    except KeyboardInterrupt:
        progress.fail()
        raise
    finally:
        absl_logger.removeHandler(progress)
    return progress.timings
