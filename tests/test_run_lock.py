"""One run at a time per output folder: the run lock itself, every command that writes refused while another holds
it, a killed run's lock taken over, two runs started at the same moment; and the modes of what a run writes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline import cli, lineage, rerun, run_lock, watch
from pipeline.config import CONFIG_FILE
from pipeline.settings import METADATA_FILE
from tests.conftest import FAST_RUN_ARGS, CliResult, run_tfxp, stop
from tests.datasets import PROJECT_ROOT
from tests.test_watch import write_span

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


def test_a_span_whose_run_found_the_output_folder_busy_is_run_again_at_the_next_look(tmp_path):
    write_span(tmp_path, 1)
    codes, lines = iter([cli.EXIT_BUSY, cli.EXIT_BUSY]), []
    ran = []

    def run_span(span: int) -> int:
        ran.append(span)
        return next(codes, cli.EXIT_OK)

    watcher = watch.Watcher(tmp_path, "*.csv", 0.1, run_span, lines.append, cli._meaning, busy={cli.EXIT_BUSY})
    outcomes = [watcher.poll() for _ in range(4)]
    assert [run and run.code for run in outcomes] == [cli.EXIT_BUSY, cli.EXIT_BUSY, cli.EXIT_OK, None]
    assert ran == [1, 1, 1]  # the same files each time; once run, not again
    busy = [line for line in lines if line.startswith("span 1: another run is in progress, nothing was run (exit 7, ")]
    assert len(busy) == 2
    assert all(line.endswith("; trying again at the next look") for line in busy)
    assert lines[-1].startswith("span 1: ok, blessed and pushed (exit 0, ") and lines[-1].endswith(")")


# ------------------------------------------------------------------ every command that writes, refused


HOLD = """
import sys
from pathlib import Path
from pipeline import run_lock
with run_lock.hold(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def held(tmp_path_factory) -> Iterator[tuple[Path, Path, run_lock.Holder]]:
    """A project, and its output folder whose run lock another process holds: (project file, output, holder)."""
    folder = tmp_path_factory.mktemp("held")
    (folder / "data").mkdir()
    (folder / "data" / "penguins.csv").write_text((PROJECT_ROOT / "data" / "penguins.csv").read_text())
    (folder / "schema").mkdir()
    (folder / "schema" / "schema.pbtxt").write_text((PROJECT_ROOT / "schema" / "schema.pbtxt").read_text())
    (folder / CONFIG_FILE).write_text((PROJECT_ROOT / CONFIG_FILE).read_text())
    output = folder / "outputs"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(output), HOLDER_COMMAND],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        yield folder / CONFIG_FILE, output, run_lock.Holder.parse((output / run_lock.LOCK_FILE).read_text())
    finally:
        holder.stdin.close()  # it lets go and exits
        if holder.wait(timeout=30) != 0:
            stop(holder)


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["run", "--no-cache"],
        ["approve", "1", "--note", "fine"],
        ["reject", "1", "--note", "no"],
        ["rollback"],
        ["rollback", "--clear"],
        ["monitor", "--requests", "data/penguins.csv"],
        ["watch", "--once"],
        ["watch", "--interval", "1s"],
    ],
    ids=" ".join,
)
def test_a_command_that_writes_the_output_folder_exits_at_once_while_a_run_holds_it(held, command):
    project_file, output, holder = held
    started = time.monotonic()
    result = run_tfxp(*command, "--config", str(project_file), "--output", str(output), timeout=60)
    seconds = time.monotonic() - started
    assert result.code == cli.EXIT_BUSY, result
    assert " ".join(result.stderr.split()) == (
        f"Error: a run is in progress in {output}: PID {holder.pid} ({HOLDER_COMMAND}, started {holder.started}); "
        "try again when it has ended"
    )
    assert result.stdout == ""
    assert seconds < 10, f"took {seconds:.1f} s"  # no TensorFlow loaded, no data read


def test_commands_that_only_read_are_not_refused(held):
    project_file, output, _ = held
    result = run_tfxp("models", "--config", str(project_file), "--output", str(output))
    assert result.code == cli.EXIT_BAD_INPUT
    assert f"no runs in {output}; run `tfxp run` first" in result.stderr


def test_every_exit_code_has_a_meaning_the_watcher_prints():
    assert cli.EXIT_MEANINGS[cli.EXIT_BUSY] == "another run is in progress, nothing was run"
    assert len(set(cli.EXIT_MEANINGS.values())) == len(cli.EXIT_MEANINGS)


# ------------------------------------------------------------------ real runs


def _start_run(output: Path, *args: str, config: Path | None = None, **popen_args) -> subprocess.Popen:
    config_args = ["--config", str(config)] if config else []
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", *config_args, "--output", str(output), *FAST_RUN_ARGS, *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
        **popen_args,
    )


def _finish(process: subprocess.Popen, timeout: float = 900) -> CliResult:
    stdout, stderr = process.communicate(timeout=timeout)
    return CliResult(process.returncode, stdout, stderr)


# A Ctrl-C that lands after the command has finished: here, from an exit handler, as Python tears down.
CTRL_C_IN_TEARDOWN = """
import atexit, os, signal, sys
atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))
sys.argv = ["tfxp", "--help"]
from pipeline.cli import entry
entry()
"""


def test_a_ctrl_c_after_the_command_has_finished_changes_neither_its_exit_code_nor_its_output():
    # Before cli.entry ignored it: "Exception ignored in atexit callback [...] KeyboardInterrupt" on stderr.
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_TEARDOWN],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (cli.EXIT_OK, ""), done
    assert done.stdout.startswith("Usage: tfxp")


@pytest.mark.pipeline
def test_a_sigkilled_runs_lock_is_taken_over_by_the_next_run_which_finishes(project, tmp_path):
    output = tmp_path / "outputs"
    killed = _start_run(output, config=project / CONFIG_FILE)
    try:
        deadline = time.monotonic() + 120
        while (holder := run_lock.Holder.parse(_text(output / run_lock.LOCK_FILE))) is None:
            assert killed.poll() is None, _finish(killed)
            assert time.monotonic() < deadline, "the run never wrote its run lock"
            time.sleep(0.05)
        assert holder.pid == killed.pid
        assert holder.command.endswith(f"run --config {project / CONFIG_FILE} --output {output} --no-tuner")
        killed.kill()
        killed.wait()
    finally:
        stop(killed)

    result = run_tfxp("run", "--config", str(project / CONFIG_FILE), "--output", str(output), *FAST_RUN_ARGS)
    assert result.code == cli.EXIT_OK, result
    assert result.stdout.startswith(
        f"Took over the lock of run PID {killed.pid} ({holder.command}, started {holder.started}), "
        "which is no longer running.\n"
    )
    assert (output / run_lock.LOCK_FILE).read_text() == ""


def _text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


@pytest.mark.pipeline
def test_two_runs_started_at_the_same_moment_ten_times_one_runs_and_the_store_stays_intact(finished_run):
    """Each round, the refused run must exit while the other still runs. The first round's winner finishes
    (a real TFX run, every component cached); later winners are stopped with Ctrl-C once the other is
    refused, wherever they are, which the store must survive too."""
    output = finished_run
    runs = len(lineage.pipeline_runs(lineage.open_store(output)))
    for round_ in range(10):
        # Without its record the run cannot answer from it, and starts TFX.
        (output / rerun.RECORD_FILE).unlink(missing_ok=True)
        pair = [_start_run(output), _start_run(output)]
        try:
            while all(p.poll() is None for p in pair):
                time.sleep(0.05)
            first_done = next(p for p in pair if p.poll() is not None)
            other = next(p for p in pair if p is not first_done)
            still_running = other.poll() is None
            if round_ and still_running:
                other.send_signal(signal.SIGINT)
            loser, winner = _finish(first_done), _finish(other)
        finally:
            for process in pair:
                stop(process)
        assert still_running, f"round {round_}: the refused run did not exit while the other ran\n{loser}\n{winner}"
        assert loser.code == cli.EXIT_BUSY, f"round {round_}: {loser}"
        message = " ".join(loser.stderr.split())
        assert message.startswith(f"Error: a run is in progress in {output}: PID {other.pid} ("), message
        assert loser.stdout == ""
        assert "Traceback" not in winner.stderr, winner.stderr
        if round_ == 0:
            assert winner.code == cli.EXIT_OK and "Pipeline finished in" in winner.stdout, winner
            runs += 1
            assert len(lineage.pipeline_runs(lineage.open_store(output))) == runs
        else:
            # Interrupted while an extension runs Python code for its import, CPython ends the process by SIGINT
            # even after `tfxp` caught it and chose 130; a shell reports both as 130. A winner the signal reached
            # only after it had finished and said so (on a loaded machine the loser can take that long to exit)
            # is in its teardown, which ignores Ctrl-C (cli.entry), and exits 0.
            finished = winner.code == cli.EXIT_OK and "\nReport: " in winner.stdout
            assert finished or winner.code in (cli.EXIT_INTERRUPTED, -signal.SIGINT), f"round {round_}: {winner}"
    connection = sqlite3.connect(output / METADATA_FILE)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()
    assert run_tfxp("run", "--output", str(output), *FAST_RUN_ARGS).code == cli.EXIT_OK


# ------------------------------------------------------------------ modes


def _modes(folder: Path) -> dict[str, int]:
    """The permission bits of `folder` and of everything under it (symbolic links, which have none, aside)."""
    found = {".": stat.S_IMODE(folder.lstat().st_mode)}
    for path in folder.rglob("*"):
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode):
            found[str(path.relative_to(folder))] = stat.S_IMODE(info.st_mode)
    return found


PUSH = """
import sys
from pathlib import Path
from pipeline import serving
push = serving.ServingFolder(Path(sys.argv[1]), "m").push(Path(sys.argv[2]), keep_versions=3)
print(push.version)
"""


def test_a_push_gives_its_files_and_folders_the_umasks_modes_whatever_its_sources(tmp_path):
    source = tmp_path / "model"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "variables" / "variables.index").write_bytes(b"index")
    for path in (source / "variables", source):
        path.chmod(0o700)  # a Trainer's output from a run under umask 077
    pushed = subprocess.run(
        [sys.executable, "-c", PUSH, str(tmp_path / "serving"), str(source)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        umask=0o027,
        check=True,
    )
    modes = _modes(tmp_path / "serving")
    version = pushed.stdout.strip()
    assert {path: oct(mode) for path, mode in modes.items() if path != "."} == {
        ".serving.lock": "0o640",
        "models.config": "0o640",  # written by mkstemp, which alone would make it 0600
        "m": "0o750",
        f"m/{version}": "0o750",
        f"m/{version}/saved_model.pb": "0o640",
        f"m/{version}/variables": "0o750",
        f"m/{version}/variables/variables.index": "0o640",
    }


def _run_under_umask(project: Path, output: Path, umask: int) -> CliResult:
    result = _finish(_start_run(output, config=project / CONFIG_FILE, umask=umask))
    assert result.code == cli.EXIT_OK, result
    assert "Pushed to " in result.stdout
    return result


@pytest.mark.pipeline
def test_a_run_under_umask_077_writes_nothing_the_group_or_others_may_touch(project, tmp_path):
    output = tmp_path / "outputs"
    _run_under_umask(project, output, 0o077)
    modes = _modes(output)
    assert "serving/models.config" in modes and "metadata.sqlite" in modes
    opened = {path: oct(mode) for path, mode in modes.items() if mode & 0o077}
    assert not opened, json.dumps(opened, indent=1)


@pytest.mark.pipeline
def test_under_umask_000_the_serving_folder_store_and_output_folder_are_not_world_writable(project, tmp_path):
    output = tmp_path / "outputs"
    _run_under_umask(project, output, 0o000)
    modes = _modes(output)
    guarded = {
        p: m for p, m in modes.items() if p in (".", METADATA_FILE) or p == "serving" or p.startswith("serving/")
    }
    assert len(guarded) > 10  # the store, the folder, models.config and a pushed SavedModel's files
    writable = {path: oct(mode) for path, mode in guarded.items() if mode & 0o002}
    assert not writable, json.dumps(writable, indent=1)
    assert modes["serving/models.config"] == 0o664  # the umask still decides the rest
