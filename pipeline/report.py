"""The end-of-run summary: metrics per slice, the blessing and why, the push, and the lineage."""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models import evaluation
from pipeline import lineage, monitoring, nodes, registry, serving
from pipeline.settings import Settings


@dataclasses.dataclass
class RunReport:
    """What one run decided, read back from ML Metadata."""

    slices: dict[str, dict[str, float]]  # slice name → metric → value (candidate model)
    changes: dict[str, float]  # metric → change against the baseline, overall slice
    blessed: bool
    reasons: list[str]  # why not blessed
    pushed: bool
    serving_model_dir: str | None  # the version folder now holding this run's model
    trained_on: list[str]  # "Type: uri" lines tracing the model back to its data
    states: dict[str, str]  # node id → COMPLETE / CACHED
    servable: bool  # the servability check's verdict (pipeline/servability.py)
    servability: str  # its figures, or where the model failed
    recovered: list[str]  # unfinished pushes of a crashed run, removed by this one
    removed_versions: list[str]  # versions retention deleted after this push
    served_version: int | None  # what TF Serving serves now, per models.config
    pinned: bool  # whether a rollback pinned it
    model_id: int  # the Trainer's Model artifact in MLMD: what `tfxp approve` names
    awaiting_approval: bool  # [delivery] approval = "manual" held a blessed, servable model
    reused: bool  # the push found these exact files already serving as the newest version
    drift_baseline: str | None = None  # what the data was compared with for drift; None when nothing was
    drift: list[str] = dataclasses.field(default_factory=list)  # thresholds crossed, one line each
    drift_largest: str = ""  # the largest distance relative to its threshold, when none was crossed

    def replayed(self) -> RunReport:
        """The same summary for a rerun that reused every execution."""
        return dataclasses.replace(
            self, states={node: "CACHED" for node in self.states}, recovered=[], removed_versions=[]
        )


def slice_name(slice_key) -> str:
    """'Overall' or 'feature=value' for a TFMA SliceKey proto."""
    parts = []
    for key in slice_key.single_slice_keys:
        value = getattr(key, key.WhichOneof("kind"))
        parts.append(f"{key.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts) or "Overall"


def read_metrics(evaluation_uri: str, reported: dict[str, str]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Candidate metrics per slice, and overall changes against the baseline, from TFMA's output."""
    import tensorflow_model_analysis as tfma  # seconds to import; a replayed summary does not need it

    slices: dict[str, dict[str, float]] = {}
    changes: dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.HasField("cross_slice_key"):
            continue  # a slice compared with the overall one (the fairness gate); its failures say what matters
        name = slice_name(metrics.slice_key)
        for kv in metrics.metric_keys_and_values:
            key = kv.key
            if key.name not in reported or key.model_name == "baseline":
                continue
            if key.is_diff:
                if name == "Overall":
                    changes[key.name] = kv.value.double_value.value
            else:
                slices.setdefault(name, {})[key.name] = kv.value.double_value.value
    return slices, changes


METRIC_NAMES = {m.key: m.name for metrics in evaluation.METRICS.values() for m in metrics}  # TFMA key → project name


def failed_thresholds(evaluation_uri: str, slices: dict[str, dict[str, float]], settings: Settings) -> list[str]:
    """One line per metric threshold the candidate missed, from TFMA's validation result; a slice too far behind
    the overall value is named with its value, the overall value and its size, read from `slices`."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    reasons = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            if per_slice.HasField("cross_slice_key"):
                reasons.append(_slice_gap_reason(per_slice.cross_slice_key, failure, slices, settings))
                continue
            key = failure.metric_key
            name = METRIC_NAMES.get(key.name, key.name)
            what = f"change in {name} vs baseline" if key.is_diff else name
            reasons.append(
                f"{slice_name(per_slice.slice_key)}: {what} = {failure.metric_value.double_value.value:.4f} "
                f"misses {_threshold_text(failure.metric_threshold)}"
            )
    if result.missing_cross_slices:
        reasons.append(
            "TFMA recorded no check of the slices against the overall value (max_slice_gap): the Beam workers "
            "that ran TFMA's validation did not import pipeline.beam_worker, which corrects it (Beam's "
            "--beam_plugin, imported by sdk_worker_main); see pipeline/cross_slice_validation.py"
        )
    if not reasons and not result.validation_ok:
        reasons.append("TFMA validation failed; see the Evaluator's validations file")
    return reasons


def _slice_gap_reason(cross_slice_key, failure, slices: dict[str, dict[str, float]], settings: Settings) -> str:
    """'sex=male: auc = 0.61 against 0.83 overall (120 examples), ...' for a slice the fairness gate stopped."""
    gate = settings.gate
    key = evaluation.metric(settings.declarations.label.problem, gate.metric).key
    name = slice_name(cross_slice_key.comparison_slice_key)
    values, overall = slices.get(name, {}), slices.get("Overall", {})
    if failure.message:  # TFMA could not compare: "Metric not found."
        return f"{name}: no {gate.metric} to compare with the overall value ({failure.message.strip()})"
    count = values.get(evaluation.EXAMPLE_COUNT, float("nan"))
    return (
        f"{name}: {gate.metric} = {values.get(key, float('nan')):.4f} against {overall.get(key, float('nan')):.4f} "
        f"overall ({count:.0f} examples), {failure.metric_value.double_value.value:.4f} worse, more than "
        f"max_slice_gap = {gate.max_slice_gap:g}"
    )


def worst_slice(slices: dict[str, dict[str, float]], settings: Settings) -> str | None:
    """The slice of at least `min_slice_size` examples furthest behind the overall value of the gate metric, or
    None when none is behind it."""
    gate = evaluation.metric(settings.declarations.label.problem, settings.gate.metric)
    return evaluation.worst_slice(
        slices, gate.key, evaluation.EXAMPLE_COUNT, gate.higher_is_better, settings.gate.min_slice_size
    )


def _threshold_text(threshold) -> str:
    """'≥ 0.8' style text for a TFMA MetricThreshold."""
    if threshold.HasField("change_threshold"):
        return f"a change of at least {threshold.change_threshold.absolute.value:g}"
    bound = threshold.value_threshold
    parts = []
    if bound.HasField("lower_bound"):
        parts.append(f"≥ {bound.lower_bound.value:g}")
    if bound.HasField("upper_bound"):
        parts.append(f"≤ {bound.upper_bound.value:g}")
    return " and ".join(parts)


def build_report(settings: Settings) -> RunReport:
    """Reads the newest run's executions and artifacts from MLMD into a RunReport."""
    store = lineage.open_store(settings.paths.output_root)
    executions = lineage.latest_run_executions(store)
    evaluation_artifact = executions[nodes.EVALUATOR].output("evaluation")
    blessing = executions[nodes.EVALUATOR].output("blessing")
    pushed_model = executions[nodes.PUSHER].output("pushed_model")
    model = executions[nodes.TRAINER].output("model")
    slices, changes = read_metrics(
        evaluation_artifact.uri, evaluation.reported_metrics(settings.declarations.label.problem)
    )
    blessed = lineage.custom_property(blessing, "blessed") == 1
    pushed = lineage.custom_property(pushed_model, "pushed") == 1
    infra_blessing = executions[nodes.SERVABILITY_CHECK].output("blessing")
    gate_key = evaluation.metric(settings.declarations.label.problem, settings.gate.metric).key
    if gate_key in slices.get("Overall", {}):  # for the registry, which lists versions without loading TFMA
        registry.record_gate(
            store, pushed_model.id, settings.gate.metric, slices["Overall"][gate_key], changes.get(gate_key)
        )
    folder = serving.ServingFolder(settings.paths.serving_root, settings.model_name)
    trained_on = [
        f"{a.type}: {a.uri}" + (f" (span {span})" if (span := lineage.custom_property(a, "span")) is not None else "")
        for a in lineage.upstream_artifacts(store, model.id)
        if a.type in ("Examples", "Schema", "HyperParameters", "TransformGraph")
    ]
    drift, largest = _drift(executions.get(nodes.DISTRIBUTION_VALIDATOR))
    code = executions[nodes.TRAINER].execution.custom_properties.get("module_path")
    if code is not None:
        trained_on.append(f"Code: {code.string_value}")
    return RunReport(
        slices=slices,
        changes=changes,
        blessed=blessed,
        reasons=[] if blessed else failed_thresholds(evaluation_artifact.uri, slices, settings),
        pushed=pushed,
        serving_model_dir=lineage.custom_property(pushed_model, "pushed_destination") if pushed else None,
        trained_on=sorted(trained_on),
        states={node: ex.state for node, ex in executions.items()},
        servable=lineage.custom_property(infra_blessing, "blessed") == 1,
        servability=lineage.custom_property(infra_blessing, "verdict") or "",
        recovered=[n for n in (lineage.custom_property(pushed_model, "recovered") or "").split(",") if n],
        removed_versions=[v for v in (lineage.custom_property(pushed_model, "removed_versions") or "").split(",") if v],
        served_version=folder.served(),
        pinned=folder.pinned() is not None,
        model_id=model.id,
        awaiting_approval=lineage.custom_property(pushed_model, "awaiting_approval") == 1,
        reused=lineage.custom_property(pushed_model, "reused") == 1,
        drift_baseline=settings.drift_baseline.why if settings.drift_baseline else None,
        drift=drift,
        drift_largest=largest,
    )


def _drift(validator: lineage.NodeExecution | None) -> tuple[list[str], str]:
    """The DistributionValidator's crossed thresholds, and its largest distance relative to the threshold."""
    anomalies = validator.output("anomalies") if validator is not None else None
    if anomalies is None:
        return [], ""
    comparisons = monitoring.read_comparisons(anomalies.uri, anomalies.properties["split_names"].string_value)
    measured = [f for split, found in comparisons.items() for f in monitoring.distances(found, split)]
    top = max(measured, key=lambda f: f.value / f.threshold, default=None)
    largest = f"{top.feature} ({top.split}), {top.distance} {top.value:.3f} of {top.threshold:g}" if top else ""
    return monitoring.summarize(monitoring.drift_findings(comparisons)), largest


MANUAL_APPROVAL = escape('[delivery] approval = "manual"')  # literal brackets, not rich markup


def _note(slice_name: str, values: dict[str, float], worst: str | None, settings: Settings) -> str:
    """The table's last column: the worst slice, and the slices too small for the fairness gate to judge."""
    if slice_name == "Overall":
        return ""
    if slice_name == worst:
        return "◀ worst"
    if values.get(evaluation.EXAMPLE_COUNT, 0) < settings.gate.min_slice_size:
        return f"< {settings.gate.min_slice_size} examples"
    return ""


def _fairness_line(slices: dict[str, dict[str, float]], worst: str | None, settings: Settings) -> str:
    """What the fairness gate asks, and where the worst slice stands (plain text: the caller escapes it)."""
    gate = settings.gate
    key = evaluation.metric(settings.declarations.label.problem, gate.metric).key
    if gate.max_slice_gap is None:
        rule = "No fairness gate ([evaluation] max_slice_gap is not set)."
    else:
        rule = (
            f"Fairness gate: no slice of {gate.min_slice_size} or more examples may be more than "
            f"{gate.max_slice_gap:g} worse than overall in {gate.metric}."
        )
    if worst is None:
        return f"{rule} No slice of {gate.min_slice_size} or more examples is behind overall in {gate.metric}."
    values, overall = slices[worst], slices.get("Overall", {})
    return (
        f"{rule} Worst slice: {worst}, {gate.metric} {values[key]:.4f} against {overall.get(key, float('nan')):.4f} "
        f"overall ({values.get(evaluation.EXAMPLE_COUNT, 0):.0f} examples)."
    )


def _render_drift(report: RunReport, settings: Settings, console: Console) -> None:
    """What this run's data was compared with, and what moved past its threshold."""
    if report.drift_baseline is None:
        return
    against = escape(report.drift_baseline)
    if not report.drift:
        console.print(f"No drift against {against}; closest to its threshold: {escape(report.drift_largest)}.")
        return
    console.print(
        f"[bold yellow]Drift[/] against {against}: {len(report.drift)} past {escape('[monitoring]')} thresholds "
        f'(on_drift = "{settings.project.monitoring.on_drift}", so the run went on):'
    )
    for line in report.drift:
        console.print(f"  {escape(line)}")


def render(report: RunReport, settings: Settings, console: Console) -> None:
    """Prints the summary a user reads at the end of `tfxp run`."""
    _render_drift(report, settings, console)
    reported = evaluation.reported_metrics(settings.declarations.label.problem)
    worst = worst_slice(report.slices, settings)
    table = Table(title="Evaluation of the candidate model (eval split)", title_justify="left")
    table.add_column("slice")
    for name in reported.values():
        table.add_column(name, justify="right")
    sliced = len(report.slices) > 1
    if sliced:
        table.add_column("note")
    for slice_name in sorted(report.slices, key=lambda n: (n != "Overall", n)):
        values = report.slices[slice_name]
        cells = [
            f"{values[key]:.0f}" if key == evaluation.EXAMPLE_COUNT else f"{values.get(key, float('nan')):.4f}"
            for key in reported
        ]
        if sliced:
            cells.append(_note(slice_name, values, worst, settings))
        table.add_row(escape(slice_name), *cells)
    console.print(table)
    if sliced:
        console.print(escape(_fairness_line(report.slices, worst, settings)))
    if report.changes:
        deltas = ", ".join(
            f"{reported[k]} {v:+.4f}" for k, v in report.changes.items() if k != evaluation.EXAMPLE_COUNT
        )
        console.print(f"Against the last blessed model: {deltas}")
    else:
        gate = settings.gate
        console.print(f"No earlier blessed model: this candidate was judged on {gate.metric} alone.")

    if report.blessed:
        console.print("[bold green]Blessed[/]: the model meets every threshold.")
    else:
        console.print("[bold red]Not blessed[/]: " + escape("; ".join(report.reasons)))
    if report.servable:
        console.print(f"[bold green]Servable[/] in a clean TensorFlow process: {escape(report.servability)}")
    else:
        console.print(
            f"[bold red]Not servable[/]: TF Serving would fail on this model; it {escape(report.servability)}"
        )

    for leftover in report.recovered:
        console.print(f"Removed {leftover}, an unfinished push an interrupted run left in the serving folder.")
    cached_push = report.states.get(nodes.PUSHER) == "CACHED"
    if report.pushed and report.reused and not cached_push:
        console.print(
            f"Already in the serving folder with identical files: {report.serving_model_dir}; nothing copied."
        )
    elif report.pushed and not cached_push:
        console.print(f"[bold]Pushed[/] to {report.serving_model_dir}, with TF Serving warmup requests")
        if report.removed_versions:
            console.print(f"Retention removed version(s) {', '.join(report.removed_versions)} (keep_versions).")
    elif report.pushed:
        console.print(
            f"Nothing changed since the last run, so nothing new was pushed. Serving: {report.serving_model_dir}"
        )
    elif report.awaiting_approval:
        console.print(
            f"[bold yellow]Awaiting approval[/]: model {report.model_id} is blessed and servable; "
            f"{settings.paths.serving_root / settings.model_name} is untouched until a person decides "
            f"({MANUAL_APPROVAL}).\n"
            f"  Approve: [bold]tfxp approve {report.model_id} --note TEXT[/]\n"
            f"  Reject:  [bold]tfxp reject {report.model_id} --note TEXT[/]"
        )
    else:
        console.print(f"Not pushed; {settings.paths.serving_root / settings.model_name} is untouched.")
    if report.served_version is not None:
        how = "pinned by `tfxp rollback`" if report.pinned else "the latest"
        console.print(f"TF Serving serves version {report.served_version} ({how}); see [bold]tfxp models[/].")
    console.print("Model trained on:")
    for line in report.trained_on:
        console.print(f"  {line}")
    console.print(f"TensorBoard: [bold]tfxp tensorboard --output {settings.paths.output_root}[/]")
