"""Drift between spans: TFX's DistributionValidator compares this span's statistics with a baseline's, and a gate
applies `[monitoring] on_drift`.

The comparators are applied at validation time, from the project file, not written into the curated schema:
thresholds are policy, and a schema edit re-keys SchemaGen, Transform and training, where a changed threshold
should re-run only the comparison.
"""

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx.v1.dsl.components import InputArtifact, Parameter, component

from pipeline import monitoring
from pipeline.settings import Settings


class DataDriftError(RuntimeError):
    """A span moved past its thresholds with on_drift = "stop"; the message lists what moved."""


def validator_config(settings: Settings) -> tfx.proto.DistributionValidatorConfig:
    """A comparator per input feature and the label: L-infinity for categories, Jensen-Shannon for numbers; and
    the row count's bounds."""
    watched = settings.project.monitoring
    config = tfx.proto.DistributionValidatorConfig()
    dataset = config.default_slice_config
    names = [f.name for f in settings.declarations.features] + [settings.declarations.label.name]
    types_by_name = {f.name: f.type for f in settings.schema.feature}
    for name in names:
        feature = dataset.feature.add()
        feature.path.step.append(name)
        comparator = feature.distribution_comparator
        if types_by_name[name] == schema_pb2.BYTES:
            comparator.infinity_norm.threshold = watched.threshold(name)
        else:
            comparator.jensen_shannon_divergence.threshold = watched.threshold(name)
    dataset.num_examples_comparator.min_fraction_threshold = watched.min_rows_ratio
    dataset.num_examples_comparator.max_fraction_threshold = watched.max_rows_ratio
    return config


@component
def DriftGate(  # noqa: N802
    anomalies: InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    on_drift: Parameter[str],
) -> None:
    """With on_drift = "stop", stops the run when the span drifted, so nothing is trained or pushed; with "warn",
    lets it through (the summary lists the findings)."""
    found = monitoring.drift_findings(monitoring.read_comparisons(anomalies.uri, anomalies.split_names))
    if found and on_drift == "stop":
        raise DataDriftError(
            "this span drifted from its baseline past [monitoring] thresholds:\n  "
            + "\n  ".join(monitoring.summarize(found))
        )


class StatisticsById(tfx.dsl.experimental.ResolverStrategy):
    """The one ExampleStatistics artifact the run chose as drift baseline (see monitoring.drift_baseline)."""

    def __init__(self, statistics_id: int):
        self.statistics_id = statistics_id

    def resolve_artifacts(self, store, input_dict):
        """Keeps only the chosen artifact, if it is still live."""
        return {"statistics": [a for a in input_dict["statistics"] if a.id == self.statistics_id]}
