"""Artifacts on disk against what ML Metadata says of them, checked before a run reuses any of them.

TFX reuses a cached execution whose output folders exist, whatever is inside them, and a resolver
hands any LIVE artifact to the next component. So every run ends by noting the size of each file
of every LIVE artifact (`artifact_files.json` in the output folder), and the next run starts by
comparing: an artifact whose folder is gone, or whose files are missing or of another size (a
truncated TFRecord), is damaged. It is marked DELETED in ML Metadata, together with an
`ArtifactCheck` execution that says why, so TFX re-executes the component that made it and no
resolver picks it again.

Reading uses sqlite directly, so an unchanged rerun stays fast; only marking opens ML Metadata.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sqlite3
from pathlib import Path

from pipeline import file_modes
from pipeline.settings import METADATA_FILE

FILES_RECORD = "artifact_files.json"
CHECK = "ArtifactCheck"  # execution type: one per run that found damage, the damaged artifacts as inputs
_LIVE = 2  # metadata_store_pb2.Artifact.LIVE, as the Artifact table stores it


class StoreError(RuntimeError):
    """The output folder's metadata.sqlite cannot be read as an ML Metadata store."""


@dataclasses.dataclass(frozen=True)
class Damage:
    """One LIVE artifact whose files are not what its producer wrote."""

    artifact_id: int
    type_name: str
    uri: str
    reason: str

    def __str__(self) -> str:
        return f"{self.type_name} #{self.artifact_id} ({self.uri}): {self.reason}"


def check_store(output_root: Path) -> None:
    """Raises StoreError unless the output folder's store (when there is one) is a readable sqlite database."""
    path = output_root / METADATA_FILE
    if not path.exists():
        return
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise StoreError(
            f"{path} is not an ML Metadata store ({error}). Move it aside (for example to {path.name}.broken) to "
            "start a new store; the next run then re-executes every component."
        ) from None


def _live_artifacts(output_root: Path) -> list[tuple[int, str, str]]:
    """(id, type name, uri) of every LIVE artifact with a local path, read straight from the sqlite store."""
    path = output_root / METADATA_FILE
    if not path.is_file():
        return []
    check_store(output_root)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT a.id, t.name, a.uri FROM Artifact a JOIN Type t ON t.id = a.type_id WHERE a.state = ?", (_LIVE,)
        ).fetchall()
    except sqlite3.Error:  # a store with no artifact table yet
        return []
    finally:
        connection.close()
    return [(id_, name, uri) for id_, name, uri in rows if uri and os.path.isabs(uri)]


def _files(uri: str) -> dict[str, int]:
    """Size of every file of an artifact (a folder, or a single file), by path relative to its uri."""
    root = Path(uri)
    if root.is_file():
        return {"": root.stat().st_size}
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _read_record(output_root: Path) -> dict[str, dict]:
    try:
        record = json.loads((output_root / FILES_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: nothing to compare with, so nothing is flagged
        return {}
    return record if isinstance(record, dict) else {}


def damaged(output_root: Path) -> list[Damage]:
    """Every LIVE artifact whose folder is gone, or whose files differ from those noted when it was made."""
    record = _read_record(output_root)
    found = []
    for artifact_id, type_name, uri in _live_artifacts(output_root):
        if not os.path.exists(uri):
            found.append(Damage(artifact_id, type_name, uri, "its folder is gone"))
            continue
        noted = record.get(str(artifact_id))
        if not isinstance(noted, dict) or noted.get("uri") != uri:
            continue
        now = _files(uri)
        for name, size in sorted(noted.get("files", {}).items()):
            if name not in now:
                found.append(Damage(artifact_id, type_name, uri, f"{name or 'its file'} is missing"))
                break
            if now[name] != size:
                found.append(
                    Damage(
                        artifact_id,
                        type_name,
                        uri,
                        f"{name or 'its file'} is {now[name]:,} bytes, {size:,} when written",
                    )
                )
                break
    return found


def note_files(output_root: Path) -> None:
    """Notes the files of every LIVE artifact not noted yet, and forgets the others; written whole or not at all."""
    record = _read_record(output_root)
    live = {str(artifact_id): uri for artifact_id, _, uri in _live_artifacts(output_root)}
    kept = {key: value for key, value in record.items() if key in live}
    for key, uri in live.items():
        if key not in kept and os.path.exists(uri):
            kept[key] = {"uri": uri, "files": _files(uri)}
    file_modes.write_whole(output_root / FILES_RECORD, json.dumps(kept, sort_keys=True))


def mark_deleted(store, pipeline_name: str, damages: list[Damage]) -> None:
    """Marks the damaged artifacts DELETED and records why, in one ML Metadata transaction."""
    from ml_metadata.proto import metadata_store_pb2

    from pipeline import registry

    kind = registry.execution_type(store, CHECK, (), ("reasons", "user"))
    execution = metadata_store_pb2.Execution(type_id=kind, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    execution.properties["reasons"].string_value = "\n".join(map(str, damages))
    execution.properties["user"].string_value = getpass.getuser()
    artifacts = store.get_artifacts_by_id([d.artifact_id for d in damages])
    for artifact in artifacts:
        artifact.state = metadata_store_pb2.Artifact.DELETED
    links = [(a, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)) for a in artifacts]
    store.put_execution(execution, links, [registry.pipeline_context(store, pipeline_name)])
