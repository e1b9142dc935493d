"""The run lock: one holder per output folder, named in its file; a killed holder's lock taken over."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline import run_lock, watch

HOLDER_COMMAND = "tfxp run --span 3"


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def _leave(output: Path, holder: run_lock.Holder) -> None:
    """Writes `holder` into the run lock file with nothing holding the lock: what a SIGKILLed run leaves."""
    output.mkdir(parents=True, exist_ok=True)
    (output / run_lock.LOCK_FILE).write_text(holder.to_note())


# ------------------------------------------------------------------ the lock


def test_a_held_lock_refuses_a_second_holder_naming_the_first_and_is_free_again_after(tmp_path):
    with run_lock.hold(tmp_path, HOLDER_COMMAND) as taken_over:
        assert taken_over is None
        with pytest.raises(run_lock.Busy) as refused:
            with run_lock.hold(tmp_path, "tfxp approve 12"):
                raise AssertionError("a second holder got the lock")
        holder = refused.value.holder
        assert (holder.pid, holder.command) == (os.getpid(), HOLDER_COMMAND)
        assert str(refused.value) == (
            f"a run is in progress in {tmp_path}: PID {os.getpid()} ({HOLDER_COMMAND}, started {holder.started}); "
            "try again when it has ended"
        )
        with pytest.raises(run_lock.Busy):
            run_lock.check(tmp_path)
    assert (tmp_path / run_lock.LOCK_FILE).read_text() == ""  # an orderly end leaves nothing to take over
    run_lock.check(tmp_path)
    with run_lock.hold(tmp_path, HOLDER_COMMAND) as taken_over:
        assert taken_over is None


def test_the_lock_left_by_a_process_that_is_gone_is_taken_over_and_named(tmp_path):
    dead = run_lock.Holder(_dead_pid(), time.time() - 5, HOLDER_COMMAND, "2026-11-03 14:02:11")
    _leave(tmp_path, dead)
    assert not dead.running()
    run_lock.check(tmp_path)  # a file naming a process is not a held lock
    with run_lock.hold(tmp_path, "tfxp run") as taken_over:
        assert taken_over == dead
        assert run_lock.Holder.parse((tmp_path / run_lock.LOCK_FILE).read_text()).pid == os.getpid()


def test_a_pid_reused_by_a_later_process_is_not_the_holder(tmp_path):
    started = psutil.Process().create_time()
    assert run_lock.Holder(os.getpid(), started, HOLDER_COMMAND, "2026-11-03 14:02:11").running()
    earlier = run_lock.Holder(os.getpid(), started - 3600, HOLDER_COMMAND, "2026-11-03 14:02:11")
    assert not earlier.running()
    _leave(tmp_path, earlier)
    with run_lock.hold(tmp_path, "tfxp run") as taken_over:
        assert taken_over == earlier


@pytest.mark.parametrize("left", ["", "killed mid-write {", '{"pid": "1"}', "[1, 2]"])
def test_an_empty_or_unreadable_lock_file_is_no_holder(tmp_path, left):
    (tmp_path / run_lock.LOCK_FILE).write_text(left)
    with run_lock.hold(tmp_path, "tfxp run") as taken_over:
        assert taken_over is None


@pytest.mark.parametrize("left_by_a_killed_run", [False, True])
def test_a_refused_process_waits_for_the_holder_to_write_who_it_is(tmp_path, left_by_a_killed_run):
    """The moment between a holder's flock and its write: the refusal names the holder, not nobody or a dead run."""
    import fcntl

    path = tmp_path / run_lock.LOCK_FILE
    if left_by_a_killed_run:
        _leave(tmp_path, run_lock.Holder(_dead_pid(), time.time() - 5, "tfxp run", "2026-11-03 14:02:11"))
    me = run_lock.Holder.this_process(HOLDER_COMMAND)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, not yet written
        writer = threading.Timer(0.3, lambda: path.write_text(me.to_note()))
        writer.start()
        with pytest.raises(run_lock.Busy) as refused:
            with run_lock.hold(tmp_path, "tfxp run"):
                raise AssertionError("got a held lock")
        writer.join()
    assert refused.value.holder == me


def test_the_watch_lock_uses_the_same_flock_and_is_emptied_when_released(tmp_path):
    with watch.lock(tmp_path):
        with pytest.raises(run_lock.Locked):
            with run_lock.exclusive(tmp_path / watch.LOCK_FILE, "other\n"):
                raise AssertionError("a second holder got the watch lock")
    assert (tmp_path / watch.LOCK_FILE).read_text() == ""
