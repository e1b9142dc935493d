"""The two custom pieces of wiring that make the pipeline fail closed and push only new models."""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import constants as evaluator_constants
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.v1.dsl.components import InputArtifact, component

from pipeline.splits import ANOMALIES_FILE, STATISTICS_FILE


class DataAnomaliesError(RuntimeError):
    """The data broke the curated schema; the message lists every problem, per split and feature."""


def read_anomalies(anomalies: types.Artifact) -> dict[str, anomalies_pb2.Anomalies]:
    """ExampleValidator's findings for each split of an ExampleAnomalies artifact."""
    found = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
        found[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return found


def describe_anomalies(by_split: dict[str, anomalies_pb2.Anomalies]) -> list[str]:
    """One readable line per anomaly: split, feature, and what is wrong."""
    lines = []
    for split, anomalies in sorted(by_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"[{split}] {feature}: {info.short_description} ({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"[{split}] whole dataset: {info.short_description} ({info.description})")
    return lines


def row_counts(statistics: types.Artifact) -> dict[str, int]:
    """Examples per split, from StatisticsGen's TFDV statistics."""
    counts = {}
    for split in artifact_utils.decode_split_names(statistics.split_names):
        path = os.path.join(artifact_utils.get_split_uri([statistics], split), STATISTICS_FILE)
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(io_utils.read_bytes_file(path))
        counts[split] = sum(dataset.num_examples for dataset in stats.datasets)
    return counts


def empty_splits(statistics: types.Artifact) -> list[str]:
    """Lines for splits with no examples, which TFDV's min_examples_count check passes over."""
    lines = []
    for split, rows in row_counts(statistics).items():
        if not rows:
            lines.append(
                f"[{split}] whole dataset: no examples (the hash split put none of this batch's rows here; "
                "add rows, or change [split] eval_fraction)"
            )
    return lines


@component
def AnomaliesGate(  # noqa: N802
    anomalies: InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    statistics: InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
) -> None:
    """Stops the run when ExampleValidator found anything, or a split is empty, so nothing downstream is built."""
    problems = empty_splits(statistics) + describe_anomalies(read_anomalies(anomalies))
    if problems:
        raise DataAnomaliesError("the data does not match the curated schema:\n  " + "\n  ".join(problems))


class PreviousBlessedModelStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The latest blessed model other than this run's candidate, as the Evaluator's baseline.

    Stock LatestBlessedModelStrategy hands a cached candidate itself back as its own baseline,
    so an unchanged rerun re-evaluates and pushes a duplicate; excluding it keeps the run cached.
    """

    def resolve_artifacts(self, store, input_dict):
        """Picks from `model` and `model_blessing`, skipping every model in `candidate`."""
        candidates = {model.id for model in input_dict["candidate"]}
        blessed = {
            blessing.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY): blessing
            for blessing in input_dict["model_blessing"]
            if blessing.get_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1
        }
        for model in sorted(input_dict["model"], key=lambda m: m.id, reverse=True):
            if model.id in blessed and model.id not in candidates:
                return {"model": [model], "model_blessing": [blessed[model.id]], "candidate": input_dict["candidate"]}
        return {"model": [], "model_blessing": [], "candidate": input_dict["candidate"]}
