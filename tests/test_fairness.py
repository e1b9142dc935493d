"""The fairness gate across slices: its settings, the TFMA config it becomes, TFMA judging with it, and the summary.

TFMA is run here on a table of labels and predictions (as `tfma.analyze_raw_data` runs it), no model: the same
EvalConfig, metrics, cross-slice threshold and validator as the Evaluator's, in seconds. `test_own_data.py` runs
the whole pipeline on a table with one branch far behind the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2
from rich.console import Console

from models import evaluation
from models.features import Problem
from pipeline import config, nodes, report, rerun, settings
from pipeline.wiring import create_pipeline
from tests.datasets import PROJECT_ROOT

BINARY = """
model_name = "penguins"
[label]
column = "sex"
problem = "binary"
[evaluation]
slices = ["island"]
"""
GAP = 0.1


def _settings(project: Path, text: str, **overrides) -> settings.Settings:
    (project / config.CONFIG_FILE).write_text(text)
    return settings.resolve(config.load_project(project / config.CONFIG_FILE, overrides), project)


@pytest.fixture
def binary(project) -> settings.Settings:
    """The penguins data as a binary problem (sex), sliced by island, with the fairness gate on."""
    return _settings(project, BINARY + f"max_slice_gap = {GAP}\n")


# ---------------------------------------------------------------- settings


def test_the_gate_is_off_by_default_and_carries_both_keys_when_set(project, binary):
    off = _settings(project, BINARY)
    assert (off.gate.max_slice_gap, off.gate.min_slice_size) == (None, evaluation.DEFAULT_MIN_SLICE_SIZE) == (None, 30)
    assert (binary.gate.max_slice_gap, binary.gate.min_slice_size) == (GAP, 30)
    small = _settings(project, BINARY + "max_slice_gap = 0.05\nmin_slice_size = 12\n")
    assert (small.gate.max_slice_gap, small.gate.min_slice_size) == (0.05, 12)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("max_slice_gap = -0.1\n", "[evaluation] max_slice_gap: Input should be greater than or equal to 0"),
        ('max_slice_gap = "a lot"\n', "[evaluation] max_slice_gap: Input should be a valid number"),
        ("min_slice_size = 0\n", "[evaluation] min_slice_size: Input should be greater than or equal to 1"),
        ("min_slice_size = 2.5\n", "[evaluation] min_slice_size: Input should be a valid integer"),
        ("max_slice_gaps = 0.1\n", "[evaluation] max_slice_gaps: is not a known setting"),
    ],
)
def test_bad_fairness_settings_are_one_line_naming_the_key(project, extra, message):
    with pytest.raises(config.ConfigError) as error:
        _settings(project, BINARY + extra)
    assert message in str(error.value)


def test_a_gap_without_slices_is_refused(project):
    with pytest.raises(config.ConfigError, match=r"max_slice_gap compares each slice .* names no column to slice by"):
        _settings(project, BINARY.replace('slices = ["island"]', "slices = []") + "max_slice_gap = 0.1\n")


def test_the_gap_changes_the_evaluator_cache_key_and_the_rerun_fingerprint(project, binary):
    off = _settings(project, BINARY)
    rerun.record(off, {"blessed": True}, "then")
    assert rerun.unchanged_since(off) is not None
    assert rerun.unchanged_since(binary) is None  # the project settings are in the fingerprint
    assert rerun.unchanged_since(dataclasses.replace(binary, project=off.project)) is not None

    def evaluator_config(resolved: settings.Settings) -> str:
        pipeline = create_pipeline(resolved, metadata_store_pb2.ConnectionConfig())
        (node,) = [c for c in pipeline.components if c.id == nodes.EVALUATOR]
        return node.exec_properties["eval_config"]

    with_gap, without = evaluator_config(binary), evaluator_config(off)
    assert with_gap != without  # TFX's cache key for the Evaluator includes its exec properties
    assert evaluation.SLICE_GAP_CLASS in with_gap and "slice_gap" in with_gap and "slice_gap" not in without

    def gap_metric(resolved: settings.Settings) -> dict:
        metrics = json.loads(evaluator_config(resolved))["metrics_specs"][0]["metrics"]
        (gap,) = [m for m in metrics if m["class_name"] == evaluation.SLICE_GAP_CLASS]
        return gap

    wider = gap_metric(_settings(project, BINARY + "max_slice_gap = 0.2\n"))
    assert (
        wider["cross_slice_thresholds"][0]["threshold"]["value_threshold"]["upper_bound"] == 0.2
    )  # a DoubleValue, in JSON a number
    larger = gap_metric(_settings(project, BINARY + "max_slice_gap = 0.1\nmin_slice_size = 50\n"))
    assert json.loads(larger["config"])["min_slice_size"] == 50 and larger != gap_metric(binary)


# ---------------------------------------------------------------- the TFMA config


def test_binary_problems_report_false_positive_and_negative_rates_at_the_half_cut(binary):
    config_ = evaluation.eval_config(binary.declarations, binary.gate, ["island"])
    by_class = {m.class_name: m for m in config_.metrics_specs[0].metrics}
    for name in ("FPR", "FNR"):
        assert json.loads(by_class[name].config) == {"thresholds": [0.5]}
        assert not by_class[name].per_slice_thresholds and not by_class[name].cross_slice_thresholds  # never a gate
    assert [m.name for m in evaluation.reported(Problem.BINARY)] == ["auc", "accuracy", "log_loss", "fpr", "fnr"]
    assert [m.name for m in evaluation.reported(Problem.MULTICLASS)] == ["accuracy", "log_loss"]


def test_without_a_gap_there_is_no_cross_slice_comparison(project):
    off = _settings(project, BINARY)
    config_ = evaluation.eval_config(off.declarations, off.gate, ["island"])
    assert not config_.cross_slicing_specs
    assert evaluation.SLICE_GAP_CLASS not in {m.class_name for m in config_.metrics_specs[0].metrics}


@pytest.mark.parametrize("metric, higher_is_better", [("auc", True), ("log_loss", False)])
def test_the_gap_is_a_cross_slice_threshold_on_the_slice_gap_metric(project, metric, higher_is_better):
    import tensorflow_model_analysis as tfma

    resolved = _settings(project, BINARY + f'metric = "{metric}"\nthreshold = 0.7\nmax_slice_gap = 0.1\n')
    config_ = evaluation.eval_config(resolved.declarations, resolved.gate, ["island", "year"])
    per_column = [tfma.SlicingSpec(feature_keys=["island"]), tfma.SlicingSpec(feature_keys=["year"])]
    expected_cross = tfma.CrossSlicingSpec(baseline_spec=tfma.SlicingSpec(), slicing_specs=per_column)
    assert list(config_.cross_slicing_specs) == [expected_cross]
    (gap,) = [m for m in config_.metrics_specs[0].metrics if m.class_name == evaluation.SLICE_GAP_CLASS]
    assert gap.module == evaluation.SLICE_GAP_MODULE == "models.slice_gap"
    key = evaluation.metric(Problem.BINARY, metric).key
    assert json.loads(gap.config) == {
        "metric": key,
        "higher_is_better": higher_is_better,
        "min_slice_size": 30,
        "name": evaluation.SLICE_GAP,
    }
    (threshold,) = gap.cross_slice_thresholds
    assert list(threshold.cross_slicing_specs) == [expected_cross]
    assert threshold.threshold == tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": 0.1})
    )
    # TFMA reads it back as a threshold on the slice_gap metric for that cross-slice, and the gate's own is kept.
    thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(config_.metrics_specs, eval_config=config_)
    by_name = {k.name: v for k, v in thresholds.items() if not k.is_diff}
    assert [(spec, t.upper_bound.value) for spec, t in by_name[evaluation.SLICE_GAP]] == [(expected_cross, 0.1)]
    assert key in by_name


# ---------------------------------------------------------------- the metric


def _computation(metric: str = "auc", higher_is_better: bool = True, min_slice_size: int = 30):
    from models import slice_gap

    instance = slice_gap.SliceGap(metric, higher_is_better, min_slice_size)
    (computation,) = instance.computations(model_names=["candidate", "baseline"], output_names=[""])
    return computation


def _metrics(values: dict[str, float], model: str = "candidate") -> dict:
    from tensorflow_model_analysis.metrics import metric_types

    return {metric_types.MetricKey(name=name, model_name=model): value for name, value in values.items()}


def test_the_slice_gap_is_signed_worse_positive_for_each_model_and_zero_for_small_slices():
    overall = {**_metrics({"auc": 0.85, "example_count": 400}), **_metrics({"auc": 0.80}, "baseline")}
    harbor = {
        **_metrics({"auc": 0.55, "example_count": 100}),
        **_metrics({"auc": 0.79, "example_count": 100}, "baseline"),
    }
    result = {
        (k.name, k.model_name): round(v, 6) for k, v in _computation().cross_slice_comparison(overall, harbor).items()
    }
    assert result == {("slice_gap", "candidate"): 0.3, ("slice_gap", "baseline"): 0.01}

    small = _metrics({"auc": 0.2, "example_count": 29})
    assert list(_computation().cross_slice_comparison(overall, small).values()) == [0.0]  # reported, not gated
    assert list(_computation(min_slice_size=29).cross_slice_comparison(overall, small).values()) == [
        pytest.approx(0.65)
    ]
    better = _metrics({"auc": 0.95, "example_count": 100})
    assert list(_computation().cross_slice_comparison(overall, better).values()) == [pytest.approx(-0.1)]

    # Error metrics: higher is worse.
    losses = _computation("binary_crossentropy", higher_is_better=False)
    whole = _metrics({"binary_crossentropy": 0.40, "example_count": 400})
    part = _metrics({"binary_crossentropy": 0.65, "example_count": 100})
    assert list(losses.cross_slice_comparison(whole, part).values()) == [pytest.approx(0.25)]
    # A gate metric TFMA did not compute leaves no value; TFMA's validator then fails it as "Metric not found."
    assert losses.cross_slice_comparison(whole, _metrics({"example_count": 100})) == {}


# ---------------------------------------------------------------- TFMA judging with it


def _raw_data_config(resolved: settings.Settings):
    """The Evaluator's EvalConfig for a table of labels and predictions: no model to call or preprocess with,
    and no baseline, so no change threshold."""
    config_ = evaluation.eval_config(resolved.declarations, resolved.gate, resolved.project.evaluation.slices)
    spec = config_.model_specs[0]
    spec.ClearField("signature_name")
    spec.ClearField("preprocessing_function_names")
    for metric in config_.metrics_specs[0].metrics:
        for threshold in metric.per_slice_thresholds:
            threshold.threshold.ClearField("change_threshold")
    return config_


# 160 rows on Biscoe ranked perfectly; 60 on Dream and 20 on Torgersen with no ranking at all (AUC 0.5): every
# one scored 0.6, so predicted positive at the 0.5 cut. Half of each island's rows are positive.
ISLANDS = {"Biscoe": (160, True), "Dream": (60, False), "Torgersen": (20, False)}


IN_PROCESS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
WORKERS = ("--direct_running_mode=multi_processing", "--direct_num_workers=1")  # a worker process of its own


def _evaluate(
    resolved: settings.Settings, output: Path, corrected: bool = True, beam_args: tuple[str, ...] = IN_PROCESS
) -> Path:
    """TFMA's evaluation of the islands table, on Beam with `beam_args`, as `tfma.analyze_raw_data` runs it."""
    import apache_beam as beam
    import pandas as pd
    import pyarrow as pa
    import tensorflow_model_analysis as tfma
    from tfx_bsl.arrow import table_util

    from pipeline import cross_slice_validation

    label = resolved.declarations.label.transformed_name
    rows = []
    for island, (count, ranked) in ISLANDS.items():
        for i in range(count):
            positive = i % 2
            score = (0.9 if positive else 0.1) if ranked else 0.6
            rows.append({label: float(positive), "probability": score, "island": island})
    table = table_util.CanonicalizeRecordBatch(pa.RecordBatch.from_pandas(pd.DataFrame(rows)))
    eval_config = _raw_data_config(resolved)
    writers = tfma.default_writers(str(output), eval_config=eval_config)
    options = beam.options.pipeline_options.PipelineOptions(list(beam_args))
    with cross_slice_validation.corrected() if corrected else contextlib.nullcontext():
        with beam.Pipeline(options=options) as pipeline:
            _ = (
                pipeline
                | beam.Create([table])
                | tfma.ExtractEvaluateAndWriteResults(eval_config=eval_config, output_path=str(output), writers=writers)
            )
    return output


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> tuple[settings.Settings, Path]:
    """TFMA's evaluation of the islands table with max_slice_gap 0.1: Dream falls 0.3 behind, Torgersen too but small."""
    folder = tmp_path_factory.mktemp("judged")
    project = folder / "project"
    project.mkdir()
    for part in ("schema", "data"):
        shutil.copytree(PROJECT_ROOT / part, project / part)
    resolved = _settings(project, BINARY + f"max_slice_gap = {GAP}\n")
    return resolved, _evaluate(resolved, folder / "evaluation")


def test_tfma_fails_the_large_slice_too_far_behind_and_not_the_small_one(judged):
    import tensorflow_model_analysis as tfma

    resolved, output = judged
    slices, _ = report.read_metrics(str(output), evaluation.reported_metrics(resolved.declarations.label.problem))
    assert set(slices) == {"Overall", "island=Biscoe", "island=Dream", "island=Torgersen"}  # no cross-slice rows
    assert slices["island=Dream"]["example_count"] == 60 and slices["island=Torgersen"]["example_count"] == 20
    overall, dream = slices["Overall"]["auc"], slices["island=Dream"]["auc"]
    assert dream == pytest.approx(0.5, abs=0.01) and overall - dream > GAP
    assert overall - slices["island=Torgersen"]["auc"] > GAP  # as far behind, but under min_slice_size
    assert slices["Overall"]["fpr"] == pytest.approx(40 / 120)  # Dream's and Torgersen's 40 negatives of 120
    assert slices["island=Dream"]["fpr"] == 1.0 and slices["island=Dream"]["fnr"] == 0.0
    assert slices["island=Biscoe"]["fpr"] == 0.0 and slices["island=Biscoe"]["fnr"] == 0.0

    result = tfma.load_validation_result(str(output))
    assert not result.validation_ok
    (failed,) = result.metric_validations_per_slice
    assert report.slice_name(failed.cross_slice_key.comparison_slice_key) == "island=Dream"
    (failure,) = failed.failures
    assert failure.metric_key.name == "slice_gap"
    assert failure.metric_value.double_value.value == pytest.approx(overall - dream)
    assert not result.missing_cross_slices

    reasons = report.failed_thresholds(str(output), slices, resolved)
    assert reasons == [
        f"island=Dream: auc = {dream:.4f} against {overall:.4f} overall (60 examples), "
        f"{overall - dream:.4f} worse, more than max_slice_gap = 0.1"
    ]


def test_tfma_passes_a_model_within_the_gap_but_only_with_its_cross_slice_bookkeeping_corrected(tmp_path, project):
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.evaluators import metrics_validator

    generous = _settings(project, BINARY + "max_slice_gap = 0.6\n")
    corrected = tfma.load_validation_result(str(_evaluate(generous, tmp_path / "corrected")))
    assert corrected.validation_ok, corrected
    assert not corrected.metric_validations_per_slice and not corrected.missing_cross_slices
    # TFMA 0.47 alone lists the checked cross-slice as missing and fails the model: pipeline/evaluator.py's reason
    # to exist. When a TFMA release fixes this, this assertion fails, and the correction can go.
    stock = tfma.load_validation_result(str(_evaluate(generous, tmp_path / "stock", corrected=False)))
    assert not stock.validation_ok and not stock.metric_validations_per_slice
    assert list(stock.missing_cross_slices) == list(_raw_data_config(generous).cross_slicing_specs)
    assert metrics_validator.get_missing_slices(
        corrected.validation_details.slicing_details, _raw_data_config(generous)
    )
    assert "did not import pipeline.beam_worker" in " ".join(
        report.failed_thresholds(str(tmp_path / "stock"), {}, generous)
    )


def test_tfma_validating_in_beams_worker_processes_is_corrected_by_the_evaluators_beam_plugin(tmp_path, project):
    """With Beam's workers in other processes (multi_processing here; Dataflow, Flink and Spark alike), TFMA
    validates there, where the Evaluator's own correction does not reach: the plugin it names corrects them."""
    import tensorflow_model_analysis as tfma

    from pipeline import evaluator

    generous = _settings(project, BINARY + "max_slice_gap = 0.6\n")
    with_plugin = tfma.load_validation_result(
        str(
            _evaluate(generous, tmp_path / "plugin", corrected=False, beam_args=(*WORKERS, evaluator.WORKER_PLUGIN_ARG))
        )
    )
    assert with_plugin.validation_ok, with_plugin
    assert not with_plugin.missing_cross_slices

    in_process_only = tfma.load_validation_result(
        str(_evaluate(generous, tmp_path / "in-process", corrected=True, beam_args=WORKERS))
    )
    assert not in_process_only.validation_ok
    assert list(in_process_only.missing_cross_slices) == list(_raw_data_config(generous).cross_slicing_specs)


def test_the_evaluator_names_the_worker_plugin_in_its_beam_arguments_and_nothing_else_does(project):
    import importlib.util

    from pipeline import evaluator

    pipeline = create_pipeline(
        _settings(project, BINARY + "max_slice_gap = 0.1\n"), metadata_store_pb2.ConnectionConfig()
    )
    beam_args = {
        node.id: list(node.executor_spec.beam_pipeline_args)
        for node in pipeline.components
        if hasattr(node.executor_spec, "beam_pipeline_args")
    }
    assert beam_args[nodes.EVALUATOR].count(evaluator.WORKER_PLUGIN_ARG) == 1
    assert [node for node, args in beam_args.items() if evaluator.WORKER_PLUGIN_ARG in args] == [nodes.EVALUATOR]
    assert importlib.util.find_spec(evaluator.WORKER_PLUGIN) is not None


# ---------------------------------------------------------------- what a user sees


def _summary(slices: dict, blessed: bool = True, reasons: list[str] | None = None) -> report.RunReport:
    return report.RunReport(
        slices=slices,
        changes={},
        blessed=blessed,
        reasons=reasons or [],
        pushed=False,
        serving_model_dir=None,
        trained_on=[],
        states={nodes.PUSHER: "COMPLETE"},
        servable=True,
        servability="loads in 0.1 s",
        recovered=[],
        removed_versions=[],
        served_version=None,
        pinned=False,
        model_id=1,
        awaiting_approval=False,
        reused=False,
    )


def _row(values: dict[str, float]) -> dict[str, float]:
    return {"example_count": values["n"], "auc": values["auc"], "fpr": values["fpr"], "fnr": values["fnr"]}


SLICES = {
    "Overall": _row({"n": 300, "auc": 0.85, "fpr": 0.21, "fnr": 0.14}),
    "island=Biscoe": _row({"n": 150, "auc": 0.95, "fpr": 0.05, "fnr": 0.06}),
    "island=Dream": _row({"n": 120, "auc": 0.61, "fpr": 0.48, "fnr": 0.22}),
    "island=[Torgersen]": _row({"n": 30, "auc": 0.72, "fpr": 0.30, "fnr": 0.25}),
    "island=Tiny": _row({"n": 12, "auc": 0.40, "fpr": 0.70, "fnr": 0.50}),
}


def _rendered(summary: report.RunReport, resolved: settings.Settings) -> list[str]:
    console = Console(record=True, width=200)
    report.render(summary, resolved, console)
    return [" ".join(line.replace("│", " ").split()) for line in console.export_text().splitlines()]


def test_the_summary_marks_the_worst_large_slice_and_shows_error_rates(binary):
    lines = _rendered(_summary(SLICES), binary)
    assert "slice examples auc accuracy log_loss fpr fnr note" in [
        " ".join(line.replace("┃", " ").split()) for line in lines
    ]
    assert "island=Dream 120 0.6100 nan nan 0.4800 0.2200 ◀ worst" in lines
    assert "island=Tiny 12 0.4000 nan nan 0.7000 0.5000 < 30 examples" in lines  # worse, but too small to judge
    assert "island=[Torgersen] 30 0.7200 nan nan 0.3000 0.2500" in lines  # literal brackets survive rich
    assert (
        "Fairness gate: no slice of 30 or more examples may be more than 0.1 worse than overall in auc. "
        "Worst slice: island=Dream, auc 0.6100 against 0.8500 overall (120 examples)."
    ) in " ".join(lines)


def test_without_the_gate_the_summary_still_names_the_worst_slice(project):
    off = _settings(project, BINARY)
    flat = " ".join(_rendered(_summary(SLICES), off))
    assert "No fairness gate ([evaluation] max_slice_gap is not set). Worst slice: island=Dream" in flat


def test_no_slice_is_marked_worst_when_none_is_behind_overall(project):
    off = _settings(project, BINARY)
    level = {name: {**values, "auc": 0.85} for name, values in SLICES.items()}  # penguins: every slice at 1.0
    lines = _rendered(_summary(level), off)
    assert not any("◀ worst" in line for line in lines)
    assert "No fairness gate ([evaluation] max_slice_gap is not set). No slice of 30 or more examples is behind " in (
        " ".join(lines)
    )


def test_a_slice_the_gate_stopped_is_named_with_its_figures_and_the_run_exits_3(binary):
    from pipeline import cli

    reason = (
        "island=Dream: auc = 0.6100 against 0.8500 overall (120 examples), 0.2400 worse, more than max_slice_gap = 0.1"
    )
    summary = _summary(SLICES, blessed=False, reasons=[reason])
    assert f"Not blessed: {reason}" in " ".join(_rendered(summary, binary))
    assert cli._exit_code(summary) == cli.EXIT_NOT_BLESSED == 3


def test_the_regression_gate_judges_the_highest_error_worst(project):
    text = 'model_name = "penguins"\n[label]\ncolumn = "body_mass_g"\nproblem = "regression"\n'
    text += '[evaluation]\nslices = ["island"]\nthreshold = 500.0\nmax_slice_gap = 50.0\n'
    resolved = _settings(project, text)
    slices = {
        "Overall": {"example_count": 100, "root_mean_squared_error": 300.0},
        "island=Biscoe": {"example_count": 50, "root_mean_squared_error": 420.0},
        "island=Dream": {"example_count": 40, "root_mean_squared_error": 250.0},
        "island=Torgersen": {"example_count": 10, "root_mean_squared_error": 900.0},
    }
    assert report.worst_slice(slices, resolved) == "island=Biscoe"
