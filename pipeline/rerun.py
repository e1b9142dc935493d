"""Tells in about a second, before TensorFlow loads, that a run would find nothing changed.

An unchanged rerun is all cache hits in TFX, but reaching that verdict means importing
TensorFlow, TFX and Beam (about 10 s). So every finished run records a fingerprint of what its
result depends on: the project settings, the schema, the data files (size and modification
time, as TFX's own input fingerprint), the pipeline and model code, the installed TFX, the
ML Metadata store and the serving folder. When the next `tfxp run` computes the same
fingerprint, TFX would reuse every execution and push nothing, so the CLI shows the recorded
summary instead. Anything different, or `--no-cache`, runs the pipeline as usual.
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
from pipeline.settings import Settings

RECORD_FILE = "last_run.json"


def _code_files() -> list[Path]:
    """Every source file of the pipeline and model packages."""
    return sorted(p for package in (pipeline, models) for p in Path(package.__file__).parent.rglob("*.py"))


def data_signature(folder: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file under a run's input folder: what tells changed data.

    `tfxp watch` compares the same signature, so a span it sees as new is one `tfxp run` sees as changed.
    """
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            stat = path.stat()
        except FileNotFoundError:  # renamed or removed since the listing, as a producer's temporary file is
            continue
        files.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return files


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


def fingerprint(settings: Settings) -> str:
    """A digest of everything a run's result depends on."""
    digest = hashlib.sha256()
    parts = {
        "project": settings.project.model_dump(mode="json", by_alias=True),
        "span": settings.span,
        "beam_args": list(settings.beam_args),
        "schema": hashlib.sha256(settings.paths.schema_file.read_bytes()).hexdigest(),
        "data": data_signature(settings.input_folder),
        "tfx": importlib.metadata.version("tfx"),
        "store": _store_state(settings.paths.metadata_path),
        "serving": serving_versions(settings.paths.serving_root / settings.model_name),
    }
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    for path in _code_files():
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclasses.dataclass
class RecordedRun:
    """The last finished run: its fingerprint, when it finished, and its summary."""

    fingerprint: str
    finished_at: str
    report: dict


def unchanged_since(settings: Settings) -> RecordedRun | None:
    """The recorded run, if nothing it depended on has changed since; otherwise None."""
    path = settings.paths.output_root / RECORD_FILE
    try:
        recorded = RecordedRun(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return recorded if recorded.fingerprint == fingerprint(settings) else None


def record(settings: Settings, report: dict, finished_at: str) -> None:
    """Writes the finished run's fingerprint and summary, atomically."""
    path = settings.paths.output_root / RECORD_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(
        json.dumps(dataclasses.asdict(RecordedRun(fingerprint(settings), finished_at, report))), encoding="utf-8"
    )
    os.replace(partial, path)
