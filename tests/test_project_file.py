"""The project file: parsed once into typed settings, overridden by flags, and wired into the right ExampleGen."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.components import ImportExampleGen

from models import distribution
from models.distribution import Strategy
from models.features import Problem
from pipeline import config, nodes, preflight, settings, table_example_gen
from pipeline.wiring import create_pipeline

MINIMAL = """
model_name = "penguins"
[label]
column = "species"
"""


@pytest.fixture
def project(project) -> Path:
    """The penguins project with a minimal project file."""
    (project / config.CONFIG_FILE).write_text(MINIMAL)
    return project


def _load(project: Path, **overrides) -> config.Project:
    return config.load_project(project / config.CONFIG_FILE, overrides)


def test_minimal_file_gets_sensible_defaults_and_an_inferred_problem(project):
    resolved = settings.resolve(_load(project), project)
    assert resolved.declarations.label.problem is Problem.MULTICLASS  # species has a string domain of 3
    assert resolved.gate == settings.evaluation.Gate("accuracy", 0.7, 0.02)
    assert resolved.paths.data_root == project / "data"
    assert resolved.paths.output_root == project / "outputs"
    assert resolved.span is None and resolved.spans == ()


def test_flags_override_the_file(project):
    loaded = _load(
        project, **{"training.tuner": False, "evaluation.threshold": 0.9, "output": str(project / "elsewhere")}
    )
    assert loaded.training.tuner is False
    assert loaded.evaluation.threshold == 0.9
    assert settings.resolve(loaded, project).paths.output_root == project / "elsewhere"


@pytest.mark.parametrize(
    "text, message",
    [
        (MINIMAL + "\n[training]\ntrain_step = 10\n", "[training] train_step: is not a known setting"),
        ('model_name = "penguins"\n', "label: is required"),
        (MINIMAL + "\n[split]\neval_fraction = 1.5\n", "[split] eval_fraction: Input should be less than 1"),
        (MINIMAL + '\n[data]\nformat = "xlsx"\n', "[data] format: Input should be 'csv', 'parquet' or 'tfrecord'"),
        (MINIMAL.replace('"penguins"', '"../escape"'), "model_name: String should match pattern"),
        ("model_name = \n", "is not valid TOML"),
        (MINIMAL + '\n[monitoring]\non_drift = "halt"\n', "[monitoring] on_drift: Input should be 'warn' or 'stop'"),
        (
            MINIMAL + "\n[monitoring.thresholds]\nisland = 2\n",
            "threshold for 'island' must be greater than 0 and at most 1",
        ),
        (
            MINIMAL + '\n[training]\nstrategy = "horovod"\n',
            "[training] strategy: Input should be 'auto', 'mirrored' or 'multi_worker'",
        ),
    ],
)
def test_bad_project_files_are_one_line_naming_the_setting(project, text, message):
    (project / config.CONFIG_FILE).write_text(text)
    with pytest.raises(config.ConfigError) as error:
        _load(project)
    assert message in str(error.value)
    assert str(project / config.CONFIG_FILE) in str(error.value)


@pytest.mark.parametrize(
    "extra, message",
    [
        ('\n[evaluation]\nslices = ["colony"]\n', "[evaluation] slices names column 'colony', which is not in"),
        ('\n[evaluation]\nmetric = "rmse"\n', "metric 'rmse' does not apply to multiclass problems"),
        ("\n[monitoring.thresholds]\ncolony = 0.2\n", "[monitoring.thresholds] names column 'colony', which is not in"),
        ('\n[label]\ncolumn = "body_mass_g"\nproblem = "binary"\n', None),
    ],
)
def test_settings_that_contradict_the_schema_are_refused(project, extra, message):
    text = MINIMAL + extra if "[label]" not in extra else 'model_name = "penguins"\n' + extra
    (project / config.CONFIG_FILE).write_text(text)
    with pytest.raises(config.ConfigError) as error:
        settings.resolve(_load(project), project)
    assert (message or "a binary label needs exactly 2 classes") in str(error.value)


@pytest.mark.parametrize("written, strategy", [(None, Strategy.AUTO), *((s.value, s) for s in Strategy)])
def test_the_training_strategy_reaches_the_trainer(project, written, strategy):
    if written is not None:
        (project / config.CONFIG_FILE).write_text(MINIMAL + f'\n[training]\nstrategy = "{written}"\n')
    loaded = _load(project)
    assert loaded.training.strategy is strategy
    trainer = _components(settings.resolve(loaded, project))[nodes.TRAINER]
    custom_config = json.loads(trainer.exec_properties["custom_config"])
    assert distribution.from_custom_config(custom_config) is strategy  # what run_fn reads back


def test_spans_default_to_the_newest_and_a_missing_span_is_named(project):
    data = project / "data"
    for span in (1, 3):
        (data / f"span-{span}").mkdir()
        shutil.copy(data / "penguins.csv", data / f"span-{span}" / "penguins.csv")
    resolved = settings.resolve(_load(project), project)
    assert (resolved.spans, resolved.span, resolved.input_folder) == ((1, 3), 3, data / "span-3")
    assert settings.resolve(_load(project), project, span=1).input_folder == data / "span-1"
    with pytest.raises(config.ConfigError, match=r"--span 2: there is no folder .*span-2 \(spans present: 1, 3\)"):
        settings.resolve(_load(project), project, span=2)


def _components(resolved: settings.Settings) -> dict:
    connection = metadata_store_pb2.ConnectionConfig()
    return {c.id: c for c in create_pipeline(resolved, connection).components}


def test_spans_are_read_through_range_config(project):
    data = project / "data"
    (data / "span-4").mkdir()
    shutil.copy(data / "penguins.csv", data / "span-4" / "penguins.csv")
    example_gen = _components(settings.resolve(_load(project), project))[nodes.EXAMPLE_GEN]
    assert '"pattern": "span-{SPAN}/*.csv"' in example_gen.exec_properties["input_config"]
    assert '"start_span_number": 4' in example_gen.exec_properties["range_config"]


def test_tfrecord_data_goes_through_import_example_gen(project):
    records = table_example_gen.serialized_examples(
        str(project / "data" / "penguins.csv"), "csv", settings.resolve(_load(project), project).column_types
    )
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(project / "data" / "penguins.tfrecord.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record)
    (project / "data" / "penguins.csv").unlink()
    resolved = settings.resolve(_load(project, **{"data.format": "tfrecord"}), project)
    assert preflight.check_data(resolved).rows == 344
    example_gen = _components(resolved)[nodes.EXAMPLE_GEN]
    assert isinstance(example_gen, ImportExampleGen)  # TFX's reader of tf.Example records...
    assert example_gen.driver_class is table_example_gen.ContentFingerprintDriver  # ...keyed on the files' contents
    assert '"pattern": "*.tfrecord*"' in example_gen.exec_properties["input_config"]


def test_csv_goes_through_the_arrow_executor_typed_by_the_schema(project):
    example_gen = _components(settings.resolve(_load(project), project))[nodes.EXAMPLE_GEN]
    assert example_gen.executor_spec.executor_class is table_example_gen.TableExampleGenExecutor
    assert '"body_mass_g": "INT"' in example_gen.exec_properties["custom_config"].replace('\\"', '"')


def test_beam_workers_get_this_project_unless_the_arguments_name_what_they_install(project):
    default = settings.resolve(_load(project), project).beam_args
    assert default == (*settings.DEFAULT_BEAM_ARGS, f"--setup_file={settings.SETUP_FILE}")
    assert settings.SETUP_FILE.is_file()
    own = ("--runner=DataflowRunner", "--extra_package=dist/tfxp.tar.gz")
    assert settings.resolve(_load(project), project, beam_args=own).beam_args == own


def test_drift_nodes_are_wired_only_with_a_baseline_and_take_thresholds_from_the_project(project):
    from pipeline import drift, monitoring

    resolved = settings.resolve(_load(project, **{"monitoring.thresholds": {"body_mass_g": 0.3}}), project)
    assert nodes.DISTRIBUTION_VALIDATOR not in _components(resolved)  # a first run compares with nothing
    with_baseline = dataclasses.replace(resolved, drift_baseline=monitoring.Baseline(42, 1, "span 1"))
    components = _components(with_baseline)
    resolver = components[nodes.DRIFT_BASELINE_RESOLVER]
    assert resolver.exec_properties == {"resolver_class": drift.StatisticsById, "source_uri": {"statistics_id": 42}}
    assert nodes.DRIFT_GATE in {n.id for n in components[nodes.TRANSFORM].upstream_nodes}  # it stops Transform
    comparators = {
        f.path.step[0]: f.distribution_comparator
        for f in drift.validator_config(with_baseline).default_slice_config.feature
    }
    assert set(comparators) == {f.name for f in resolved.schema.feature}  # every input and the label
    assert comparators["island"].infinity_norm.threshold == 0.1  # strings: L-infinity at the default
    assert comparators["flipper_length_mm"].jensen_shannon_divergence.threshold == 0.1  # numbers: Jensen-Shannon
    assert comparators["body_mass_g"].jensen_shannon_divergence.threshold == 0.3  # the per-column override
    rows = drift.validator_config(with_baseline).default_slice_config.num_examples_comparator
    assert (rows.min_fraction_threshold, rows.max_fraction_threshold) == (0.5, 2.0)


@pytest.mark.parametrize(
    "beam_args, in_process",
    [
        (settings.DEFAULT_BEAM_ARGS, True),
        ((), True),
        (("--runner=DirectRunner",), True),
        (("--direct_running_mode=multi_processing", "--direct_num_workers=2"), False),
        (("--runner=PortableRunner", "--job_endpoint=localhost:8099"), False),
        (("--runner=DataflowRunner", "--project=p", "--region=europe-west1"), False),
    ],
)
def test_example_gen_skips_tfxs_reshuffle_only_in_beams_in_process_runner(beam_args, in_process):
    """A distributed runner needs the reshuffle to spread the writes; one process pays for it and gains nothing."""
    assert table_example_gen.runs_in_process(list(beam_args)) is in_process
