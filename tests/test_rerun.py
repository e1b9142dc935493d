"""What makes a rerun skip work: the run fingerprint, and Transform's cache key leaving out the network code."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline import config, nodes, rerun, runner, settings
from pipeline.wiring import PREPROCESSING_DIGEST, create_pipeline
from tests.datasets import PROJECT_ROOT

REPORT = {"blessed": True, "pushed": True}


def _settings(project: Path, **overrides) -> settings.Settings:
    return settings.resolve(config.load_project(project / config.CONFIG_FILE, overrides), project)


def test_an_unchanged_project_matches_its_record(project):
    rerun.record(_settings(project), REPORT, "2026-11-28 10:00:00")
    recorded = rerun.unchanged_since(_settings(project))
    assert recorded is not None and recorded.report == REPORT and recorded.finished_at == "2026-11-28 10:00:00"
    assert not list(project.glob("outputs/*.partial"))  # written whole, then renamed


def _add_execution(metadata: Path) -> None:
    """Stands in for another run writing to the MLMD store (same table MLMD's sqlite schema uses)."""
    metadata.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(metadata) as db:
        db.execute("CREATE TABLE IF NOT EXISTS Execution (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO Execution DEFAULT VALUES")


@pytest.mark.parametrize("change", ["data", "new_file", "schema", "setting", "store", "serving"])
def test_any_input_change_means_a_real_run(project, change):
    metadata = project / "outputs" / settings.METADATA_FILE
    _add_execution(metadata)
    rerun.record(_settings(project), REPORT, "then")
    csv = project / "data" / "penguins.csv"
    if change == "data":
        os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 1_000_000_000))
    elif change == "new_file":
        (project / "data" / "more.csv").write_text(csv.read_text())
    elif change == "schema":
        schema = project / "schema" / "schema.pbtxt"
        schema.write_text(schema.read_text() + "\n# reviewed again\n")
    elif change == "store":  # another run recorded executions in MLMD
        _add_execution(metadata)
    elif change == "serving":
        (project / "outputs" / "serving" / "penguins" / "123").mkdir(parents=True)
    overrides = {"training.train_steps": 300} if change == "setting" else {}
    assert rerun.unchanged_since(_settings(project, **overrides)) is None


def test_no_record_or_a_damaged_one_means_a_real_run(project):
    assert rerun.unchanged_since(_settings(project)) is None
    (project / "outputs").mkdir(exist_ok=True)
    (project / "outputs" / rerun.RECORD_FILE).write_text("{not json")
    assert rerun.unchanged_since(_settings(project)) is None


def _components(resolved: settings.Settings) -> dict:
    connection = metadata_store_pb2.ConnectionConfig()
    return {c.id: c for c in create_pipeline(resolved, connection).components}


def test_transform_is_keyed_on_preprocessing_code_only(project):
    resolved = _settings(project)
    components = _components(resolved)
    transform, trainer = components[nodes.TRANSFORM], components[nodes.TRAINER]
    # Transform imports preprocessing_fn by name and carries a digest of the two files it runs...
    assert transform.exec_properties["preprocessing_fn"] == "models.preprocessing.preprocessing_fn"
    assert transform.exec_properties.get("module_file") is None
    expected = settings.source_digest(settings.PREPROCESSING_MODULES)
    assert (
        len(expected) == 16 and f'"{PREPROCESSING_DIGEST}": "{expected}"' in transform.exec_properties["custom_config"]
    )
    # ...while the Trainer packages all of models/, so any model edit retrains.
    assert trainer.exec_properties["module_file"].endswith("models/training.py")


def test_the_preprocessing_digest_follows_the_source(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prep.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = settings.source_digest(("pkg.prep",))
    assert settings.source_digest(("pkg.prep",)) == before
    (package / "prep.py").write_text("X = 2\n")
    assert settings.source_digest(("pkg.prep",)) != before


def test_the_preprocessing_digest_covers_every_model_module_transform_runs():
    """A models/ module that preprocessing_fn imports but the digest leaves out would let Transform reuse stale output."""
    script = (
        "import sys, models.preprocessing; print(' '.join(sorted(m for m in sys.modules if m.startswith('models.'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(loaded) == set(settings.PREPROCESSING_MODULES)
    assert settings.PREPROCESSING_FN == "models.preprocessing.preprocessing_fn"


def test_an_edited_schema_or_exclusion_changes_what_schemagen_imports(project):
    """ImportSchemaGen is cached on its file's path, so the path must follow the schema's content."""

    def imported(resolved: settings.Settings) -> str:
        return _components(resolved)[nodes.SCHEMA_GEN].exec_properties["schema_file"]

    before = imported(_settings(project))
    assert imported(_settings(project)) == before  # unchanged content: TFX may reuse the import
    schema_file = project / "schema" / "schema.pbtxt"
    schema_file.write_text(schema_file.read_text().replace("max: 7000", "max: 8000"))
    widened = _settings(project)
    assert imported(widened) != before
    staged = runner.stage_schema(widened)
    assert str(staged) == imported(widened) and "max: 8000" in staged.read_text()

    excluding = _settings(project, **{"features.exclude": ["body_mass_g"]})
    assert imported(excluding) != imported(widened)
    (mass,) = [f for f in excluding.imported_schema.feature if f.name == "body_mass_g"]
    assert mass.lifecycle_stage == schema_pb2.DEPRECATED
    assert excluding.example_column_types["body_mass_g"] == "BYTES"  # read as text, unchecked
    assert widened.example_column_types["body_mass_g"] == "INT"
