"""Component ids, named once so the wiring, the runner's reports, lineage queries and tests agree."""

from pathlib import Path

EXAMPLE_GEN = "ExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALIES_GATE = "AnomaliesGate"
DRIFT_BASELINE_RESOLVER = "DriftBaselineResolver"
DISTRIBUTION_VALIDATOR = "DistributionValidator"
DRIFT_GATE = "DriftGate"
TRANSFORM = "Transform"
TUNER = "Tuner"
TRAINER = "Trainer"
BASELINE_RESOLVER = "BaselineModelResolver"
EVALUATOR = "Evaluator"
SERVABILITY_CHECK = "ServabilityCheck"
MODEL_CARD_GENERATOR = "ModelCardGenerator"
PUSHER = "Pusher"


def training_logs(pipeline_root: Path) -> Path:
    """Where the Trainer's TensorBoard logs land: one subfolder per training run."""
    return pipeline_root / TRAINER / "model_run"
