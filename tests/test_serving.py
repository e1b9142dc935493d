"""The serving folder TF Serving reads, without a pipeline: whole versions only, crashes and full disks
leave nothing visible, retention spares the pinned version, and `models.config` is always a whole file."""

from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before the fixture imports TensorFlow)
from pipeline.serving import LOCK_FILE, DeliveryError, ServingFolder
from tests.conftest import stop
from tests.datasets import PROJECT_ROOT

MODEL = "echo"

# Pushes `argv[3]` into ServingFolder(argv[1], argv[2]); prints a DeliveryError as the user would see it.
PUSH = """
import sys
from pathlib import Path
from pipeline.serving import DeliveryError, ServingFolder
try:
    ServingFolder(Path(sys.argv[1]), sys.argv[2]).push(Path(sys.argv[3]), keep_versions=5)
except DeliveryError as error:
    print(error)
    sys.exit(3)
"""

# Polls a model folder as TF Serving does, about every millisecond, until the stop file appears.
WATCHER = """
import json, os, sys, time
model_dir, ready, stop, out = sys.argv[1:]
polls, seen, violations = 0, set(), []
open(ready, "w").close()
while not os.path.exists(stop):
    polls += 1
    try:
        names = os.listdir(model_dir)
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.isdigit():
            continue
        seen.add(int(name))
        folder = os.path.join(model_dir, name)
        whole = os.path.isfile(os.path.join(folder, "saved_model.pb")) and os.path.isdir(os.path.join(folder, "variables"))
        # A folder no longer there was renamed away whole (retention), not torn.
        if not whole and os.path.isdir(folder):
            violations.append(name)
    time.sleep(0.001)
with open(out, "w") as handle:
    json.dump({"polls": polls, "seen": sorted(seen), "violations": violations}, handle)
"""

# Pins `argv[3]` `argv[5]` times, each under the lock, once the go file appears.
PIN = """
import os, sys, time
from pathlib import Path
from pipeline.serving import ServingFolder
root, model, version, go, rounds = sys.argv[1:]
folder = ServingFolder(Path(root), model)
while not os.path.exists(go):
    time.sleep(0.001)
for _ in range(int(rounds)):
    with folder.lock():
        folder.pin(int(version))
"""


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A real SavedModel with a string serving signature and one variable, plus assets so a copy takes a while."""
    import tensorflow as tf

    class Echo(tf.Module):
        def __init__(self):
            super().__init__()
            self.offset = tf.Variable(1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, text):
            return {"length": tf.strings.length(text) + self.offset}

    path = tmp_path_factory.mktemp("model") / "echo"
    module = Echo()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    (path / "assets").mkdir(exist_ok=True)
    for i in range(8):
        (path / "assets" / f"vocabulary_{i}.txt").write_bytes(os.urandom(64 * 1024))
    return path


@pytest.fixture(scope="module")
def big_saved_model(saved_model, tmp_path_factory) -> Path:
    """The same model with a 256 MB asset (sparse here, but every byte is written to the copy)."""
    path = tmp_path_factory.mktemp("big") / "echo"
    shutil.copytree(saved_model, path)
    with open(path / "assets" / "big.bin", "wb") as handle:
        handle.truncate(256 * 1024 * 1024)
    return path


def _push_in_subprocess(folder: ServingFolder, saved_model: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PUSH, str(folder.root), folder.model_name, str(saved_model)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def _wait_for(condition: Callable, process: subprocess.Popen, timeout: float = 30):
    """Polls `condition` about every millisecond until it returns something; fails if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        assert process.poll() is None, f"exited with code {process.returncode} before the condition held"
        time.sleep(0.001)
    raise AssertionError(f"condition not met within {timeout} s")


def _hidden(folder: ServingFolder) -> list[str]:
    return sorted(p.name for p in folder.model_dir.iterdir() if p.name.startswith("."))


def _tree(folder: ServingFolder) -> list[str]:
    """Every path under the serving root, to compare before and after a refused change."""
    return sorted(str(p.relative_to(folder.root)) for p in folder.root.rglob("*"))


def _parse(config_path: Path) -> model_server_config_pb2.ModelServerConfig:
    """`models.config` parsed as TF Serving parses it, independently of ServingFolder."""
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(config_path.read_text(encoding="utf-8"), config)
    return config


def test_pushes_appear_whole_to_a_polling_server(tmp_path, saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    ready, stop_file, out = tmp_path / "ready", tmp_path / "stop", tmp_path / "watched.json"
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(folder.model_dir), str(ready), str(stop_file), str(out)]
    )
    try:
        _wait_for(ready.exists, watcher)
        started, pushes = [], []
        for _ in range(50):
            started.append(int(time.time()))
            pushes.append(folder.push(saved_model, keep_versions=3))  # small, so retention deletes under watch too
        time.sleep(0.05)  # a few more polls of the last versions
        stop_file.touch()
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher.poll() is None:
            stop(watcher)
    watched = json.loads(out.read_text())
    versions = [p.version for p in pushes]
    assert watched["violations"] == []
    assert watched["polls"] > 500
    assert set(versions) <= set(watched["seen"])
    assert len(set(started)) < len(started)  # several pushes within one second: the clock alone would collide
    assert versions == sorted(set(versions))
    assert folder.versions() == versions[-3:]
    assert sorted(v for p in pushes for v in p.removed) == versions[:-3]
    assert _hidden(folder) == []


def test_a_push_killed_mid_copy_leaves_no_version_and_the_next_push_clears_it(tmp_path, saved_model, big_saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    first = folder.push(saved_model, keep_versions=5).version
    config = folder.config_path.read_bytes()
    pusher = subprocess.Popen(
        [sys.executable, "-c", PUSH, str(folder.root), MODEL, str(big_saved_model)], cwd=PROJECT_ROOT
    )
    try:
        partial = _wait_for(lambda: next(folder.model_dir.glob(".partial-*"), None), pusher)
        pusher.kill()
    finally:
        pusher.wait(timeout=30)
    assert pusher.returncode == -9
    assert partial.is_dir()  # killed while copying, not after
    assert folder.versions() == [first] and folder.is_complete(first)
    assert folder.served() == first
    assert folder.config_path.read_bytes() == config

    after = folder.push(saved_model, keep_versions=5)
    assert after.recovered == [partial.name]
    assert _hidden(folder) == []
    assert folder.versions() == [first, after.version]


def _file_size_limit(size: int) -> Callable[[], None]:
    """A preexec_fn: files larger than `size` fail with EFBIG (Python ignores SIGXFSZ), as on a full disk."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_a_full_disk_fails_the_push_and_the_previous_version_keeps_serving(tmp_path, saved_model, big_saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    first = folder.push(saved_model, keep_versions=5).version
    config = folder.config_path.read_bytes()
    result = _push_in_subprocess(folder, big_saved_model, preexec_fn=_file_size_limit(1024 * 1024))
    assert result.returncode == 3, result.stderr
    assert re.fullmatch(
        rf"could not write version \d+ to {re.escape(str(folder.model_dir))}: File too large; "
        rf"nothing partial is visible, and version {first} keeps serving\n",
        result.stdout,
    )
    assert folder.versions() == [first] and folder.served() == first
    assert _hidden(folder) == []
    assert folder.config_path.read_bytes() == config


def _drop_file_capabilities() -> None:
    """A preexec_fn: the process stays root but loses the capabilities that let root ignore file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24  # from <linux/prctl.h>
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_serving_folder_without_write_access_is_refused_and_left_as_it_was(tmp_path, saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    first = folder.push(saved_model, keep_versions=5).version
    config, tree = folder.config_path.read_bytes(), _tree(folder)
    modes = {folder.root / LOCK_FILE: 0o444, folder.model_dir: 0o555, folder.root: 0o555}
    before = {path: path.stat().st_mode for path in modes}
    for path, mode in modes.items():
        path.chmod(mode)
    # Root ignores file modes. User nobody cannot start this interpreter when it lives under /root (0700),
    # so the push runs as root without the capabilities that bypass modes: the kernel refuses it the same way.
    kwargs = {"preexec_fn": _drop_file_capabilities} if os.geteuid() == 0 else {}
    try:
        result = _push_in_subprocess(folder, saved_model, **kwargs)
    finally:
        for path, mode in before.items():
            path.chmod(mode)
    assert result.returncode == 3, result.stderr
    assert result.stdout == f"cannot write to the serving folder {folder.root}: Permission denied\n"
    assert folder.versions() == [first] and folder.served() == first
    assert _tree(folder) == tree
    assert folder.config_path.read_bytes() == config


def test_retention_keeps_the_newest_and_never_the_pinned_one(tmp_path, saved_model):
    folder = ServingFolder(tmp_path / "plain", MODEL)
    pushes = [folder.push(saved_model, keep_versions=2) for _ in range(4)]
    versions = [p.version for p in pushes]
    assert folder.versions() == versions[2:]
    assert [p.removed for p in pushes] == [[], [], [versions[0]], [versions[1]]]

    folder = ServingFolder(tmp_path / "pinned", MODEL)
    oldest = folder.push(saved_model, keep_versions=2).version
    with folder.lock():
        folder.pin(oldest)
    pushes = [folder.push(saved_model, keep_versions=2) for _ in range(4)]
    versions = [p.version for p in pushes]
    assert folder.versions() == [oldest, *versions[2:]]
    assert [p.removed for p in pushes] == [[], [], [versions[0]], [versions[1]]]
    assert folder.pinned() == oldest and folder.served() == oldest


def test_models_config_serves_the_latest_or_the_pinned_version(tmp_path, saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    first = folder.push(saved_model, keep_versions=5).version
    second = folder.push(saved_model, keep_versions=5).version
    config = _parse(folder.config_path)
    [entry] = config.model_config_list.config
    assert entry.name == MODEL
    assert entry.base_path == str(tmp_path / "serving" / MODEL) and Path(entry.base_path).is_absolute()
    assert entry.model_platform == "tensorflow"
    assert entry.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert folder.served() == second

    with folder.lock():
        folder.pin(first)
    [entry] = _parse(folder.config_path).model_config_list.config
    assert entry.model_version_policy.WhichOneof("policy_choice") == "specific"
    assert list(entry.model_version_policy.specific.versions) == [first]
    assert folder.served() == first

    with folder.lock():
        folder.pin(None)
    [entry] = _parse(folder.config_path).model_config_list.config
    assert entry.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert folder.pinned() is None and folder.served() == second


def test_pinning_a_missing_or_corrupt_version_is_refused(tmp_path, saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    first = folder.push(saved_model, keep_versions=5).version
    second = folder.push(saved_model, keep_versions=5).version
    config = folder.config_path.read_bytes()
    with folder.lock(), pytest.raises(DeliveryError) as missing:
        folder.pin(123)
    assert str(missing.value) == f"there is no version 123 in {folder.model_dir} (versions: {first}, {second})"

    (folder.version_dir(first) / "saved_model.pb").unlink()
    with folder.lock(), pytest.raises(DeliveryError) as corrupt:
        folder.pin(first)
    assert str(corrupt.value) == (
        f"version {first} in {folder.model_dir} is corrupt (no saved_model.pb or variables/), "
        "so TF Serving could not load it"
    )
    assert folder.config_path.read_bytes() == config


def test_concurrent_pins_leave_models_config_always_whole(tmp_path, saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    versions = [folder.push(saved_model, keep_versions=5).version for _ in range(3)]
    pinned = set(versions[:2])
    with folder.lock():
        folder.pin(versions[0])  # from the start, every read must name a pinned version
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", PIN, str(folder.root), MODEL, str(version), str(go), "150"], cwd=PROJECT_ROOT
        )
        for version in pinned
    ]
    parses, seen, wrong = 0, set(), []
    try:
        go.touch()
        while any(w.poll() is None for w in writers):
            text = folder.config_path.read_text(encoding="utf-8")
            try:
                config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
                [entry] = config.model_config_list.config
                seen.add(entry.model_version_policy.specific.versions[0])
            except (text_format.ParseError, ValueError, IndexError):  # a torn or empty file
                wrong.append(text)
            parses += 1
    finally:
        for writer in writers:
            if writer.poll() is None:
                stop(writer)
    assert [w.returncode for w in writers] == [0, 0]
    assert wrong == []
    assert parses > 100
    assert seen == pinned  # both writers' pins were read while they raced
    assert folder.pinned() in pinned
    assert list(folder.root.glob(".models.config.*")) == []


def test_versions_are_numeric_folders_only_and_complete_ones_serve(tmp_path, saved_model):
    folder = ServingFolder(tmp_path / "serving", MODEL)
    for name in ("1", ".partial-5", ".removing-2", "notes", "4.tmp", "6"):
        shutil.copytree(saved_model, folder.model_dir / name)
    (folder.model_dir / "3").write_text("a file, not a version folder")
    (folder.version_dir(6) / "saved_model.pb").unlink()  # numeric, so visible, but TF Serving could not load it
    assert folder.versions() == [1, 6]
    assert folder.is_complete(1) and not folder.is_complete(6)
    assert not folder.is_complete(5) and not folder.is_complete(2)
    assert folder.served() == 1
    assert folder.previous(6) == 1
