"""The pipeline component that gathers a model card's facts from the run's artifacts (see model_card.py)."""

import json

from tfx import types
from tfx import v1 as tfx
from tfx.v1.dsl.components import InputArtifact, OutputArtifact, Parameter, component

from pipeline import model_card


class ModelCard(types.Artifact):
    """`model_card.json`: the facts of one model's card, rendered into each version the model is pushed as."""

    # Namespaced as the Kubeflow V2 compiler requires of a custom type (<namespace>.<Name>); MLMD shows this name.
    TYPE_NAME = "tfxp.ModelCard"


@component
def ModelCardGenerator(  # noqa: N802
    model: InputArtifact[tfx.types.standard_artifacts.Model],  # noqa: ARG001  (lineage: whose card this is)
    evaluation: InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    model_blessing: InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    examples: InputArtifact[tfx.types.standard_artifacts.Examples],
    statistics: InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: InputArtifact[tfx.types.standard_artifacts.Schema],
    card: OutputArtifact[ModelCard],
    model_name: Parameter[str],
    facts: Parameter[str],  # JSON: declarations, gate, [card] text, budget, code version, metric names
    hyperparameters: InputArtifact[tfx.types.standard_artifacts.HyperParameters] = None,  # optional: no Tuner
) -> None:
    """Writes model_card.json from TFMA's metrics per slice, TFDV's row counts, the data and the training."""
    given = json.loads(facts)
    gathered = model_card.gather(
        model_name=model_name,
        declarations=given["declarations"],
        gate=given["gate"],
        card_text=given["card"],
        budget=given["budget"],
        code_version=given["code_version"],
        files=given["files"],
        evaluation_uri=evaluation.uri,
        blessed=model_blessing.get_int_custom_property("blessed") == 1,
        examples=examples,
        statistics=statistics,
        schema_uri=schema.uri,
        hyperparameters_uri=hyperparameters.uri if hyperparameters is not None else None,
        reported=given["reported"],
    )
    model_card.write_facts(gathered, card.uri)
