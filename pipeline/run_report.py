"""The offline HTML report of one run: its data, model, evaluation, lineage and push, read back from ML Metadata.

One self-contained file per run (`<output>/report/<run>/index.html`): inline CSS, charts as inline SVG, no script
and no link out, so it opens from disk, from a mail attachment or a CI artifact store alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path

import jinja2
from markupsafe import Markup
from ml_metadata.metadata_store import metadata_store
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from models import evaluation
from models.features import OUTPUT_NAMES, Problem
from pipeline import (
    charts,
    guards,
    history,
    lineage,
    lineage_graph,
    model_card,
    monitoring,
    nodes,
    report,
    splits,
)
from pipeline.settings import REPORT_FILE, Settings

TEMPLATE = "run_report.html.j2"
SPLITS = ("train", "eval")  # ExampleGen's, in the order the charts draw them
TUNER_RESULTS = "tuner_results.json"  # TFX's Tuner: one {trial_id, score, hyperparameter values} per trial
REGRESSION_POINTS = 2000  # eval examples drawn in the predicted-against-actual chart
LOSS_TAG = "epoch_loss"  # what Keras's TensorBoard callback logs once per epoch
LOSS_CURVES = {"train": "training", "validation": "evaluation"}  # the callback's subfolders → the report's words


class UnknownRun(LookupError):
    """No pipeline run with that id is recorded in the store."""


@dataclasses.dataclass
class Feature:
    """One feature's row in the Data section."""

    name: str
    kind: str  # INT, FLOAT, STRING, … as TFDV typed it
    missing: float  # share of the training split's examples without a value
    distinct: int | None  # TFDV counts distinct values of strings and categorical integers only
    chart: Markup
    drift: str = ""  # "Jensen-Shannon 0.031 (train), 0.040 (eval); threshold 0.1"
    drifted: bool = False


@dataclasses.dataclass
class Data:
    """The Data section: TFDV's statistics per feature, and what validation and drift found."""

    rows: dict[str, int]  # examples per split
    features: list[Feature]
    anomalies: list[str]  # ExampleValidator's findings against the schema
    drift: list[str]  # drift thresholds crossed
    baseline: str | None  # "span 1" when a previous span's statistics were compared with


@dataclasses.dataclass
class Model:
    """The Model section: the hyperparameters training used, and its loss by epoch."""

    hyperparameters: dict[str, object]
    tuned: bool  # False: training took the search space's defaults
    trials: list[dict[str, object]]  # KerasTuner's trials, best score first
    loss: Markup | None


@dataclasses.dataclass
class Evaluation:
    """The Evaluation section: TFMA's metrics per slice, the gate, and the confusion matrix."""

    gate_metric: str
    threshold: float | None
    baseline: float | None  # the last blessed model's overall value of the gate metric
    blessed: bool
    reasons: list[str]
    metrics: dict[str, str]  # TFMA key → name, in table order
    slices: dict[str, dict[str, float]]
    gate_chart: Markup
    plot: Markup | None
    plot_title: str


@dataclasses.dataclass
class Serving:
    """The Serving section: what the Pusher did with the model."""

    pushed: bool
    version: str | None
    path: str | None
    why: str  # what happened, in a sentence


@dataclasses.dataclass
class Page:
    """Everything the template shows; a section is None when the run stopped before it."""

    project: str
    run: history.RunSummary
    exit_status: tuple[int, str] | None  # the exit code of `tfxp run` and what it means, when known
    data: Data | None
    model: Model | None
    evaluation: Evaluation | None
    lineage: Markup | list | None
    serving: Serving | None
    stopped_at: str | None  # the node that failed, for a run that stopped early
    written: str


def report_path(settings: Settings, run_id: int) -> Path:
    """Where a run's report is written."""
    return settings.paths.reports_dir / str(run_id) / REPORT_FILE


def write_report(settings: Settings, run_id: int, exit_status: tuple[int, str] | None = None) -> Path:
    """Builds the report of run `run_id` from MLMD and writes it atomically; returns its path. `exit_status` is
    the run's exit code and its meaning, which the command line owns."""
    store = lineage.open_store(settings.paths.output_root)
    page = build_page(store, run_id, settings, exit_status)
    path = report_path(settings, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A browser or a web server reading the old file never sees half of the new one. Not tempfile: its 0600
    # would make the report unreadable to a web server; open() gives the umask's mode.
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(render(page), encoding="utf-8")
    os.replace(partial, path)
    return path


def render(page: Page) -> str:
    """The page as HTML, from the package's template (autoescaped; charts are the only markup passed in)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).render(page=page)


def build_page(
    store: metadata_store.MetadataStore,
    run_id: int,
    settings: Settings,
    exit_status: tuple[int, str] | None = None,
) -> Page:
    """Reads what run `run_id` executed and produced into the report's sections; UnknownRun if no run has it."""
    summary = history.run_summary(store, run_id)
    if summary is None:
        raise UnknownRun(f"no run {run_id} in {settings.paths.output_root}")
    executions = lineage.run_executions(store, store.get_contexts_by_id([run_id])[0])
    failed = [node for node, ran in summary.nodes.items() if ran.state == "FAILED"]
    model = executions[nodes.TRAINER].output("model") if nodes.TRAINER in executions else None
    return Page(
        project=settings.model_name,
        run=summary,
        exit_status=exit_status,
        data=_data(executions, store),
        model=_model(executions),
        evaluation=_evaluation(executions, settings),
        lineage=None if model is None else _lineage(store, model.id),
        serving=_serving(executions),
        stopped_at=failed[0] if failed else None,
        written=f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}",
    )


def _read_statistics(artifact, split: str) -> statistics_pb2.DatasetFeatureStatistics | None:
    path = splits.split_file(artifact.uri, split, splits.STATISTICS_FILE)
    if not path.is_file():
        return None
    found = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
    return found.datasets[0] if found.datasets else None


def _common(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    stats = feature.num_stats if feature.HasField("num_stats") else feature.string_stats
    return stats.common_stats


def _histogram(feature: statistics_pb2.FeatureNameStatistics) -> list[tuple[float, float, float]]:
    """The STANDARD (equal-width) histogram as (low, high, share) buckets."""
    for histogram in feature.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.STANDARD:
            total = sum(b.sample_count for b in histogram.buckets) or 1.0
            return [(b.low_value, b.high_value, b.sample_count / total) for b in histogram.buckets]
    return []


def _shares(feature: statistics_pb2.FeatureNameStatistics) -> dict[str, float]:
    """Each of the commonest values' share of the examples that have one."""
    total = feature.string_stats.common_stats.num_non_missing or 1
    return {v.value: v.frequency / total for v in feature.string_stats.top_values}


def _data(executions: dict[str, lineage.NodeExecution], store) -> Data | None:
    """Per feature: type, missing share, distinct values and distribution, from StatisticsGen's TFDV statistics."""
    if nodes.STATISTICS_GEN not in executions:
        return None
    statistics = executions[nodes.STATISTICS_GEN].output("statistics")
    datasets = {split: _read_statistics(statistics, split) for split in SPLITS}
    datasets = {split: d for split, d in datasets.items() if d is not None}
    validator = executions.get(nodes.DISTRIBUTION_VALIDATOR)
    baseline_artifact = (validator.inputs.get("baseline_statistics") or [None])[0] if validator else None
    baseline_name = None
    if baseline_artifact is not None:
        baseline_name = f"span {monitoring.statistics_span(store, baseline_artifact)}"
        previous = _read_statistics(baseline_artifact, monitoring.TRAINING_SPLIT)
        if previous is not None:
            datasets[f"{baseline_name} (train)"] = previous
    by_feature = {
        label: {".".join(f.path.step) or f.name: f for f in dataset.features} for label, dataset in datasets.items()
    }
    comparisons, drift = {}, []
    anomalies = validator.output("anomalies") if validator else None
    if anomalies is not None:
        comparisons = monitoring.read_comparisons(anomalies.uri, anomalies.properties["split_names"].string_value)
        drift = monitoring.summarize(monitoring.drift_findings(comparisons))
    measured: dict[str, list[monitoring.Finding]] = {}
    for split, found in comparisons.items():
        for finding in monitoring.distances(found, split):
            measured.setdefault(finding.feature, []).append(finding)
    features = []
    train = by_feature.get("train", {})
    for name in sorted(train):
        feature = train[name]
        common = _common(feature)
        rows = datasets["train"].num_examples or 1
        present = {label: found[name] for label, found in by_feature.items() if name in found}
        if feature.HasField("string_stats"):
            chart = charts.bars(f"feature-{name}", {label: _shares(f) for label, f in present.items()})
            distinct = feature.string_stats.unique
        else:
            chart = charts.histogram(f"feature-{name}", {label: _histogram(f) for label, f in present.items()})
            distinct = None
        findings = measured.get(name, [])
        features.append(
            Feature(
                name=name,
                kind=statistics_pb2.FeatureNameStatistics.Type.Name(feature.type),
                missing=common.num_missing / rows,
                distinct=distinct,
                chart=Markup(chart),
                # summarize's line less the feature's name, which the row already shows
                drift=monitoring.summarize(findings)[0].split(": ", 1)[1] if findings else "",
                drifted=any(f.value > f.threshold for f in findings),
            )
        )
    return Data(
        rows={label: d.num_examples for label, d in datasets.items()},
        features=features,
        anomalies=_schema_anomalies(executions.get(nodes.EXAMPLE_VALIDATOR)),
        drift=drift,
        baseline=baseline_name,
    )


def _schema_anomalies(validator: lineage.NodeExecution | None) -> list[str]:
    """ExampleValidator's findings, one line each."""
    artifact = validator.output("anomalies") if validator is not None else None
    if artifact is None:
        return []
    found = {}
    for split in json.loads(artifact.properties["split_names"].string_value or "[]"):
        path = splits.split_file(artifact.uri, split, splits.ANOMALIES_FILE)
        if path.is_file():
            found[split] = anomalies_pb2.Anomalies.FromString(path.read_bytes())
    return guards.describe_anomalies(found)


def _model(executions: dict[str, lineage.NodeExecution]) -> Model | None:
    """The hyperparameters training used, the Tuner's trials, and the loss curves of this run's Trainer."""
    if nodes.TRAINER not in executions:
        return None
    trainer = executions[nodes.TRAINER]
    chosen = (trainer.inputs.get("hyperparameters") or [None])[0]
    trials = []
    if chosen is not None:
        values = model_card.best_hyperparameters(chosen.uri)
        tuner = executions.get(nodes.TUNER)
        results = tuner.output("tuner_results") if tuner is not None else None
        if results is not None and (Path(results.uri) / TUNER_RESULTS).is_file():
            trials = json.loads((Path(results.uri) / TUNER_RESULTS).read_text())
            trials.sort(key=lambda t: -(t.get("score") or float("-inf")))  # KerasTuner maximises the score
    else:
        from models import hyperparameters

        values = hyperparameters.search_space().values
    run = trainer.output("model_run")
    curves = _loss_curves(Path(run.uri)) if run is not None else {}
    loss = Markup(charts.curves("loss", curves, "loss")) if curves else None
    return Model(hyperparameters=values, tuned=chosen is not None, trials=trials, loss=loss)


def _loss_curves(model_run: Path) -> dict[str, list[tuple[int, float]]]:
    """Keras's epoch loss per subfolder of the Trainer's TensorBoard logs."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    curves = {}
    for folder, label in LOSS_CURVES.items():
        if not (model_run / folder).is_dir():
            continue
        events = event_accumulator.EventAccumulator(
            str(model_run / folder), size_guidance={event_accumulator.TENSORS: 0}
        )
        events.Reload()
        if LOSS_TAG in events.Tags().get("tensors", []):
            curves[label] = [
                (e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(LOSS_TAG)
            ]
    return curves


def _gate_threshold(evaluator: lineage.NodeExecution, gate: evaluation.Metric) -> float | None:
    """The gate's value bound as this run's Evaluator was configured (the project file may have changed since)."""
    config = evaluator.execution.custom_properties.get("eval_config")
    if config is None:
        return None
    for spec in json.loads(config.string_value).get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            if metric.get("class_name") != gate.class_name:
                continue
            for per_slice in metric.get("per_slice_thresholds", []):
                bound = per_slice.get("threshold", {}).get("value_threshold", {})
                for side in ("lower_bound", "upper_bound"):
                    if side in bound:
                        return float(bound[side])
    return None


def _evaluation(executions: dict[str, lineage.NodeExecution], settings: Settings) -> Evaluation | None:
    """The gate metric per slice against its threshold and the baseline, every metric, and TFMA's plot."""
    evaluator = executions.get(nodes.EVALUATOR)
    artifact = evaluator.output("evaluation") if evaluator is not None else None
    if artifact is None:  # not run, or failed before TFX recorded an evaluation
        return None
    problem = settings.declarations.label.problem
    reported = evaluation.reported_metrics(problem)
    slices, changes = report.read_metrics(artifact.uri, reported)
    slices = dict(sorted(slices.items(), key=lambda item: (item[0] != "Overall", item[0])))
    gate = evaluation.metric(problem, settings.gate.metric)
    values = {name: found[gate.key] for name, found in slices.items() if gate.key in found}
    overall = slices.get("Overall", {}).get(gate.key)
    baseline = overall - changes[gate.key] if overall is not None and gate.key in changes else None
    threshold = _gate_threshold(evaluator, gate)
    blessed = lineage.custom_property(evaluator.output("blessing"), "blessed") == 1
    if problem is Problem.REGRESSION:
        plot, title = _predicted_against_actual(evaluator, settings), "Predicted against actual, eval split"
    else:
        plot, title = _plot(artifact.uri, settings)
    return Evaluation(
        gate_metric=gate.name,
        threshold=threshold,
        baseline=baseline,
        blessed=blessed,
        reasons=[] if blessed else report.failed_thresholds(artifact.uri, slices, settings),
        metrics=reported,
        slices=slices,
        gate_chart=Markup(charts.slice_bars("gate", values, gate.name, threshold, baseline)),
        plot=plot,
        plot_title=title,
    )


def _plot(evaluation_uri: str, settings: Settings) -> tuple[Markup | None, str]:
    """TFMA's confusion matrix of the overall eval split, drawn, and its title."""
    import tensorflow_model_analysis as tfma

    classes = settings.declarations.label.classes
    for plots in tfma.load_plots(evaluation_uri):
        if report.slice_name(plots.slice_key) != "Overall":
            continue
        for kv in plots.plot_keys_and_values:
            value = kv.value
            if value.HasField("multi_class_confusion_matrix_at_thresholds"):
                # One matrix, at the default threshold 0: each example counted at its most probable class.
                entries = value.multi_class_confusion_matrix_at_thresholds.matrices[0].entries
                size = len(classes) or 1 + max(max(e.actual_class_id, e.predicted_class_id) for e in entries)
                counts = [[0.0] * size for _ in range(size)]
                for entry in entries:
                    if 0 <= entry.actual_class_id < size and 0 <= entry.predicted_class_id < size:
                        counts[entry.actual_class_id][entry.predicted_class_id] += entry.num_weighted_examples
                labels = list(classes) or [str(i) for i in range(size)]
                return Markup(charts.matrix("confusion", counts, labels)), "Confusion matrix, eval split"
            if value.HasField("confusion_matrix_at_thresholds"):
                cut = min(
                    value.confusion_matrix_at_thresholds.matrices,
                    key=lambda m: abs(m.threshold - evaluation.ERROR_RATE_CUT),
                )
                counts = [[cut.true_negatives, cut.false_positives], [cut.false_negatives, cut.true_positives]]
                labels = list(classes) or ["negative", "positive"]
                title = f"Confusion matrix at {cut.threshold:g}, eval split"
                return Markup(charts.matrix("confusion", counts, labels)), title
    return None, ""


def _predicted_against_actual(evaluator: lineage.NodeExecution, settings: Settings) -> Markup | None:
    """The candidate model's prediction against the label on up to REGRESSION_POINTS eval examples: TFMA keeps no
    per-example predictions, so the model is called as TF Serving would, through `serving_default`."""
    import tensorflow as tf

    [examples], [model] = evaluator.inputs.get("examples", [None]), evaluator.inputs.get("model", [None])
    if examples is None or model is None:
        return None
    files = sorted(tf.io.gfile.glob(str(splits.split_file(examples.uri, "eval", "*"))))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(REGRESSION_POINTS)]
    label = settings.declarations.label.name
    actual, kept = [], []
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature.get(label)
        values = (feature.float_list.value or feature.int64_list.value) if feature is not None else []
        if values:
            actual.append(float(values[0]))
            kept.append(record)
    if not kept:
        return None
    from tfx.utils import path_utils

    serve = tf.saved_model.load(path_utils.serving_model_path(model.uri)).signatures["serving_default"]
    outputs = serve(tf.constant(kept))  # the signature parses the features and ignores the label
    predicted = outputs[OUTPUT_NAMES[Problem.REGRESSION]].numpy().reshape(-1).tolist()
    return Markup(charts.predicted_against_actual("predicted", predicted, actual, label))


def _lineage(store, model_id: int) -> Markup | list[lineage_graph.Branch]:
    """The model's upstream graph as SVG, or, without Graphviz, the same facts as a nested list."""
    graph = lineage.upstream_graph(store, model_id)
    svg = lineage_graph.to_svg(graph)
    return Markup(svg) if svg is not None else [lineage_graph.branches(graph)]


SERVING = {  # what the Serving section says for each push decision (history.push_outcome)
    "already serving": "The same files already served as the newest version; nothing was copied.",
    "pushed": "Blessed and servable: pushed, with TF Serving warmup requests.",
    "awaiting approval": "Blessed and servable, held for a person to approve (tfxp pending).",
    "not blessed": "Not pushed: the model was not blessed (see Evaluation).",
}


def _serving(executions: dict[str, lineage.NodeExecution]) -> Serving | None:
    """What the Pusher did with the model, or why it did nothing."""
    pusher = executions.get(nodes.PUSHER)
    pushed_model = pusher.output("pushed_model") if pusher is not None else None
    if pushed_model is None:
        return None
    decided = history.push_outcome(executions)
    pushed = decided in ("pushed", "already serving")
    if decided == "not servable":
        verdict = lineage.custom_property(executions[nodes.SERVABILITY_CHECK].output("blessing"), "verdict")
        why = f"Not pushed: not servable; it {verdict}."
    else:
        why = SERVING.get(decided, "Not pushed.")
    version = lineage.custom_property(pushed_model, "pushed_version")
    return Serving(
        pushed=pushed,
        version=str(version) if pushed and version else None,
        path=lineage.custom_property(pushed_model, "pushed_destination") if pushed else None,
        why=why,
    )
