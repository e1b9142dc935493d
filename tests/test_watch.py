"""`tfxp watch`: which span runs and when, driven with a plain callable in place of the pipeline; and the real
command on the penguins project, stopped by SIGTERM after a run and during one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline import watch
from pipeline.config import CONFIG_FILE
from tests.conftest import run_tfxp, stop
from tests.datasets import PROJECT_ROOT

INTERVAL = 0.2  # seconds between looks in the fast tests


class Runs:
    """A `run_span` that records each run's span and its start and end; a test may make it fail or block."""

    def __init__(self, codes: dict[int, int] | None = None, seconds: float = 0.0, raises: set[int] = frozenset()):
        self.codes = codes or {}
        self.seconds = seconds
        self.raises = raises
        self.started: list[int] = []
        self.log: list[tuple[int, float, float]] = []  # span, start, end of each finished run

    def __call__(self, span: int) -> int:
        self.started.append(span)
        started = time.monotonic()
        time.sleep(self.seconds)
        self.log.append((span, started, time.monotonic()))
        if span in self.raises:
            raise OSError("no such interpreter")
        return self.codes.get(span, 0)

    @property
    def spans(self) -> list[int]:
        return [span for span, _, _ in self.log]


class Watching:
    """A Watcher on `data` looking every INTERVAL in a thread, with what it said."""

    def __init__(self, data: Path, runs: Runs):
        self.lines: list[str] = []
        self.watcher = watch.Watcher(data, "*.csv", INTERVAL, runs, self.lines.append, lambda code: f"meaning {code}")
        self.thread = threading.Thread(target=self.watcher.watch, daemon=True)

    def __enter__(self) -> Watching:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.watcher.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def write_span(data: Path, span: int, rows: int = 3, marker: bool = True) -> Path:
    folder = data / f"span-{span}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0.csv").write_text("a,b\n" + "1,2\n" * rows)
    if marker:
        (folder / watch.MARKER).write_text("")
    return folder


def until(condition, timeout: float = 5.0) -> None:
    """Waits for `condition()` to hold, failing the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_newest_complete_span_runs_at_start_and_a_span_written_later_is_picked_up(tmp_path):
    write_span(tmp_path, 1)
    write_span(tmp_path, 2)
    runs = Runs()
    with Watching(tmp_path, runs) as w:
        until(lambda: runs.spans == [2])
        write_span(tmp_path, 3)
        until(lambda: runs.spans == [2, 3])
        time.sleep(3 * INTERVAL)
    assert runs.spans == [2, 3]  # each once: an unchanged span is not run again
    assert "span 3 is complete (_SUCCESS file): running it" in w.lines
    assert any(line.startswith("span 3: meaning 0 (exit 0, ") for line in w.lines)


def test_a_growing_span_without_marker_waits_until_unchanged_for_one_interval(tmp_path):
    folder = write_span(tmp_path, 1, marker=False)
    runs = Runs()
    with Watching(tmp_path, runs) as w:
        for rows in range(4, 12):  # a producer still appending, at about two looks per interval
            time.sleep(INTERVAL / 2)
            with open(folder / "part-0.csv", "a") as file:
                file.write("1,2\n" * rows)
        assert runs.spans == []
        grown = time.monotonic()
        until(lambda: runs.spans == [1])
    assert runs.log[0][1] - grown >= INTERVAL
    assert (
        w.lines.count(
            "span 1: seen, not complete yet (no _SUCCESS file; waiting until its files are unchanged for 0.2 s)"
        )
        == 1
    )
    assert "span 1 is complete (unchanged for 0.2 s): running it" in w.lines


def test_a_span_with_marker_runs_at_the_next_look_although_its_files_just_changed(tmp_path):
    runs = Runs()
    with Watching(tmp_path, runs):
        time.sleep(INTERVAL)
        written = time.monotonic()
        write_span(tmp_path, 1)
        until(lambda: runs.spans == [1])
    assert runs.log[0][1] - written < 2 * INTERVAL + 0.1  # not one more interval of waiting


def test_a_folder_without_data_files_is_not_complete_even_with_marker(tmp_path):
    folder = tmp_path / "span-1"
    folder.mkdir()
    (folder / watch.MARKER).write_text("")
    runs = Runs()
    with Watching(tmp_path, runs) as w:
        time.sleep(3 * INTERVAL)
        assert runs.spans == []
        write_span(tmp_path, 1)
        until(lambda: runs.spans == [1])
    assert "span 1: seen, no *.csv files in it yet" in w.lines


def test_no_second_run_starts_while_one_is_in_progress_and_a_span_that_arrived_meanwhile_runs_after(tmp_path):
    write_span(tmp_path, 1)
    runs = Runs(seconds=6 * INTERVAL)
    with Watching(tmp_path, runs):
        until(lambda: runs.started == [1])
        write_span(tmp_path, 2)  # while the run of span 1 is in progress
        until(lambda: runs.spans == [1, 2], timeout=10)
    (_, _, first_end), (_, second_start, _) = runs.log
    assert second_start >= first_end


def test_a_failed_run_is_reported_not_retried_until_its_files_change_and_the_next_span_still_runs(tmp_path):
    write_span(tmp_path, 1)
    runs = Runs(codes={1: 3})
    with Watching(tmp_path, runs) as w:
        until(lambda: runs.spans == [1])
        time.sleep(3 * INTERVAL)
        assert runs.spans == [1]
        write_span(tmp_path, 1, rows=5)  # the producer fixed the span
        until(lambda: runs.spans == [1, 1])
        write_span(tmp_path, 2)
        until(lambda: runs.spans == [1, 1, 2])
    assert any(line.startswith("span 1: meaning 3 (exit 3, ") for line in w.lines)


def test_a_run_that_raises_is_reported_and_the_watcher_keeps_going(tmp_path):
    write_span(tmp_path, 1)
    runs = Runs(raises={1})
    with Watching(tmp_path, runs) as w:
        until(lambda: runs.spans == [1])
        write_span(tmp_path, 2)
        until(lambda: runs.spans == [1, 2])
        time.sleep(3 * INTERVAL)
    assert runs.spans == [1, 2]
    assert any(
        line.startswith("span 1: the run could not be started or watched: OSError: no such interpreter (")
        for line in w.lines
    )


def test_stop_ends_the_wait_between_looks_at_once(tmp_path):
    watcher = watch.Watcher(tmp_path, "*.csv", 3600, Runs(), lambda line: None)
    thread = threading.Thread(target=watcher.watch)
    thread.start()
    time.sleep(0.2)
    stopped = time.monotonic()
    watcher.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - stopped < 4 * watch.STOP_STEP


def test_once_waits_one_interval_for_a_span_without_marker_then_runs_it(tmp_path):
    write_span(tmp_path, 1, marker=False)
    runs = Runs(codes={1: 5})
    watcher = watch.Watcher(tmp_path, "*.csv", INTERVAL, runs, lambda line: None)
    started = time.monotonic()
    run = watcher.once()
    assert (run.span, run.code) == (1, 5)
    assert time.monotonic() - started >= INTERVAL


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("90", 90), ("0.5s", 0.5), (" 2m ", 120)]
)
def test_durations(text, seconds):
    assert watch.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5s", "5 minutes", "1d", "m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="is not a duration greater than 0"):
        watch.parse_duration(text)


def test_a_bad_interval_is_a_clear_click_error(project):
    result = run_tfxp("watch", "--config", str(project / CONFIG_FILE), "--interval", "5 minutes")
    assert result.code == 2
    assert "Invalid value for '--interval': '5 minutes' is not a duration greater than 0" in result.stderr


def test_a_second_watcher_on_the_same_output_folder_is_refused(tmp_path):
    lock_file = tmp_path / watch.LOCK_FILE
    with watch.lock(tmp_path):
        assert lock_file.read_text() == f"{os.getpid()}\n"  # the holder's pid, for the refusal to name
        with pytest.raises(watch.AlreadyWatching, match=rf"pid {os.getpid()}\) is watching for {tmp_path}"):
            with watch.lock(tmp_path):
                raise AssertionError("a second watcher got the lock")
    with watch.lock(tmp_path):  # released with the first
        assert lock_file.read_text() == f"{os.getpid()}\n"


# ------------------------------------------------------------------ the real command, on the penguins project


def _span_project(project: Path) -> Path:
    """The penguins project with its table as a complete span-1/, training with one Tuner trial."""
    span = project / "data" / "span-1"
    span.mkdir()
    shutil.move(project / "data" / "penguins.csv", span / "penguins.csv")
    (span / watch.MARKER).write_text("")
    project_file = project / CONFIG_FILE
    text = project_file.read_text()
    assert "tuner_trials = 3" in text
    project_file.write_text(text.replace("tuner_trials = 3", "tuner_trials = 1"))
    return project_file


def _start_watch(project_file: Path, output: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "watch", "--config", str(project_file), "--output", str(output)]
            + ["--interval", "1s"],
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "120"},
        )


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def _runs_of(output: Path) -> list[psutil.Process]:
    """Live processes whose command line names `output`: the watcher's `tfxp run` children."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if process.info["status"] != psutil.STATUS_ZOMBIE and " run " in cmdline and str(output) in cmdline:
            found.append(process)
    return found


@pytest.mark.pipeline
def test_watch_runs_a_complete_span_and_sigterm_stops_it_cleanly(project, tmp_path):
    output, log = tmp_path / "outputs", tmp_path / "watch.log"
    tfxp = _start_watch(_span_project(project), output, log)
    try:
        _wait_for(log, "span 1: ", tfxp, timeout=900)  # the run's outcome line
        text = log.read_text()
        assert "span 1 is complete (_SUCCESS file): running it" in text
        assert "Pushed to " in text
        assert "span 1: ok, blessed and pushed (exit 0, " in text
        assert [p.name for p in (output / "serving" / "penguins").iterdir() if p.name.isdigit()]
        assert not _runs_of(output)

        os.kill(tfxp.pid, signal.SIGTERM)
        assert tfxp.wait(timeout=5) == 0
        assert log.read_text().rstrip().endswith("Stopped watching.")
    finally:
        stop(tfxp)


@pytest.mark.pipeline
def test_sigterm_during_a_run_interrupts_it_and_the_watcher_exits_cleanly(project, tmp_path):
    output, log = tmp_path / "outputs", tmp_path / "watch.log"
    tfxp = _start_watch(_span_project(project), output, log)
    try:
        _wait_for(log, "Running pipeline", tfxp, timeout=300)  # the child is inside the TFX run
        children = _runs_of(output)
        assert len(children) == 1

        os.kill(tfxp.pid, signal.SIGTERM)
        assert tfxp.wait(timeout=watch.ChildRuns.STOP_GRACE + 30) == 0
        text = log.read_text()
        assert "span 1: interrupted (exit 130, " in text and ", after the stop request" in text
        assert text.rstrip().endswith("Stopped watching.")
        assert not children[0].is_running() or children[0].status() == psutil.STATUS_ZOMBIE
        assert not _runs_of(output)
        assert not (output / "serving").exists()
    finally:
        stop(tfxp)
