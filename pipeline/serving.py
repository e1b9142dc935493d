"""The serving folder TF Serving reads: versions appear whole or not at all, and `models.config` says which serves.

Layout, under the output's `serving/`:
    models.config                 TF Serving's model_config_list: latest version, or one pinned by a rollback
    <model_name>/<version>/       complete SavedModels; TF Serving loads numeric folders only
    <model_name>/.partial-<v>/    a push in progress (or one a crash left): hidden, so never loaded
A version is copied into a hidden folder, fsynced, then renamed into place: rename is atomic on one
filesystem, so a polling server sees no version or a whole one. Every change takes one file lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from pipeline import digests, faults, file_modes

CONFIG_FILE = "models.config"
LOCK_FILE = ".serving.lock"
PARTIAL = ".partial-"  # a version being written
REMOVING = ".removing-"  # a version being deleted: hidden first, so no half-deleted folder is visible
SAVED_MODEL = "saved_model.pb"
VARIABLES = "variables"
# Digests kept in MLMD: of the stamped model on its InfraBlessing (and of the model the Evaluator evaluated on its
# ModelBlessing), and of each published version folder, model card included, on its PushedModel.
MODEL_DIGEST = "model_digest"
VERSION_DIGEST = "version_digest"


class DeliveryError(RuntimeError):
    """A push, rollback or removal could not be done; the serving folder is as it was."""


@dataclasses.dataclass(frozen=True)
class Push:
    """What one push did to the serving folder."""

    version: int
    path: Path
    recovered: list[str]  # unfinished pushes left by a crash, removed first
    removed: list[int]  # versions retention deleted after the push
    digest: str  # of every file in the published version, model card included: `tfxp models` recomputes it
    reused: bool = False  # the newest version already held these exact files, so nothing was copied


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _WriteFailed(Exception):  # noqa: N818
    """An OSError while copying, carried past copytree, which would note it and copy on regardless."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


def _copy_synced(source: str, target: str) -> str:
    """Copies one file and flushes it to disk, so a rename after it publishes data, not promises."""
    try:
        shutil.copyfile(source, target)
        _fsync(Path(target))
    except OSError as error:
        raise _WriteFailed(error) from error
    return target


def saved_model_digest(folder: Path, skip: tuple[str, ...] = ()) -> str:
    """SHA-256 over a SavedModel folder's relative file paths and contents (but `skip`): what approval compares."""
    return digests.folder_digest(folder, skip)


def digest_mismatch(folder: Path, expected: str | None) -> str | None:
    """How `folder`'s files differ from those whose digest was `expected` ("digest … then, … now"), or None if
    they match. A folder that is gone, or an expectation never recorded, is a mismatch too."""
    actual = saved_model_digest(folder) if folder.is_dir() else "missing"
    if expected and actual == expected:
        return None
    return f"digest {(expected or 'not recorded')[:12]} then, {actual[:12]} now"


@dataclasses.dataclass(frozen=True)
class ServingFolder:
    """One model's versions under a serving root, and the TF Serving config next to them."""

    root: Path
    model_name: str

    @property
    def model_dir(self) -> Path:
        """`<root>/<model_name>`: TF Serving's base_path for this model."""
        return self.root / self.model_name

    @property
    def config_path(self) -> Path:
        """`models.config`, for `tensorflow_model_server --model_config_file`."""
        return self.root / CONFIG_FILE

    def versions(self) -> list[int]:
        """Every version folder TF Serving can see, oldest first."""
        if not self.model_dir.is_dir():
            return []
        return sorted(
            int(p.name) for p in self.model_dir.iterdir() if p.name.isascii() and p.name.isdigit() and p.is_dir()
        )

    def version_dir(self, version: int) -> Path:
        """The folder of one version."""
        return self.model_dir / str(version)

    def is_complete(self, version: int) -> bool:
        """Whether a version folder holds a SavedModel TF Serving can load: its graph and its variables."""
        folder = self.version_dir(version)
        return (folder / SAVED_MODEL).is_file() and (folder / VARIABLES).is_dir()

    def pinned(self) -> int | None:
        """The version a rollback pinned in `models.config`, or None when the latest serves."""
        entry = self._config_entry(self.read_config())
        if entry is not None and entry.model_version_policy.WhichOneof("policy_choice") == "specific":
            return entry.model_version_policy.specific.versions[0]
        return None

    def served(self) -> int | None:
        """The version TF Serving serves under `models.config`: the pinned one, or the newest complete one."""
        pinned = self.pinned()
        if pinned is not None:
            return pinned
        complete = [v for v in self.versions() if self.is_complete(v)]
        return complete[-1] if complete else None

    def read_config(self) -> model_server_config_pb2.ModelServerConfig:
        """`models.config` parsed with TF Serving's own proto; empty when there is none yet."""
        config = model_server_config_pb2.ModelServerConfig()
        if self.config_path.is_file():
            try:
                text_format.Parse(self.config_path.read_text(encoding="utf-8"), config)
            except text_format.ParseError as error:
                raise DeliveryError(f"{self.config_path} is not a TF Serving model config: {error}") from None
        return config

    def _config_entry(self, config: model_server_config_pb2.ModelServerConfig):
        for entry in config.model_config_list.config:
            if entry.name == self.model_name:
                return entry
        return None

    def write_config(self, pinned: int | None) -> None:
        """Writes `models.config` serving the latest version, or only `pinned`; whole or not at all."""
        config = self.read_config()
        entry = self._config_entry(config) or config.model_config_list.config.add(name=self.model_name)
        entry.base_path = str(self.model_dir.absolute())
        entry.model_platform = "tensorflow"
        if pinned is None:
            entry.model_version_policy.latest.num_versions = 1
        else:
            entry.model_version_policy.specific.ClearField("versions")
            entry.model_version_policy.specific.versions.append(pinned)
        self.root.mkdir(parents=True, exist_ok=True)
        # A unique hidden name per writer, so two writers never share a half-written file; rename publishes.
        fd, partial = tempfile.mkstemp(dir=self.root, prefix=f".{CONFIG_FILE}.")
        try:
            os.fchmod(fd, file_modes.file_mode())  # mkstemp's 0600 would override the umask, which decides
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text_format.MessageToString(config))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.config_path)
            _fsync(self.root)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serializes pushes, rollbacks and removals on this serving root, across processes."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK_FILE, "a")  # noqa: SIM115  (held for the whole block)
        except OSError as error:
            raise DeliveryError(f"cannot write to the serving folder {self.root}: {error.strerror}") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def recover(self) -> list[str]:
        """Removes what an interrupted push or removal left behind; returns the folder names. Hold the lock."""
        if not self.model_dir.is_dir():
            return []
        leftovers = sorted(p for p in self.model_dir.iterdir() if p.name.startswith((PARTIAL, REMOVING)))
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
        return [p.name for p in leftovers]

    def push(
        self,
        saved_model: Path,
        keep_versions: int,
        reuse_identical: bool = False,
        extra_files: Callable[[int], dict[str, str]] | None = None,
    ) -> Push:
        """Publishes `saved_model` as a new version, then keeps the newest `keep_versions` (and any pinned one).

        `extra_files(version)` gives files (relative path → text) to publish inside the version, such as
        its model card. With `reuse_identical`, a model whose other files equal the newest version's is not
        published again.
        """
        extras = extra_files or (lambda version: {})
        if not (saved_model / SAVED_MODEL).is_file():
            raise DeliveryError(f"{saved_model} is not a SavedModel (no {SAVED_MODEL})")
        with self.lock():
            recovered = self.recover()
            existing = self.versions()
            # A re-executed Pusher (a changed setting re-keys its cache) must not publish the same model twice.
            if reuse_identical and existing and self.is_complete(existing[-1]):
                skip = tuple(extras(existing[-1]))
                newest = self.version_dir(existing[-1])
                if saved_model_digest(newest, skip) == saved_model_digest(saved_model, skip):
                    return Push(existing[-1], newest, recovered, [], saved_model_digest(newest), reused=True)
            # Unix time, as TFX's Pusher; never an existing number, and always above the newest.
            version = max([int(time.time()), *(v + 1 for v in existing)])
            target = self.version_dir(version)
            partial = self.model_dir / f"{PARTIAL}{version}"
            try:
                self.model_dir.mkdir(parents=True, exist_ok=True)
                shutil.copytree(saved_model, partial, copy_function=_copy_synced)
                for relative, text in extras(version).items():
                    (partial / relative).parent.mkdir(parents=True, exist_ok=True)
                    (partial / relative).write_text(text, encoding="utf-8")
                    _fsync(partial / relative)
                faults.at(faults.PUSH_COPY)
                for folder, _, _ in os.walk(partial, topdown=False):
                    # copytree gives each folder its source's mode (the Trainer's, perhaps under another umask).
                    os.chmod(folder, file_modes.folder_mode())
                    _fsync(Path(folder))
                digest = saved_model_digest(partial)  # relative paths, so the rename leaves it valid
                os.rename(partial, target)
                _fsync(self.model_dir)
                if not self.config_path.is_file():
                    self.write_config(pinned=None)
            except (OSError, _WriteFailed) as failure:
                error = failure.error if isinstance(failure, _WriteFailed) else failure
                shutil.rmtree(partial, ignore_errors=True)
                served = self.served()
                still = f"version {served} keeps serving" if served is not None else "no version was published"
                raise DeliveryError(
                    f"could not write version {version} to {self.model_dir}: {error.strerror or error}; "
                    f"nothing partial is visible, and {still}"
                ) from None
            removed = self._prune(keep_versions)
        return Push(version, target, recovered, removed, digest)

    def _prune(self, keep_versions: int) -> list[int]:
        """Deletes the oldest versions beyond `keep_versions`, never the pinned one. Hold the lock."""
        pinned = self.pinned()
        versions = self.versions()
        doomed = [v for v in versions[: max(0, len(versions) - keep_versions)] if v != pinned]
        removed = []
        for version in doomed:
            hidden = self.model_dir / f"{REMOVING}{version}"
            try:
                os.rename(self.version_dir(version), hidden)  # invisible at once; deleted at leisure
            except OSError:
                break  # the push itself succeeded; the next one retries the removal
            shutil.rmtree(hidden, ignore_errors=True)
            removed.append(version)
        return removed

    def previous(self, version: int | None) -> int | None:
        """The newest complete version older than `version`: where a rollback goes by default."""
        older = [v for v in self.versions() if version is not None and v < version and self.is_complete(v)]
        return older[-1] if older else None

    def pin(self, version: int | None) -> None:
        """Serves only `version`, or (None) the latest again; refuses a missing or corrupt one. Hold the lock."""
        if version is not None:
            if version not in self.versions():
                known = ", ".join(map(str, self.versions())) or "none"
                raise DeliveryError(f"there is no version {version} in {self.model_dir} (versions: {known})")
            if not self.is_complete(version):
                raise DeliveryError(
                    f"version {version} in {self.model_dir} is corrupt (no {SAVED_MODEL} or {VARIABLES}/), "
                    "so TF Serving could not load it"
                )
        self.write_config(pinned=version)
