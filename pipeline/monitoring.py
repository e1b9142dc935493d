"""What each span and serving traffic are compared with, and what TFDV's comparators found.

Reads ML Metadata, the serving folder and anomalies protos only: the CLI calls it before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from pipeline import lineage, registry, serving, splits

STATISTICS = "ExampleStatistics"
DISTANCE_NAMES = {"L_INFTY": "L-infinity", "JENSEN_SHANNON_DIVERGENCE": "Jensen-Shannon"}
ROW_RATIO = re.compile(r"is (\d[\d.e+-]*) .*(below|above) the threshold (\d+(?:\.\d+)?)")  # TFDV's row-count sentence
ROW_COUNT_REASONS = (
    anomalies_pb2.AnomalyInfo.COMPARATOR_LOW_NUM_EXAMPLES,
    anomalies_pb2.AnomalyInfo.COMPARATOR_HIGH_NUM_EXAMPLES,
)


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The statistics a run's span is compared with, and why those."""

    statistics_id: int
    span: int
    why: str  # "span 2, which trained version 1700000000 (serving now)"


def statistics_span(store: metadata_store.MetadataStore, statistics: metadata_store_pb2.Artifact) -> int:
    """The span of the examples an ExampleStatistics artifact describes (StatisticsGen leaves its own span 0)."""
    examples = lineage.inputs_of(store, statistics.id).get("examples")
    return (lineage.span(examples) or 0) if examples is not None else 0


def serving_statistics(
    store: metadata_store.MetadataStore, folder: serving.ServingFolder
) -> tuple[int, metadata_store_pb2.Artifact] | None:
    """The version TF Serving serves now and the statistics of the examples it was trained on, if both are known."""
    version = folder.served()
    model_id = registry.served_model_id(store, version)
    if model_id is None:
        return None
    examples = lineage.training_examples(store, model_id)
    statistics = lineage.statistics_of(store, examples.id) if examples is not None else None
    return (version, statistics) if statistics is not None else None


def drift_baseline(
    store: metadata_store.MetadataStore, folder: serving.ServingFolder, span: int | None
) -> Baseline | None:
    """What this run's data is compared with: the span the serving model was trained on, or, when nothing serves,
    the newest earlier span a run has computed statistics for. None on a first run."""
    served = serving_statistics(store, folder)
    if served is not None:
        version, statistics = served
        trained_on = statistics_span(store, statistics)
        return Baseline(statistics.id, trained_on, f"span {trained_on}, which trained version {version} (serving now)")
    if span is None:
        return None
    try:
        live = [a for a in store.get_artifacts_by_type(STATISTICS) if a.state == metadata_store_pb2.Artifact.LIVE]
    except Exception:  # noqa: BLE001  (MLMD raises NotFound before the first run registers the type)
        return None
    earlier = [(statistics_span(store, a), a.id) for a in live]
    earlier = [(span_of, artifact_id) for span_of, artifact_id in earlier if span_of < span]
    if not earlier:
        return None
    previous, artifact_id = max(earlier)
    return Baseline(artifact_id, previous, f"span {previous}, the previous span (nothing serves yet)")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One comparison past its threshold: a feature's distance, or a split's row count."""

    feature: str  # "" for the row count
    split: str  # "train", "eval", or "" when one dataset was compared
    distance: str  # "L-infinity", "Jensen-Shannon", or "rows"
    value: float
    threshold: float
    detail: str = ""

    def line(self) -> str:
        """One line a person reads: which, how far, and the bar it crossed."""
        where = f"[{self.split}] " if self.split else ""
        if self.detail:
            return f"{where}{self.feature or 'row count'}: {self.detail}"
        return f"{where}{self.feature}: {self.distance} {self.value:.3f} > {self.threshold:g}"


def _measurements(info: anomalies_pb2.DriftSkewInfo, skew: bool):
    return info.skew_measurements if skew else info.drift_measurements


def distances(anomalies: anomalies_pb2.Anomalies, split: str = "", skew: bool = False) -> list[Finding]:
    """Every drift (or skew) measurement TFDV recorded, crossed or not, by feature."""
    found = []
    for info in anomalies.drift_skew_info:
        for measurement in _measurements(info, skew):
            kind = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(measurement.type)
            found.append(
                Finding(
                    ".".join(info.path.step),
                    split,
                    DISTANCE_NAMES.get(kind, kind),
                    measurement.value,
                    measurement.threshold,
                )
            )
    return sorted(found, key=lambda f: f.feature)


def crossed(anomalies: anomalies_pb2.Anomalies, split: str = "", skew: bool = False) -> list[Finding]:
    """The measurements past their threshold, and a row count outside its bounds."""
    found = [f for f in distances(anomalies, split, skew) if f.value > f.threshold]
    for reason in anomalies.dataset_anomaly_info.reason:
        if reason.type in ROW_COUNT_REASONS:
            found.append(Finding("", split, "rows", 0.0, 0.0, _row_count_text(reason)))
    return found


def _row_count_text(reason: anomalies_pb2.AnomalyInfo.Reason) -> str:
    """ "0.09× the baseline's rows, below the bound 0.5" from TFDV's sentence, or the sentence itself."""
    match = ROW_RATIO.search(reason.description)
    if match is None:
        return reason.description or reason.short_description
    ratio, side, bound = match.groups()
    return f"{float(ratio):.2f}× the baseline's rows, {side} the bound {float(bound):g}"


SPLIT_PAIR = "SplitPair-"  # DistributionValidator's folder per compared (split, baseline split)


def read_comparisons(uri: str, split_names: str) -> dict[str, anomalies_pb2.Anomalies]:
    """DistributionValidator's result per compared split ("train", "eval"), from its ExampleAnomalies artifact's
    folder and `split_names` property."""
    found = {}
    for pair in json.loads(split_names or "[]"):
        split, _, baseline = pair.partition("_")
        path = Path(uri) / f"{SPLIT_PAIR}{pair}" / splits.ANOMALIES_FILE
        found[split if split == baseline else pair] = anomalies_pb2.Anomalies.FromString(path.read_bytes())
    return found


def drift_findings(comparisons: dict[str, anomalies_pb2.Anomalies]) -> list[Finding]:
    """Every threshold crossed, per split: distances past their bound, row counts outside theirs, and features
    the validator could not compare."""
    found = []
    for split, anomalies in sorted(comparisons.items()):
        found += crossed(anomalies, split)
        measured = {f.feature for f in distances(anomalies, split)}
        for feature, info in sorted(anomalies.anomaly_info.items()):
            if feature not in measured and any(
                r.type == anomalies_pb2.AnomalyInfo.STATS_NOT_AVAILABLE for r in info.reason
            ):
                found.append(
                    Finding(feature, split, "not compared", 0.0, 0.0, "no values to compare with the baseline")
                )
    return found


def summarize(findings: list[Finding]) -> list[str]:
    """One line per feature (its distance in each split, and the threshold), then the other findings."""
    by_feature: dict[str, list[Finding]] = {}
    lines = []
    for finding in findings:
        if finding.detail:
            lines.append(finding.line())
        else:
            by_feature.setdefault(finding.feature, []).append(finding)
    measured = []
    for feature, found in sorted(by_feature.items()):
        values = ", ".join(f"{f.value:.3f}" + (f" ({f.split})" if f.split else "") for f in found)
        measured.append(f"{feature}: {found[0].distance} {values}; threshold {found[0].threshold:g}")
    return measured + lines


MISSING_REASONS = (anomalies_pb2.AnomalyInfo.SCHEMA_MISSING_COLUMN,)  # TFDV: "Column dropped"
# "New column", and a column outside its environment, such as the label in requests.
UNEXPECTED_REASONS = (anomalies_pb2.AnomalyInfo.SCHEMA_NEW_COLUMN,)


@dataclasses.dataclass(frozen=True)
class Skew:
    """What comparing serving requests with the training statistics found, read from one Anomalies proto."""

    distances: list[Finding]  # every monitored feature's, crossed or not
    missing: list[str]  # model inputs the requests never carried
    unexpected: list[str]  # columns the schema does not expect in serving: reported, never alerted on
    invalid: list[str]  # "feature: what is wrong", for values the schema forbids

    @property
    def crossed(self) -> list[Finding]:
        """The distances past their threshold."""
        return [f for f in self.distances if f.value > f.threshold]

    @property
    def skewed(self) -> bool:
        """Whether a scheduler should alert: a distance crossed, an input missing, or values the model cannot use."""
        return bool(self.crossed or self.missing or self.invalid)

    @property
    def verdict(self) -> str:
        return "skewed" if self.skewed else "ok"


def is_comparator(reason: anomalies_pb2.AnomalyInfo.Reason) -> bool:
    """Whether TFDV found this by comparing two datasets (drift, skew, row counts), not against the schema."""
    return anomalies_pb2.AnomalyInfo.Type.Name(reason.type).startswith("COMPARATOR_")


def skew_of(anomalies: anomalies_pb2.Anomalies) -> Skew:
    """Sorts TFDV's findings on serving requests into distances, missing and unexpected columns, and the rest."""
    missing, unexpected, invalid = [], [], []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason:
            if reason.type in MISSING_REASONS:
                missing.append(feature)
            elif reason.type in UNEXPECTED_REASONS:
                unexpected.append(feature)
            elif not is_comparator(reason):  # a crossed distance, which `distances` reports
                invalid.append(f"{feature}: {reason.short_description} ({reason.description})")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        invalid.append(f"whole dataset: {info.short_description} ({info.description})")
    return Skew(distances(anomalies, skew=True), missing, unexpected, invalid)


TRAINING_SPLIT = "train"  # what the model learned from; the eval split only judged it


class StatisticsError(RuntimeError):
    """Statistics recorded in MLMD are no longer on disk; the message says where they should be."""


def training_statistics(statistics: metadata_store_pb2.Artifact) -> statistics_pb2.DatasetFeatureStatisticsList:
    """StatisticsGen's statistics of the training split of an ExampleStatistics artifact."""
    path = splits.split_file(statistics.uri, TRAINING_SPLIT, splits.STATISTICS_FILE)
    try:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
    except OSError as error:
        raise StatisticsError(f"no training statistics at {path}: {error.strerror or error}") from None


SKEW_CHECK = "SkewCheck"  # execution type of a `tfxp monitor`
ANOMALIES = "ExampleAnomalies"
SERVING_SPLIT = "serving"  # the split name of the requests' statistics and anomalies
# Event keys, as TFX names a component's inputs and outputs: the served model and its training statistics in,
# the requests' statistics and TFDV's findings out.
MODEL_KEY, TRAINING_STATISTICS_KEY, STATISTICS_KEY, ANOMALIES_KEY = (
    "model",
    "training_statistics",
    "statistics",
    "anomalies",
)


def _split_artifact(store: metadata_store.MetadataStore, type_name: str, uri: Path) -> metadata_store_pb2.Artifact:
    """A new artifact of one of TFX's split types, holding the serving split, as StatisticsGen would record it."""
    artifact = metadata_store_pb2.Artifact(type_id=store.get_artifact_type(type_name).id, uri=str(uri))
    artifact.properties["split_names"].string_value = splits.encode_split_names([SERVING_SPLIT])
    artifact.state = metadata_store_pb2.Artifact.LIVE
    return artifact


def record_skew_check(
    store: metadata_store.MetadataStore,
    pipeline_name: str,
    folder: Path,
    requests: Path,
    model_id: int,
    training_statistics: metadata_store_pb2.Artifact,
    statistics: statistics_pb2.DatasetFeatureStatisticsList,
    anomalies: anomalies_pb2.Anomalies,
) -> int:
    """Writes the requests' statistics and TFDV's findings under `folder` in StatisticsGen's and ExampleValidator's
    layout, and records the check in MLMD, linked to the served model and its training statistics; returns its id.
    """
    outputs = {STATISTICS_KEY: (STATISTICS, splits.STATISTICS_FILE), ANOMALIES_KEY: (ANOMALIES, splits.ANOMALIES_FILE)}
    written = {STATISTICS_KEY: statistics, ANOMALIES_KEY: anomalies}
    artifacts = {}
    for key, (type_name, file_name) in outputs.items():
        path = splits.split_file(folder / key, SERVING_SPLIT, file_name)
        path.parent.mkdir(parents=True)
        path.write_bytes(written[key].SerializeToString())
        artifacts[key] = _split_artifact(store, type_name, folder / key)
    skew = skew_of(anomalies)
    context = registry.pipeline_context(store, pipeline_name)
    kind = registry.execution_type(store, SKEW_CHECK, ("rows", "crossed"), ("requests", "verdict"))
    execution = metadata_store_pb2.Execution(type_id=kind, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    execution.properties["requests"].string_value = str(requests)
    execution.properties["rows"].int_value = sum(dataset.num_examples for dataset in statistics.datasets)
    execution.properties["verdict"].string_value = skew.verdict
    execution.properties["crossed"].int_value = len(skew.crossed)
    [model] = store.get_artifacts_by_id([model_id])
    links = [
        (model, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT, path=registry.event_path(MODEL_KEY))),
        (
            training_statistics,
            metadata_store_pb2.Event(
                type=metadata_store_pb2.Event.INPUT, path=registry.event_path(TRAINING_STATISTICS_KEY)
            ),
        ),
        *(
            (artifact, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT, path=registry.event_path(key)))
            for key, artifact in artifacts.items()
        ),
    ]
    execution_id, _, _ = store.put_execution(execution, links, [context])
    return execution_id


@dataclasses.dataclass(frozen=True)
class SkewCheck:
    """The newest `tfxp monitor`, as MLMD recorded it."""

    at: datetime.datetime
    requests: str  # the path it read
    rows: int
    verdict: str  # "ok" or "skewed"
    crossed: list[Finding]  # the distances past their threshold
    missing: list[str]  # model inputs the requests never carried
    model_id: int  # the model serving when it ran


def last_skew_check(store: metadata_store.MetadataStore) -> SkewCheck | None:
    """The newest recorded skew check, or None if `tfxp monitor` never ran against this output folder."""
    try:
        executions = store.get_executions_by_type(SKEW_CHECK)
    except Exception:  # noqa: BLE001  (the type does not exist until the first check)
        return None
    if not executions:
        return None
    newest = max(executions, key=lambda e: e.id)
    events = store.get_events_by_execution_ids([newest.id])
    by_key = {e.path.steps[0].key: e.artifact_id for e in events if e.path.steps}
    [anomalies_artifact] = store.get_artifacts_by_id([by_key[ANOMALIES_KEY]])
    path = splits.split_file(anomalies_artifact.uri, SERVING_SPLIT, splits.ANOMALIES_FILE)
    skew = skew_of(anomalies_pb2.Anomalies.FromString(path.read_bytes()))
    properties = newest.properties
    return SkewCheck(
        at=registry.when(newest.create_time_since_epoch),
        requests=properties["requests"].string_value,
        rows=properties["rows"].int_value,
        verdict=properties["verdict"].string_value,
        crossed=skew.crossed,
        missing=skew.missing,
        model_id=by_key[MODEL_KEY],
    )
