"""What makes a rerun skip work: the run fingerprint, ExampleGen's cache key on its files' contents, and
Transform's cache key leaving out the network code."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.utils import io_utils, proto_utils

from models import distribution
from pipeline import config, faults, lineage, nodes, rerun, runner, settings, table_example_gen
from pipeline.wiring import PREPROCESSING_DIGEST, create_pipeline
from tests.conftest import FAST_RUN_ARGS, documented_cluster_section, run_tfxp
from tests.datasets import PROJECT_ROOT

REPORT = {"blessed": True, "pushed": True}


def _settings(project: Path, **overrides) -> settings.Settings:
    return settings.resolve(config.load_project(project / config.CONFIG_FILE, overrides), project)


def test_an_unchanged_project_matches_its_record(project):
    rerun.record(_settings(project), REPORT, "2026-11-28 10:00:00")
    recorded = rerun.unchanged_since(_settings(project))
    assert recorded is not None and recorded.report == REPORT and recorded.finished_at == "2026-11-28 10:00:00"
    assert not list(project.glob("outputs/*.partial"))  # written whole, then renamed


def swap_labels_keeping_size_and_mtime(csv: Path) -> None:
    """Swaps the labels of the first Adelie and the first Gentoo row (both six letters), then restores the mtime:
    different data with the same size and modification time, as a restore from backup or `cp -p` can give."""
    stat = csv.stat()
    lines = csv.read_text().splitlines(keepends=True)
    adelie = next(i for i, line in enumerate(lines) if line.startswith("Adelie,"))
    gentoo = next(i for i, line in enumerate(lines) if line.startswith("Gentoo,"))
    lines[adelie] = "Gentoo," + lines[adelie].removeprefix("Adelie,")
    lines[gentoo] = "Adelie," + lines[gentoo].removeprefix("Gentoo,")
    csv.write_text("".join(lines))
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert csv.stat().st_size == stat.st_size and csv.stat().st_mtime_ns == stat.st_mtime_ns


def _add_execution(metadata: Path) -> None:
    """Stands in for another run writing to the MLMD store (same table MLMD's sqlite schema uses)."""
    metadata.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(metadata) as db:
        db.execute("CREATE TABLE IF NOT EXISTS Execution (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO Execution DEFAULT VALUES")


@pytest.mark.parametrize(
    "change",
    [
        "data",
        "same_size_and_mtime_data",
        "new_file",
        "schema",
        "same_size_and_mtime_schema",
        "setting",
        "store",
        "serving",
    ],
)
def test_any_input_change_means_a_real_run(project, change):
    metadata = project / "outputs" / settings.METADATA_FILE
    _add_execution(metadata)
    rerun.record(_settings(project), REPORT, "then")
    csv = project / "data" / "penguins.csv"
    schema = project / "schema" / "schema.pbtxt"
    if change == "data":
        os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 1_000_000_000))
    elif change == "same_size_and_mtime_data":
        signature = rerun.data_signature(project / "data")
        swap_labels_keeping_size_and_mtime(csv)
        assert rerun.data_signature(project / "data") == signature  # what `tfxp watch` compares cannot tell
    elif change == "new_file":
        (project / "data" / "more.csv").write_text(csv.read_text())
    elif change == "schema":
        schema.write_text(schema.read_text() + "\n# reviewed again\n")
    elif change == "same_size_and_mtime_schema":
        stat = schema.stat()
        schema.write_text(schema.read_text().replace("max: 7000", "max: 8000"))
        os.utime(schema, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "store":  # another run recorded executions in MLMD
        _add_execution(metadata)
    elif change == "serving":
        (project / "outputs" / "serving" / "penguins" / "123").mkdir(parents=True)
    overrides = {"training.train_steps": 300} if change == "setting" else {}
    assert rerun.unchanged_since(_settings(project, **overrides)) is None


def test_a_cluster_section_changes_nothing_a_run_here_depends_on(project):
    rerun.record(_settings(project), REPORT, "then")
    project_file = project / config.CONFIG_FILE
    project_file.write_text(project_file.read_text() + "\n" + documented_cluster_section())
    assert _settings(project).project.cluster is not None
    assert rerun.unchanged_since(_settings(project)) is not None


def test_another_training_strategy_means_a_real_run_and_retrains(project):
    """The strategy changes the model (the global batch grows with the replicas), so both the unchanged-run record
    and TFX's cache key (the Trainer's custom_config) must tell it apart."""
    rerun.record(_settings(project), REPORT, "then")
    assert rerun.unchanged_since(_settings(project)) is not None
    trainers = {}
    for strategy in distribution.Strategy:
        changed = _settings(project, **{"training.strategy": strategy.value})
        if strategy is distribution.Strategy.AUTO:  # the default, written out: the recorded run's own setting
            assert rerun.unchanged_since(changed) is not None
        else:
            assert rerun.unchanged_since(changed) is None
            assert rerun.fingerprint(changed) != rerun.fingerprint(_settings(project))
        trainers[strategy] = _components(changed)[nodes.TRAINER].exec_properties["custom_config"]
    assert len(set(trainers.values())) == len(distribution.Strategy)


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


@pytest.mark.parametrize("package", rerun.PACKAGES)
def test_an_upgraded_package_means_a_real_run_and_says_which(project, monkeypatch, package):
    """TFX's own cache key holds no library version, so an upgraded TFT or TensorFlow would otherwise replay."""
    rerun.record(_settings(project), REPORT, "then")
    assert rerun.unchanged_since(_settings(project)) is not None
    installed = rerun.installed_versions()[package]
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0" if name == package else real(name))
    found = rerun.lookup(_settings(project))
    assert found.recorded is None
    assert found.reason == f"Installed packages changed since the last run ({package}: {installed} → 99.0)."


def test_installed_versions_are_recorded_and_a_missing_package_is_none(project, monkeypatch):
    rerun.record(_settings(project), REPORT, "then")
    recorded = json.loads((project / "outputs" / rerun.RECORD_FILE).read_text())
    assert recorded["packages"]["tfx"] == importlib.metadata.version("tfx")
    assert set(recorded["packages"]) == set(rerun.PACKAGES)

    def uninstalled(name):
        if name == "keras-tuner":
            raise importlib.metadata.PackageNotFoundError(name)
        return importlib.metadata.distribution(name).version

    monkeypatch.setattr(importlib.metadata, "version", uninstalled)
    assert rerun.installed_versions()["keras-tuner"] is None
    assert rerun.unchanged_since(_settings(project)) is None


def test_data_changed_during_a_run_is_not_recorded_as_read(project):
    """The record holds the inputs as the run started: a file rewritten mid-run makes the next run a real one."""
    resolved = _settings(project)
    taken = rerun.inputs(resolved)
    swap_labels_keeping_size_and_mtime(project / "data" / "penguins.csv")  # while ExampleGen reads the old rows
    rerun.record(resolved, REPORT, "then", taken)
    assert rerun.unchanged_since(_settings(project)) is None


def test_a_record_from_another_project_or_folder_never_answers(project, tmp_path):
    rerun.record(_settings(project), REPORT, "then")
    recorded = json.loads((project / "outputs" / rerun.RECORD_FILE).read_text())
    assert recorded["origin"] == {
        "project_file": str(project / config.CONFIG_FILE),
        "data": str(project / "data"),
        "output": str(project / "outputs"),
    }

    # A copy of the whole project, mtimes kept (copy2): same settings, data, store and serving folder.
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    found = rerun.lookup(_settings(copy))
    assert found.recorded is None
    assert "another project or folder" in found.reason and str(project / config.CONFIG_FILE) in found.reason

    # The output folder copied elsewhere (`cp -r outputs elsewhere`), then run into.
    shutil.copytree(project / "outputs", project / "elsewhere")
    found = rerun.lookup(_settings(project, output=str(project / "elsewhere")))
    assert found.recorded is None and f"output: {project / 'outputs'} → {project / 'elsewhere'}" in found.reason

    # The same data in another folder.
    shutil.copytree(project / "data", project / "data2")
    found = rerun.lookup(_settings(project, **{"data.path": str(project / "data2")}))
    assert found.recorded is None and f"data: {project / 'data'} → {project / 'data2'}" in found.reason

    # Another project file in the same folder.
    other = project / "other.toml"
    shutil.copy(project / config.CONFIG_FILE, other)
    elsewhere = settings.resolve(config.load_project(other), project, project_file=other)
    assert rerun.lookup(elsewhere).recorded is None
    assert rerun.unchanged_since(_settings(project)) is not None  # the original still answers for itself


def test_secret_beam_arguments_are_never_recorded_nor_replayed(project):
    secrets = ("s3cr3t-TOKEN-123", "hunter2-XYZ")
    beam_args = (f"--gcp_oauth_token={secrets[0]}", "--db_password", secrets[1], "--direct_num_workers=1")
    resolved = _settings_with(project, beam_args)
    rerun.record(resolved, REPORT, "then")
    text = (project / "outputs" / rerun.RECORD_FILE).read_text()
    assert not [s for s in secrets if s in text]
    assert "--gcp_oauth_token=***" in text and "--direct_num_workers=1" in text
    # Not even through the digest: another secret gives the same fingerprint.
    other = _settings_with(project, (f"--gcp_oauth_token=x{secrets[0]}", "--db_password", "other", beam_args[-1]))
    assert rerun.fingerprint(other) == rerun.fingerprint(resolved)
    # So the record cannot tell a changed token, which TFX's cache key holds: TFX decides.
    found = rerun.lookup(resolved)
    assert found.recorded is None
    assert found.reason.startswith("The values of --gcp_oauth_token, --db_password are never recorded")


def _settings_with(project: Path, beam_args: tuple[str, ...]) -> settings.Settings:
    return settings.resolve(config.load_project(project / config.CONFIG_FILE), project, beam_args=beam_args)


def _example_gen_fingerprint(data: Path) -> str:
    """The input fingerprint the project's ExampleGen driver resolves for `*.csv` in `data`: its cache key's part."""
    properties = {
        "input_base": str(data),
        "input_config": proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern="*.csv")])
        ),
    }
    driver = table_example_gen.ContentFingerprintDriver(None)
    return driver.resolve_exec_properties(properties, None, None)[example_gen_utils.FINGERPRINT_PROPERTY_NAME]


def test_example_gen_is_keyed_on_its_files_contents(project):
    data = project / "data"
    tfx_before = io_utils.generate_fingerprint("all", str(data / "*.csv"))
    before = _example_gen_fingerprint(data)
    assert before.startswith(tfx_before + f",{table_example_gen.CONTENT_DIGEST}:")
    assert _example_gen_fingerprint(data) == before  # unchanged files: TFX may reuse the examples
    swap_labels_keeping_size_and_mtime(data / "penguins.csv")
    assert io_utils.generate_fingerprint("all", str(data / "*.csv")) == tfx_before  # TFX alone would reuse them
    assert _example_gen_fingerprint(data) != before


@pytest.mark.pipeline
def test_data_replaced_with_the_same_size_and_mtime_re_executes_example_gen(project):
    """A real run after a same-size, same-mtime replacement: no replay, and ExampleGen runs again in TFX."""
    args = ("run", "--config", str(project / config.CONFIG_FILE), *FAST_RUN_ARGS)
    first = run_tfxp(*args)
    assert first.code == 0, first.stderr
    swap_labels_keeping_size_and_mtime(project / "data" / "penguins.csv")
    # Stopped once the Trainer has run: what follows it is not in question, and costs half a minute of CPU.
    second = run_tfxp(*args, env={faults.ENV: f"{nodes.TRAINER}:raise"})
    assert second.code == 1 and "Trainer failed: InjectedFault" in second.stderr, second.stderr
    assert "Nothing changed" not in second.stdout
    store = lineage.open_store(project / "outputs")
    before, after = (lineage.run_executions(store, run) for run in lineage.pipeline_runs(store))
    assert after[nodes.EXAMPLE_GEN].state == "COMPLETE"  # executed, not CACHED
    key = example_gen_utils.FINGERPRINT_PROPERTY_NAME
    old, new = (lineage.custom_property(run[nodes.EXAMPLE_GEN].output("examples"), key) for run in (before, after))
    # TFX's part (size and whole-second mtime) is the same; only the contents' digest tells the runs apart.
    separator = f",{table_example_gen.CONTENT_DIGEST}:"
    assert old.split(separator)[0] == new.split(separator)[0] and old != new
    assert after[nodes.TRANSFORM].state == "COMPLETE"  # and what follows works on the new examples
