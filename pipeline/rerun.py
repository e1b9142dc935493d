"""Tells in about a second, before TensorFlow loads, that a run would find nothing changed.

An unchanged rerun is all cache hits in TFX, but reaching that verdict means importing
TensorFlow, TFX and Beam (about 10 s). So every finished run records a fingerprint of what its
result depends on: where it ran (the project file, data and output folders), the project settings,
the Beam arguments (secrets redacted), the schema, the data files (their contents, not only size
and modification time: see pipeline/digests.py), the pipeline and model code, the installed
versions of the ML stack, the ML Metadata store and the serving folder. When the next `tfxp run`
computes the same fingerprint, TFX would reuse every execution and push nothing, so the CLI shows
the recorded summary instead. Anything different, or `--no-cache`, runs the pipeline as usual.

A record never answers for a run with a secret in its Beam arguments: the secret is not recorded
(not even as a digest, which a short password would not survive), yet TFX's cache key holds it,
so only TFX can tell whether a changed token re-executes anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import sqlite3
from pathlib import Path

import models
import pipeline
from pipeline import digests, file_modes, redaction
from pipeline.settings import Settings

RECORD_FILE = "last_run.json"
# The installed distributions whose upgrade can change a run's result: the stack TFX runs on, and the Arrow
# reader and tf.Example encoder the project's ExampleGen uses. TFX's own cache key ignores them all.
PACKAGES = (
    "tensorflow",
    "tfx",
    "tensorflow-transform",
    "tensorflow-model-analysis",
    "tensorflow-data-validation",
    "apache-beam",
    "ml-metadata",
    "tf-keras",
    "keras-tuner",
    "tfx-bsl",
    "pyarrow",
)


def _code_files() -> list[Path]:
    """Every source file of the pipeline and model packages."""
    return sorted(p for package in (pipeline, models) for p in Path(package.__file__).parent.rglob("*.py"))


def _files(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def data_signature(folder: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file under a run's input folder: a cheap sign of changed data.

    `tfxp watch` compares the same signature, so a span it sees as new is one `tfxp run` sees as changed.
    It misses a file replaced by one of the same size and mtime, so the run fingerprint also hashes contents.
    """
    files = []
    for path in _files(folder):
        try:
            stat = path.stat()
        except FileNotFoundError:  # renamed or removed since the listing, as a producer's temporary file is
            continue
        files.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return files


def _data_digest(folder: Path) -> str:
    """SHA-256 of the contents of every file under `folder`; a one-off value when a file vanishes while it is read."""
    try:
        return digests.files_digest(_files(folder), folder)
    except FileNotFoundError:  # a producer is still writing: match no record, not even one taken in the same state
        return f"changing {os.urandom(8).hex()}"


def installed_versions() -> dict[str, str | None]:
    """The installed version of each of PACKAGES, None for one that is not installed."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _store_state(metadata_path: Path) -> list[int]:
    """How many executions the MLMD store holds, and the newest one's id; any run changes both."""
    if not metadata_path.is_file():
        return []
    connection = sqlite3.connect(f"file:{metadata_path}?mode=ro", uri=True)
    try:
        return list(connection.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM Execution").fetchone())
    except sqlite3.Error:
        return []
    finally:
        connection.close()


def serving_versions(folder: Path) -> list[str]:
    """The model versions in a model's serving folder."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def origin(settings: Settings) -> dict[str, str]:
    """Where a run ran: its project file, data folder and output folder, absolute."""
    return {
        "project_file": str(settings.paths.project_file),
        "data": str(settings.paths.data_root),
        "output": str(settings.paths.output_root),
    }


def inputs(settings: Settings) -> dict:
    """What a run's result depends on, taken as it starts, so data changed during the run is not recorded as read."""
    digest = hashlib.sha256()
    for path in _code_files():
        digest.update(path.read_bytes())
    return {
        "origin": origin(settings),
        # [cluster] is where `tfxp compile`'s spec runs; nothing a run here does depends on it.
        "project": settings.project.model_dump(mode="json", by_alias=True, exclude={"cluster"}),
        "span": settings.span,
        "beam_args": list(redaction.redact_args(settings.beam_args)),
        "schema": hashlib.sha256(settings.paths.schema_file.read_bytes()).hexdigest(),
        "data": data_signature(settings.input_folder),
        "data_content": _data_digest(settings.input_folder),
        "packages": installed_versions(),
        "code": digest.hexdigest(),
    }


def fingerprint(settings: Settings, taken: dict | None = None) -> str:
    """A digest of everything a run's result depends on: `taken` (or `inputs` now), and the store and serving
    folder as they are now."""
    parts = {
        **(taken if taken is not None else inputs(settings)),
        "store": _store_state(settings.paths.metadata_path),
        "serving": serving_versions(settings.paths.serving_root / settings.model_name),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclasses.dataclass
class RecordedRun:
    """The last finished run: its fingerprint, when it finished, its summary, and where and with what it ran."""

    fingerprint: str
    finished_at: str
    report: dict
    origin: dict[str, str]
    beam_args: list[str]  # secrets redacted
    packages: dict[str, str | None]


@dataclasses.dataclass(frozen=True)
class Lookup:
    """What the record says about the run about to start."""

    recorded: RecordedRun | None  # the record, when nothing it depended on has changed since
    reason: str = ""  # why the record cannot answer, when that is worth telling the user


def _differences(recorded: dict, current: dict) -> str:
    """Each entry that differs, as "name: recorded → current", comma-separated."""
    return ", ".join(
        f"{key}: {recorded.get(key)} → {current.get(key)}"
        for key in sorted(set(recorded) | set(current))
        if recorded.get(key) != current.get(key)
    )


def lookup(settings: Settings) -> Lookup:
    """The recorded run if nothing it depended on has changed since; otherwise why not, when that is not obvious."""
    path = settings.paths.output_root / RECORD_FILE
    try:
        recorded = RecordedRun(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):  # none yet, damaged, or written by an older tfxp
        return Lookup(None)
    secret = redaction.secret_options(settings.beam_args)
    if secret:
        return Lookup(None, f"The values of {', '.join(secret)} are never recorded, so TFX's cache decides what runs.")
    taken = inputs(settings)
    if recorded.origin != taken["origin"]:
        return Lookup(
            None,
            f"{path} was written by a run of another project or folder ({_differences(recorded.origin, taken['origin'])}); "
            "it cannot answer for this one.",
        )
    if recorded.packages != taken["packages"]:
        return Lookup(
            None,
            f"Installed packages changed since the last run ({_differences(recorded.packages, taken['packages'])}).",
        )
    return Lookup(recorded if recorded.fingerprint == fingerprint(settings, taken) else None)


def unchanged_since(settings: Settings) -> RecordedRun | None:
    """The recorded run, if nothing it depended on has changed since; otherwise None."""
    return lookup(settings).recorded


def record(settings: Settings, report: dict, finished_at: str, taken: dict | None = None) -> None:
    """Writes a finished run's fingerprint and summary, atomically; `taken` is `inputs` as the run started."""
    taken = taken if taken is not None else inputs(settings)
    recorded = RecordedRun(
        fingerprint(settings, taken), finished_at, report, taken["origin"], taken["beam_args"], taken["packages"]
    )
    file_modes.write_whole(settings.paths.output_root / RECORD_FILE, json.dumps(dataclasses.asdict(recorded)))
