"""What each span and serving traffic are compared with, and what TFDV's comparators found.

Reads ML Metadata, the serving folder and anomalies protos only: the CLI calls it before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2

from pipeline import lineage, registry, serving

STATISTICS = "ExampleStatistics"
DISTANCE_NAMES = {"L_INFTY": "L-infinity", "JENSEN_SHANNON_DIVERGENCE": "Jensen-Shannon"}
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


def _span(artifact: metadata_store_pb2.Artifact) -> int:
    return int(artifact.properties["span"].int_value) if "span" in artifact.properties else 0


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
    """What this run's span is compared with: the span the serving model was trained on, or, when nothing serves,
    the newest earlier span a run has computed statistics for. None on a first run."""
    served = serving_statistics(store, folder)
    if served is not None:
        version, statistics = served
        return Baseline(
            statistics.id, _span(statistics), f"span {_span(statistics)}, which trained version {version} (serving now)"
        )
    if span is None:
        return None
    try:
        earlier = [
            a
            for a in store.get_artifacts_by_type(STATISTICS)
            if a.state == metadata_store_pb2.Artifact.LIVE and _span(a) < span
        ]
    except Exception:  # noqa: BLE001  (MLMD raises NotFound before the first run registers the type)
        return None
    if not earlier:
        return None
    newest = max(earlier, key=lambda a: (_span(a), a.id))
    return Baseline(newest.id, _span(newest), f"span {_span(newest)}, the previous span (nothing serves yet)")


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
        if self.distance == "rows":
            return f"{where}row count: {self.detail}"
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
            found.append(Finding("", split, "rows", 0.0, 0.0, reason.description or reason.short_description))
    return found
