"""Watching the data folder for `tfxp watch`: when a span is complete, and which span to run next.

It knows nothing of click or TFX. The Watcher is given a `run_span(span) -> exit code` callable, so tests drive
it with a plain function; the command line gives it ChildRuns, which runs `tfxp run --span N` as a child process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from pipeline import run_lock
from pipeline.rerun import data_signature
from pipeline.settings import find_spans

MARKER = "_SUCCESS"  # written last by the producer (Spark and Hadoop jobs do): the span is complete at once
LOCK_FILE = "watch.lock"  # in the output folder: one watcher per output folder
STOP_STEP = 0.1  # seconds between looks at the stop flag while waiting: a stop request is answered this fast
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}

Signature = list[tuple[str, int, int]]


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `5m`, `1h` or a bare number of seconds; raises ValueError for anything else."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smh]?)", text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a duration greater than 0, such as 30s, 5m, 1h or a number of seconds")
    return float(match.group(1)) * UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """`5 s`, `0.8 s`, `42 s`, `4 m 12 s` or `1 h 3 m`: as precise as a person reading a log needs."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s" if whole % 60 else f"{whole // 60} m"
    return f"{whole // 3600} h {whole % 3600 // 60} m"


@dataclasses.dataclass(frozen=True)
class Run:
    """One run this watcher started: its span, exit code (None if `run_span` raised) and duration."""

    span: int
    code: int | None
    seconds: float


@dataclasses.dataclass
class _Seen:
    """A span's files as last seen, and since when they have looked like that."""

    signature: Signature
    since: float


class Watcher:
    """Runs the newest complete span whenever its files differ from those this watcher last ran it on.

    A span is complete when it has a `_SUCCESS` file, or when its files (names, sizes, modification
    times) have stayed the same for one interval. Runs are sequential, so two never overlap; a failed
    run is reported and its span is not retried until its files change. A run that exits with one of the
    `busy` codes did not start (another process held the output folder), so its span is tried again at the
    next look.
    """

    def __init__(
        self,
        data_root: Path,
        pattern: str,
        interval: float,
        run_span: Callable[[int], int],
        say: Callable[[str], None] = print,
        describe: Callable[[int], str] = lambda code: "ok" if code == 0 else "failed",
        busy: Collection[int] = (),
    ):
        self.data_root = data_root
        self.pattern = pattern
        self.interval = interval
        self.run_span = run_span
        self.say = say
        self.describe = describe
        self.busy = frozenset(busy)
        self.stopping = False
        self._seen: dict[int, _Seen] = {}
        self._ran: dict[int, Signature] = {}  # the files each span had when this watcher last ran it
        self._announced: set[int] = set()  # spans already reported as not complete yet
        self._waiting = False  # whether the newest span is not complete yet

    def stop(self) -> None:
        """Asks the watcher to stop: at once between runs, after the run in progress otherwise."""
        self.stopping = True

    def watch(self) -> None:
        """Looks every interval until `stop()`; the next look is one interval after the last one (or run) ended."""
        while not self.stopping:
            try:
                self.poll()
            except OSError as error:  # a data folder on a network share can fail for a moment
                self.say(f"could not read {self.data_root}: {error}; looking again in {format_duration(self.interval)}")
            self._sleep(self.interval)

    def once(self) -> Run | None:
        """A single check, for cron: when the newest span has no marker, it looks again one interval later."""
        self.newest_complete()
        if self._waiting:
            self._sleep(self.interval)
        return self.poll()

    def poll(self) -> Run | None:
        """Runs the newest complete span if its files changed since this watcher last ran it."""
        found = self.newest_complete()
        if found is None or self.stopping:
            return None
        span, signature, reason = found
        if self._ran.get(span) == signature:
            return None
        self._ran[span] = signature  # before running: a failed span waits for new files, not the next look
        self.say(f"span {span} is complete ({reason}): running it")
        started = time.monotonic()
        try:
            code = self.run_span(span)
        except Exception as error:  # noqa: BLE001  (the next span must still be picked up)
            code, outcome = None, f"the run could not be started or watched: {type(error).__name__}: {error} ("
        else:
            outcome = f"{self.describe(code)} (exit {code}, "
        seconds = time.monotonic() - started
        tail = ", after the stop request" if self.stopping else ""
        if code in self.busy:
            del self._ran[span]  # it never ran, so this watcher has not run these files yet
            tail += "; trying again at the next look"
        self.say(f"span {span}: {outcome}{format_duration(seconds)}){tail}")
        return Run(span, code, seconds)

    def newest_complete(self) -> tuple[int, Signature, str] | None:
        """Looks at the span folders, newest first; returns the newest complete span, its files and why it counts
        as complete. The spans newer than it are not complete yet; the newest of them is announced once."""
        now = time.monotonic()
        spans = find_spans(self.data_root) if self.data_root.is_dir() else ()
        self._waiting = False
        for span in reversed(spans):
            folder = self.data_root / f"span-{span}"
            signature = data_signature(folder)
            seen = self._seen.get(span)
            if seen is None or seen.signature != signature:
                seen = self._seen[span] = _Seen(signature, now)
            has_data = any(p.is_file() for p in folder.glob(self.pattern))
            if has_data and (folder / MARKER).is_file():
                return span, signature, f"{MARKER} file"
            if has_data and now - seen.since >= self.interval:
                return span, signature, f"unchanged for {format_duration(self.interval)}"
            if span == spans[-1]:
                self._waiting = True
                self._announce(span, has_data)
        return None

    def _announce(self, span: int, has_data: bool) -> None:
        """Says once that the newest span is there but not complete yet, and what it waits for."""
        if span in self._announced:
            return
        self._announced.add(span)
        if has_data:
            self.say(
                f"span {span}: seen, not complete yet (no {MARKER} file; waiting until its files are unchanged "
                f"for {format_duration(self.interval)})"
            )
        else:
            self.say(f"span {span}: seen, no {self.pattern} files in it yet")

    def _sleep(self, seconds: float) -> None:
        """Waits `seconds`, in small steps so that a stop request ends the wait within STOP_STEP."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(STOP_STEP, left))


class AlreadyWatching(RuntimeError):
    """Another `tfxp watch` holds the output folder's lock."""


@contextlib.contextmanager
def lock(output_root: Path) -> Iterator[None]:
    """Holds the output folder's watch lock, or raises AlreadyWatching.

    An advisory flock (run_lock.exclusive), so the kernel releases it when the process ends however it ends.
    It keeps a second watcher off the output folder; runs take the run lock themselves.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_lock.exclusive(output_root / LOCK_FILE, f"{os.getpid()}\n"))
        except run_lock.Locked as locked:
            holder = locked.note.strip() or "unknown"
            raise AlreadyWatching(f"another tfxp watch (pid {holder}) is watching for {output_root}") from None
        yield


class ChildRuns:
    """Runs `tfxp run --span N` in a child process, so a crash or leak of one run cannot take the watcher down.

    A stop request reaches the run as Ctrl-C: it stops at its next safe point, and TFX keeps the finished
    components cached. One that has not stopped STOP_GRACE seconds later is killed.
    """

    STOP_GRACE = 60.0  # under systemd's default TimeoutStopSec (90 s), so the watcher still exits on its own

    def __init__(self, run_args: list[str], say: Callable[[str], None]):
        self.run_args = run_args
        self.say = say
        self._process: subprocess.Popen | None = None
        self._interrupted_at: float | None = None

    def __call__(self, span: int) -> int:
        # Its own process group: a Ctrl-C in the terminal reaches the watcher only, which passes it on once.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", *self.run_args, "--span", str(span)],
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        try:
            while True:
                try:
                    return self._process.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    if self._interrupted_at and time.monotonic() - self._interrupted_at > self.STOP_GRACE:
                        self.say(
                            f"the run of span {span} did not stop {self.STOP_GRACE:.0f} s after Ctrl-C; killing it"
                        )
                        self._process.kill()
        finally:
            self._process = None

    def interrupt(self) -> None:
        """Passes a stop request on to the run in progress, if any, as Ctrl-C."""
        process = self._process
        if process is not None and process.returncode is None:
            self._interrupted_at = self._interrupted_at or time.monotonic()
            process.send_signal(signal.SIGINT)
