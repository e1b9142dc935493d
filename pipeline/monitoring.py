"""What each span and serving traffic are compared with, and what TFDV's comparators found.

Reads ML Metadata, the serving folder and anomalies protos only: the CLI calls it before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2

from pipeline import lineage, registry, serving

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
    """"0.09× the baseline's rows, below the bound 0.5" from TFDV's sentence, or the sentence itself."""
    match = ROW_RATIO.search(reason.description)
    if match is None:
        return reason.description or reason.short_description
    ratio, side, bound = match.groups()
    return f"{float(ratio):.2f}× the baseline's rows, {side} the bound {float(bound):g}"


SPLIT_PAIR = "SplitPair-"  # DistributionValidator's folder per compared (split, baseline split)
ANOMALIES_FILE = "SchemaDiff.pb"


def read_comparisons(uri: str, split_names: str) -> dict[str, anomalies_pb2.Anomalies]:
    """DistributionValidator's result per compared split ("train", "eval"), from its ExampleAnomalies artifact's
    folder and `split_names` property."""
    found = {}
    for pair in json.loads(split_names or "[]"):
        split, _, baseline = pair.partition("_")
        path = Path(uri) / f"{SPLIT_PAIR}{pair}" / ANOMALIES_FILE
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
