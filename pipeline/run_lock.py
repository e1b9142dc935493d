"""One writer per output folder: the run lock, and the flock mechanics every lock file in the output folder uses.

Every command that writes the output folder's ML Metadata store or serving folder (`tfxp run`, `approve`,
`reject`, `rollback`, `monitor`) holds `<output>/run.lock` until it exits. It is an advisory flock: the
kernel grants it to one process however many ask at the same moment, and releases it however the holder
ends, SIGKILL included. The holder writes who it is into the file, so a refused command can name the run in
progress, and empties it when it ends normally: a file that still names a process when the lock is free was
left by a run that was killed. No TensorFlow here: the command line asks before it loads anything heavy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

LOCK_FILE = "run.lock"
# A refused process may read the file in the instant between the holder locking it and writing its details
# into it; the holder writes them at once, so a short wait always finds them.
READ_PATIENCE = 2.0  # seconds
READ_STEP = 0.02
MAX_NOTE = 64 * 1024  # bytes read from a lock file: far more than any holder writes


class Locked(RuntimeError):
    """Another process holds a lock file; `note` is what it wrote into it (empty if it has not yet)."""

    def __init__(self, path: Path, note: str):
        super().__init__(f"{path} is locked by another process")
        self.path = path
        self.note = note


def _read(fd: int) -> str:
    return os.pread(fd, MAX_NOTE, 0).decode("utf-8", errors="replace")


@contextlib.contextmanager
def exclusive(path: Path, note: str) -> Iterator[str]:
    """Holds an exclusive flock on `path` for the block, with `note` written in the file; yields what the file
    held before, which is empty unless the previous holder ended without leaving the block (killed).

    Raises Locked at once if another process holds it. The file is emptied at the end, never removed: a process
    that had opened the removed file would lock it while the next one locked a new file of the same name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # the umask gives its mode
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(path, _read(fd)) from None
        left = _read(fd)
        data = note.encode("utf-8")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        try:
            yield left
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _held(path: Path) -> str | None:
    """The note in `path` if another process holds its flock now, else None; takes nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            # A shared lock conflicts with the holder's exclusive one, not with another look like this one.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        return None
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class Holder:
    """The process holding (or, killed, last holding) a run lock, as it wrote itself into the lock file."""

    pid: int
    process_start: float  # psutil's create_time: with the pid, tells this process from a later one given its pid
    command: str
    started: str  # when it took the lock, ISO 8601 to the second

    @classmethod
    def this_process(cls, command: str) -> Holder:
        """The calling process, running `command`, taking the lock now."""
        return cls(
            os.getpid(),
            psutil.Process().create_time(),
            command,
            datetime.datetime.now().isoformat(sep=" ", timespec="seconds"),
        )

    @classmethod
    def parse(cls, note: str) -> Holder | None:
        """The holder a lock file names, or None when it is empty or not one of ours (or caught half-written)."""
        try:
            holder = cls(**json.loads(note))
        except (ValueError, TypeError):
            return None
        fields = (holder.pid, holder.process_start, holder.command, holder.started)
        return holder if [type(f) for f in fields] == [int, float, str, str] else None

    def to_note(self) -> str:
        """What the holder writes into the lock file."""
        return json.dumps(dataclasses.asdict(self)) + "\n"

    def running(self) -> bool:
        """Whether this process still runs: its pid is alive, not a zombie, and started when it did (not reused)."""
        try:
            process = psutil.Process(self.pid)
            return abs(process.create_time() - self.process_start) < 0.05 and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def describe(self) -> str:
        """`PID 1234 (tfxp run --span 2, started 2026-11-03 14:02:11)`, for one-line messages."""
        return f"PID {self.pid} ({self.command}, started {self.started})"


class Busy(RuntimeError):
    """Another process holds the output folder's run lock; `holder` is who, when its file tells."""

    def __init__(self, output_root: Path, holder: Holder | None):
        self.output_root = output_root
        self.holder = holder
        if holder is None:
            message = (
                f"a run is in progress in {output_root} (it holds {output_root / LOCK_FILE}, "
                "which does not say which process it is)"
            )
        elif holder.running():
            message = f"a run is in progress in {output_root}: {holder.describe()}"
        else:
            message = (
                f"a run is in progress in {output_root}: the lock was taken by {holder.describe()}, which is no "
                "longer running, and a process it started still holds it"
            )
        super().__init__(f"{message}; try again when it has ended")


def _holder(path: Path, note: str) -> Holder | None:
    """Who holds the lock: waits up to READ_PATIENCE for the file to name a process that is running."""
    deadline = time.monotonic() + READ_PATIENCE
    while True:
        holder = Holder.parse(note)
        # Until a new holder has written, the file is empty or still names the killed run it took over from.
        if (holder is not None and holder.running()) or time.monotonic() >= deadline:
            return holder
        time.sleep(READ_STEP)
        note = _held(path)
        if note is None:  # released meanwhile, before the file named who held it
            return None


@contextlib.contextmanager
def hold(output_root: Path, command: str) -> Iterator[Holder | None]:
    """Holds the run lock of `output_root` for the block, as this process running `command`.

    Yields the holder whose details a killed run left in the file (its lock was taken over), or None.
    Raises Busy at once when another process holds it.
    """
    path = output_root / LOCK_FILE
    with contextlib.ExitStack() as stack:
        try:
            left = stack.enter_context(exclusive(path, Holder.this_process(command).to_note()))
        except Locked as locked:
            raise Busy(output_root, _holder(path, locked.note)) from None
        yield Holder.parse(left)


def check(output_root: Path) -> None:
    """Raises Busy when another process holds the run lock of `output_root`; takes nothing and writes nothing.

    For `tfxp watch`, which must not start beside a run, yet whose own runs take the lock themselves.
    """
    path = output_root / LOCK_FILE
    note = _held(path)
    if note is not None:
        raise Busy(output_root, _holder(path, note))
