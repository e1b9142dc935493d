"""`create_pipeline`: the TFX DAG as a pure function of typed settings."""

from __future__ import annotations

import importlib.util
import json

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.components.distribution_validator.component import DistributionValidator  # not in tfx.v1 yet
from tfx.dsl.components.base import executor_spec

from models import budget, distribution, evaluation, features
from pipeline import drift, evaluator, guards, model_card_generator, pusher, servability, table_example_gen
from pipeline.config import TrainingConfig
from pipeline.nodes import (
    ANOMALIES_GATE,
    BASELINE_RESOLVER,
    DISTRIBUTION_VALIDATOR,
    DRIFT_BASELINE_RESOLVER,
    DRIFT_GATE,
    EVALUATOR,
    EXAMPLE_GEN,
    EXAMPLE_VALIDATOR,
    MODEL_CARD_GENERATOR,
    PUSHER,
    SCHEMA_GEN,
    SERVABILITY_CHECK,
    STATISTICS_GEN,
    TRAINER,
    TRANSFORM,
    TUNER,
)
from pipeline.settings import PREPROCESSING_FN, Settings

SPLIT_BUCKETS = 100  # hash buckets ExampleGen divides between train and eval
PREPROCESSING_DIGEST = "preprocessing_digest"  # Transform custom_config key
TRAINING_MODULE = "models.training"  # run_fn and tuner_fn, by module path: finding it imports no TensorFlow
RUN_FN = f"{TRAINING_MODULE}.run_fn"
TUNER_FN = f"{TRAINING_MODULE}.tuner_fn"
MODEL_CODE_DIGEST = "model_code_digest"  # Tuner and Trainer custom_config key on a cluster: their cache key


def _module_file(module: str) -> str:
    """The source file of `module`, found without importing it; TFX packages its folder, so code edits
    invalidate the Tuner's and Trainer's cache."""
    return importlib.util.find_spec(module).origin


def _user_code(settings: Settings, function: str) -> tuple[dict, dict]:
    """How the Tuner (`function` TUNER_FN) or the Trainer (RUN_FN) finds its user function, and what keys its cache.

    Here, by the module's file: TFX packages its folder (models/) as a wheel, so an edit to any model module
    re-keys their cache, and the run summary names the wheel. On a cluster TFX would build that wheel while
    compiling, into the remote pipeline root, from this machine's file path; instead the function is named by
    module path, imported from the package installed in the image, and the digest of models/ keys the cache.

    Returns the component's arguments naming the code, and what to add to its custom_config.
    """
    if settings.cluster is None:
        return {"module_file": _module_file(TRAINING_MODULE)}, {}
    key = "tuner_fn" if function == TUNER_FN else "run_fn"
    return {key: function}, {MODEL_CODE_DIGEST: settings.model_code_digest}


def _baseline_resolver(settings: Settings, candidate: tfx.dsl.Channel) -> tfx.dsl.Resolver:
    """The last blessed model, the bar a new model must clear.

    Here, not this run's candidate (guards.PreviousBlessedModelStrategy): an unchanged rerun then finds the same
    baseline as the run before and stays cached. The Kubeflow V2 compiler accepts only TFX's own strategies, so on
    a cluster it is LatestBlessedModelStrategy, which after a push returns the candidate itself: the Evaluator,
    the checks and the Pusher run again there, and the Pusher finds those files already serving and publishes
    nothing (pipeline/pusher.py).
    """
    if settings.cluster is None:
        return tfx.dsl.Resolver(
            strategy_class=guards.PreviousBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
            candidate=candidate,
        ).with_id(BASELINE_RESOLVER)
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER)


def split_config(settings: Settings) -> tfx.proto.SplitConfig:
    """How ExampleGen hash-splits a batch: the eval fraction of SPLIT_BUCKETS buckets (at least one) to eval."""
    eval_buckets = max(1, round(settings.project.split.eval_fraction * SPLIT_BUCKETS))
    return tfx.proto.SplitConfig(
        splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=SPLIT_BUCKETS - eval_buckets),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=eval_buckets),
        ]
    )


def _example_gen(settings: Settings):
    """The ExampleGen for the data's format, reading the newest span or the one asked for."""
    data = settings.project.data
    pattern = f"span-{{SPAN}}/{data.file_pattern}" if settings.reads_spans else data.file_pattern
    kwargs = dict(
        input_base=settings.data_uri,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern=pattern)]),
        output_config=tfx.proto.Output(split_config=split_config(settings)),
    )
    if settings.span is not None:  # else TFX's driver takes the newest span
        kwargs["range_config"] = tfx.proto.RangeConfig(
            static_range=tfx.proto.StaticRange(start_span_number=settings.span, end_span_number=settings.span)
        )
    # Both keyed on the files' contents, not TFX's size and mtime (see pipeline/table_example_gen.py).
    if data.format == "tfrecord":
        return table_example_gen.TFRecordExampleGen(**kwargs)
    # CSV and Parquet: Arrow readers typed by the curated schema.
    return table_example_gen.TableExampleGen(
        custom_executor_spec=executor_spec.BeamExecutorSpec(table_example_gen.TableExampleGenExecutor),
        custom_config=table_example_gen.executor_config(
            data.format, settings.example_column_types, settings.project.label.column
        ),
        **kwargs,
    )


def _budget(train: TrainingConfig, tuning: bool = False) -> budget.Budget:
    """The final training's budget, or one Tuner trial's: fewer epochs, and a share of the time cap."""
    seconds = train.max_minutes * 60
    return budget.Budget(
        epochs=train.tuner_epochs if tuning else train.epochs,
        patience=train.patience,
        max_seconds=seconds / train.tuner_trials if tuning else seconds,
        batch_size=train.batch_size or 0,
        steps=0 if tuning else train.train_steps or 0,
        eval_steps=train.eval_steps or 0,
    )


def _card_facts(settings: Settings) -> str:
    """What the model card takes from the settings, as JSON: the rest it reads from the run's artifacts."""
    problem = settings.declarations.label.problem
    gate = settings.gate
    return json.dumps(
        {
            "declarations": json.loads(settings.declarations.to_json()),
            "gate": {
                "metric": gate.metric,
                "threshold": gate.threshold,
                "max_regression": gate.max_regression,
                "higher_is_better": evaluation.metric(problem, gate.metric).higher_is_better,
                "min_slice_size": gate.min_slice_size,
                "max_slice_gap": gate.max_slice_gap,
            },
            "card": settings.project.card.model_dump(),
            "files": list(settings.data_files),
            "budget": json.loads(_budget(settings.project.training).to_json()),
            "code_version": f"models/ digest {settings.model_code_digest}",
            "card_code": settings.card_code_digest,  # an edit to how the card is gathered re-runs it
            "reported": evaluation.reported_metrics(problem),
        },
        sort_keys=True,
    )


def create_pipeline(
    settings: Settings, metadata_connection_config: metadata_store_pb2.ConnectionConfig
) -> tfx.dsl.Pipeline:
    """Wires ExampleGen → … → Pusher for `settings`; reads no files, globals or environment."""
    train = settings.project.training
    declared = {features.CUSTOM_CONFIG_KEY: settings.declarations.to_json()}

    # Hash-split one batch (a span, or the whole folder) into train and eval tf.Examples.
    example_gen = _example_gen(settings).with_id(EXAMPLE_GEN)

    # TFDV statistics per split: the basis for the schema check and for drift monitoring.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(STATISTICS_GEN)

    # The curated schema: `tfxp init` inferred it, a person reviewed it.
    # Its path names its content, so an edit reaches every run (see Settings.imported_schema_file).
    schema_gen = tfx.components.ImportSchemaGen(schema_file=settings.schema_uri).with_id(SCHEMA_GEN)

    # Compare each split's statistics with the schema...
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(EXAMPLE_VALIDATOR)
    # ...and stop the run on any anomaly, where stock TFX would only set a flag and carry on.
    anomalies_gate = guards.AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"], statistics=statistics_gen.outputs["statistics"]
    ).with_id(ANOMALIES_GATE)

    # Imported by name, not packaged like the training code, so an edit to the network alone keeps
    # Transform cached; the digest of the modules it runs (settings.PREPROCESSING_MODULES) invalidates it.
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={**declared, PREPROCESSING_DIGEST: settings.preprocessing_digest},
        # StatisticsGen and ExampleValidator already profiled and checked the raw data.
        disable_statistics=True,
        # Only the analysis pass: the Trainer and Tuner apply the transform graph as they read ExampleGen's
        # examples, so no transformed copy of the whole table is written, most of which they never read.
        materialize=False,
        disable_analyzer_cache=True,
        force_tf_compat_v1=True,
    ).with_id(TRANSFORM)
    transform.add_upstream_node(anomalies_gate)

    # Drift: this span's statistics against the baseline's (the serving model's span, else the previous span),
    # with thresholds from [monitoring]; the gate stops the run before Transform when on_drift = "stop".
    drift_nodes = []
    if settings.drift_baseline is not None:
        drift_baseline = tfx.dsl.Resolver(
            strategy_class=drift.StatisticsById,
            config={"statistics_id": settings.drift_baseline.statistics_id},
            statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics),
        ).with_id(DRIFT_BASELINE_RESOLVER)
        distribution_validator = DistributionValidator(
            statistics=statistics_gen.outputs["statistics"],
            baseline_statistics=drift_baseline.outputs["statistics"],
            config=drift.validator_config(settings),
        ).with_id(DISTRIBUTION_VALIDATOR)
        drift_gate = drift.DriftGate(
            anomalies=distribution_validator.outputs["anomalies"], on_drift=settings.project.monitoring.on_drift
        ).with_id(DRIFT_GATE)
        transform.add_upstream_node(drift_gate)
        drift_nodes = [drift_baseline, distribution_validator, drift_gate]

    hyperparameters = None
    tuner = None
    if train.tuner:
        # KerasTuner search over the space run_fn also uses; its best values feed the Trainer.
        code, code_key = _user_code(settings, TUNER_FN)
        tuner = tfx.components.Tuner(
            examples=example_gen.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            train_args=tfx.proto.TrainArgs(),  # the budget in custom_config says how long
            eval_args=tfx.proto.EvalArgs(),
            **code,
            custom_config={
                **declared,
                **code_key,
                features.TUNER_MAX_TRIALS: train.tuner_trials,
                budget.CUSTOM_CONFIG_KEY: _budget(train, tuning=True).to_json(),
            },
        ).with_id(TUNER)
        hyperparameters = tuner.outputs["best_hyperparameters"]

    code, code_key = _user_code(settings, RUN_FN)
    trainer = tfx.components.Trainer(
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=hyperparameters,
        train_args=tfx.proto.TrainArgs(),
        eval_args=tfx.proto.EvalArgs(),
        custom_config={
            **declared,
            **code_key,
            budget.CUSTOM_CONFIG_KEY: _budget(train).to_json(),
            distribution.CUSTOM_CONFIG_KEY: train.strategy.value,  # part of the cache key: it changes the model
        },
        **code,
    ).with_id(TRAINER)

    # The last blessed model (here: that is not this run's candidate): the bar a new model must clear.
    baseline_resolver = _baseline_resolver(settings, trainer.outputs["model"])

    # TFMA: the gate metric's bound, no regression against the baseline, per configured slice, and with
    # max_slice_gap no large enough slice too far behind overall (pipeline/evaluator.py: TFMA's cross-slice fix).
    model_evaluator = evaluator.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=evaluation.eval_config(settings.declarations, settings.gate, settings.project.evaluation.slices),
    ).with_id(EVALUATOR)

    # InfraValidator without Docker: warmup requests from eval rows, then load and call the model in a
    # clean TensorFlow process, the nearest thing to TF Serving here (pipeline/servability.py). The blessing
    # carries the digest of the model the Evaluator evaluated: a model swapped on disk since is not servable.
    servability_check = servability.ServabilityCheck(
        model=trainer.outputs["model"],
        model_blessing=model_evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"],
        label=settings.declarations.label.name,
        model_name=settings.model_name,
        code_digest=settings.servability_code_digest,
    ).with_id(SERVABILITY_CHECK)

    # The model card's facts, from this run's artifacts; the push renders them into the version folder.
    card_generator = model_card_generator.ModelCardGenerator(
        model=trainer.outputs["model"],
        evaluation=model_evaluator.outputs["evaluation"],
        model_blessing=model_evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=hyperparameters,
        model_name=settings.model_name,
        facts=_card_facts(settings),
    ).with_id(MODEL_CARD_GENERATOR)

    # Publishes <serving_root>/<model_name>/<version>/ by atomic rename, only when both checks blessed it.
    model_pusher = pusher.Pusher(
        model=trainer.outputs["model"],
        model_blessing=model_evaluator.outputs["blessing"],
        infra_blessing=servability_check.outputs["blessing"],
        model_card=card_generator.outputs["card"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=settings.serving_uri)
        ),
        custom_config={
            pusher.KEEP_VERSIONS: settings.project.delivery.keep_versions,
            pusher.APPROVAL: settings.project.delivery.approval,
        },
    ).with_id(PUSHER)

    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        anomalies_gate,
        *drift_nodes,
        transform,
        *([tuner] if tuner else []),
        trainer,
        baseline_resolver,
        model_evaluator,
        servability_check,
        card_generator,
        model_pusher,
    ]
    return tfx.dsl.Pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=settings.pipeline_root_uri,
        components=components,
        enable_cache=settings.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(settings.beam_args),
    )
