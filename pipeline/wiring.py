"""`create_pipeline`: the TFX DAG as a pure function of typed settings."""

from __future__ import annotations

import inspect

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from models import evaluation, preprocessing, training
from pipeline import guards
from pipeline.nodes import (
    ANOMALIES_GATE, BASELINE_RESOLVER, EVALUATOR, EXAMPLE_GEN, EXAMPLE_VALIDATOR, PUSHER, SCHEMA_GEN,
    STATISTICS_GEN, TRAINER, TRANSFORM, TUNER,
)
from pipeline.config import Settings

def _module_file(fn) -> str:
    """The source file defining `fn`; TFX packages its folder, so code edits invalidate the cache."""
    return inspect.getsourcefile(fn)


def create_pipeline(settings: Settings, metadata_connection_config: metadata_store_pb2.ConnectionConfig) -> tfx.dsl.Pipeline:
    """Wires ExampleGen → … → Pusher for `settings`; reads no files, globals or environment."""
    paths, train = settings.paths, settings.training

    # Hash-split the CSV folder 2:1 into train and eval tf.Examples.
    example_gen = tfx.components.CsvExampleGen(
        input_base=str(paths.data_root),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern="*.csv")]),
    ).with_id(EXAMPLE_GEN)

    # TFDV statistics per split: the basis for the schema check and for drift monitoring.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(STATISTICS_GEN)

    # The curated schema when there is one (a person reviewed it); otherwise inferred from the data.
    if paths.schema_file is not None:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=str(paths.schema_file)).with_id(SCHEMA_GEN)
    else:
        schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"]).with_id(SCHEMA_GEN)

    # Compare each split's statistics with the schema...
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(EXAMPLE_VALIDATOR)
    # ...and stop the run on any anomaly, where stock TFX would only set a flag and carry on.
    anomalies_gate = guards.AnomaliesGate(anomalies=example_validator.outputs["anomalies"]).with_id(ANOMALIES_GATE)

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        module_file=_module_file(preprocessing.preprocessing_fn),
    ).with_id(TRANSFORM)
    transform.add_upstream_node(anomalies_gate)

    hyperparameters = None
    tuner = None
    if train.tuner_enabled:
        # KerasTuner search over the space run_fn also uses; its best values feed the Trainer.
        tuner = tfx.components.Tuner(
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            module_file=_module_file(training.tuner_fn),
            train_args=tfx.proto.TrainArgs(num_steps=train.tuner_steps),
            eval_args=tfx.proto.EvalArgs(num_steps=train.eval_steps),
            custom_config={training.TUNER_MAX_TRIALS: train.tuner_trials},
        ).with_id(TUNER)
        hyperparameters = tuner.outputs["best_hyperparameters"]

    trainer = tfx.components.Trainer(
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=hyperparameters,
        module_file=_module_file(training.run_fn),
        train_args=tfx.proto.TrainArgs(num_steps=train.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=train.eval_steps),
    ).with_id(TRAINER)

    # The last blessed model that is not this run's candidate: the bar a new model must clear.
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=guards.PreviousBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        candidate=trainer.outputs["model"],
    ).with_id(BASELINE_RESOLVER)

    # TFMA: accuracy floor, no regression against the baseline, sliced by each categorical feature.
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=evaluation.eval_config(train.min_accuracy, train.max_accuracy_drop),
    ).with_id(EVALUATOR)

    # Writes <serving_root>/<model_name>/<version>/ only when the Evaluator blessed the model.
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(paths.serving_root / settings.model_name)
            )
        ),
    ).with_id(PUSHER)

    components = [
        example_gen, statistics_gen, schema_gen, example_validator, anomalies_gate, transform,
        *([tuner] if tuner else []), trainer, baseline_resolver, evaluator, pusher,
    ]
    return tfx.dsl.Pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=str(paths.pipeline_root),
        components=components,
        enable_cache=settings.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(settings.beam_args),
    )
