"""`tfxp status`: what serves, on which span and how old, whether newer data waits, and the last drift and skew
checks, read from ML Metadata, the serving folder and the data folder (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from rich.console import Console
from rich.markup import escape

from pipeline import lineage, monitoring, nodes, registry, serving
from pipeline.config import Project
from pipeline.settings import find_spans


@dataclasses.dataclass(frozen=True)
class Serving:
    """The version TF Serving serves, and the model and span behind it."""

    version: int
    pinned: bool
    model_id: int
    span: int | None
    trained_at: datetime.datetime
    pushed_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class DriftCheck:
    """The newest run's comparison of its span with the baseline."""

    at: datetime.datetime
    span: int
    baseline_span: int
    lines: list[str]  # thresholds crossed (monitoring.summarize)
    stopped: bool  # the DriftGate stopped that run


@dataclasses.dataclass(frozen=True)
class Status:
    """Everything `tfxp status` says."""

    serving: Serving | None
    newest_span: int | None  # in the data folder; None when it holds files directly
    trained_spans: set[int]  # spans some model was trained on
    drift: DriftCheck | None
    skew: monitoring.SkewCheck | None
    now: datetime.datetime

    @property
    def age_days(self) -> float | None:
        """Days since the serving model was trained."""
        return (self.now - self.serving.trained_at).total_seconds() / 86400 if self.serving else None


def _trained_spans(store: metadata_store.MetadataStore) -> set[int]:
    """The span of the examples every model in the store was trained on."""
    try:
        models = store.get_artifacts_by_type(registry.MODEL)
    except Exception:  # noqa: BLE001  (MLMD raises NotFound before the first Trainer)
        return set()
    spans = set()
    for model in models:
        examples = lineage.training_examples(store, model.id)
        if examples is not None and (span := lineage.span(examples)) is not None:
            spans.add(span)
    return spans


def _serving(store: metadata_store.MetadataStore, folder: serving.ServingFolder) -> Serving | None:
    version = folder.served()
    pushed = {v.version: v for v in registry.pushed_versions(store, folder)}.get(version)
    if pushed is None:
        return None
    [model] = store.get_artifacts_by_id([pushed.model_id])
    examples = lineage.training_examples(store, model.id)
    return Serving(
        version=version,
        pinned=folder.pinned() is not None,
        model_id=model.id,
        span=lineage.span(examples) if examples is not None else None,
        trained_at=registry.when(model.create_time_since_epoch),
        pushed_at=pushed.pushed_at,
    )


def _last_drift(store: metadata_store.MetadataStore) -> DriftCheck | None:
    """The drift comparison of the newest run that made one."""
    for run in reversed(lineage.pipeline_runs(store)):
        executions = lineage.run_executions(store, run)
        validator = executions.get(nodes.DISTRIBUTION_VALIDATOR)
        anomalies = validator.output("anomalies") if validator is not None else None
        if anomalies is None:
            continue
        comparisons = monitoring.read_comparisons(anomalies.uri, anomalies.properties["split_names"].string_value)
        [current], [baseline] = validator.inputs["statistics"], validator.inputs["baseline_statistics"]
        gate = executions.get(nodes.DRIFT_GATE)
        return DriftCheck(
            at=registry.when(validator.execution.create_time_since_epoch),
            span=monitoring.statistics_span(store, current),
            baseline_span=monitoring.statistics_span(store, baseline),
            lines=monitoring.summarize(monitoring.drift_findings(comparisons)),
            stopped=gate is not None and gate.state == "FAILED",
        )
    return None


def read_status(project: Project, data_root: Path, output: Path, now: datetime.datetime) -> Status:
    """The status of one project's output folder and data folder."""
    folder = serving.ServingFolder(output / "serving", project.model_name)
    store = lineage.open_store(output)
    spans = find_spans(data_root) if data_root.is_dir() else ()
    return Status(
        serving=_serving(store, folder),
        newest_span=spans[-1] if spans else None,
        trained_spans=_trained_spans(store),
        drift=_last_drift(store),
        skew=monitoring.last_skew_check(store),
        now=now,
    )


def _ago(status: Status, at: datetime.datetime) -> str:
    """ "3 min ago", "5.2 hours ago", "12.0 days ago"."""
    minutes = (status.now - at).total_seconds() / 60
    if minutes < 60:
        return f"{minutes:.0f} min ago"
    return f"{minutes / 60:.1f} hours ago" if minutes < 48 * 60 else f"{minutes / 1440:.1f} days ago"


def render(status: Status, project: Project, console: Console) -> None:
    """One screen: serving, data, drift, skew, and the age limit."""
    served = status.serving
    if served is None:
        console.print("[bold]Serving:[/] nothing yet; `tfxp run` pushes the first blessed model.")
    else:
        how = "pinned by `tfxp rollback`" if served.pinned else "the latest"
        span = f"span {served.span}" if served.span is not None else "the data folder"
        console.print(
            f"[bold]Serving:[/] version {served.version} ({how}), model {served.model_id}, trained on {span} "
            f"{_ago(status, served.trained_at)} ({served.trained_at:%Y-%m-%d %H:%M}), pushed {_ago(status, served.pushed_at)}."
        )
    if status.newest_span is None:
        console.print("[bold]Data:[/] the data folder holds files directly, not span-<N>/ folders.")
    elif status.newest_span in status.trained_spans:
        console.print(f"[bold]Data:[/] newest span {status.newest_span}, already trained on.")
    else:
        console.print(
            f"[bold yellow]Data:[/] newest span {status.newest_span} has not been trained on: "
            "`tfxp run` trains on it (`tfxp watch` does so as spans arrive)."
        )
    drift = status.drift
    if drift is None:
        console.print("[bold]Drift:[/] no span has been compared with another yet.")
    else:
        head = f"span {drift.span} against span {drift.baseline_span}, {_ago(status, drift.at)}"
        if not drift.lines:
            console.print(f"[bold]Drift:[/] {head}: nothing past its threshold.")
        else:
            outcome = "the run was stopped" if drift.stopped else "the run went on"
            console.print(f"[bold yellow]Drift:[/] {head}: {len(drift.lines)} past thresholds ({outcome}):")
            for line in drift.lines:
                console.print(f"  {escape(line)}")
    skew = status.skew
    if skew is None:
        console.print("[bold]Skew:[/] serving traffic never checked; `tfxp monitor --requests PATH` does.")
    else:
        head = f"{skew.rows} request rows from {escape(skew.requests)} against model {skew.model_id}, {_ago(status, skew.at)}"
        lines = monitoring.summarize(skew.crossed) + [f"{name}: missing from the requests" for name in skew.missing]
        if skew.verdict == "ok":
            console.print(f"[bold]Skew:[/] {head}: nothing past its threshold.")
        else:
            console.print(f"[bold yellow]Skew:[/] {head}: skewed (`tfxp monitor` exited 6).")
            for line in lines:
                console.print(f"  {escape(line)}")
    limit = project.monitoring.max_model_age_days
    if limit is not None and status.age_days is not None:
        if status.age_days > limit:
            console.print(
                f"[bold red]Stale:[/] the serving model is {status.age_days:.1f} days old, more than "
                f"max_model_age_days = {limit:g}."
            )
        else:
            console.print(f"Age: {status.age_days:.1f} days, within max_model_age_days = {limit:g}.")


def stale(status: Status, project: Project) -> bool:
    """Whether the serving model is older than `[monitoring] max_model_age_days`."""
    limit = project.monitoring.max_model_age_days
    return limit is not None and status.age_days is not None and status.age_days > limit
