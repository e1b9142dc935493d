"""The whole pipeline under LocalDagRunner in a temp folder, checked through MLMD and the pushed model."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from models import encodings
from pipeline import lineage, nodes, rerun
from tests.conftest import FAST_RUN_ARGS, run_tfxp, stop
from tests.datasets import PROJECT_ROOT

LABEL = "species"  # the penguins project's label, as tfxp.toml names it
ALL_NODES = {
    nodes.EXAMPLE_GEN,
    nodes.STATISTICS_GEN,
    nodes.SCHEMA_GEN,
    nodes.EXAMPLE_VALIDATOR,
    nodes.ANOMALIES_GATE,
    nodes.TRANSFORM,
    nodes.TUNER,
    nodes.TRAINER,
    nodes.BASELINE_RESOLVER,
    nodes.EVALUATOR,
    nodes.SERVABILITY_CHECK,
    nodes.MODEL_CARD_GENERATOR,
    nodes.PUSHER,
}


def _runs(output: Path):
    store = lineage.open_store(output)
    return store, [lineage.run_executions(store, run) for run in lineage.pipeline_runs(store)]


def _versions(output: Path) -> list[Path]:
    return sorted((output / "serving" / "penguins").iterdir())


@pytest.mark.pipeline
def test_first_run_executes_every_component_once(two_runs):
    _, runs = _runs(two_runs.output)
    first = runs[0]
    assert set(first) == ALL_NODES
    assert {node: ex.state for node, ex in first.items()} == {node: "COMPLETE" for node in ALL_NODES}


@pytest.mark.pipeline
def test_unchanged_rerun_answers_from_the_record_and_pushes_nothing(two_runs):
    _, runs = _runs(two_runs.output)
    assert len(runs) == 1  # TFX was not started: no second pipeline run in MLMD
    assert len(_versions(two_runs.output)) == 1
    out = " ".join(two_runs.second.stdout.split())
    assert "Nothing changed since the run that finished at" in out
    assert "nothing new was pushed" in out and "Overall" in out and "Blessed" in out  # the recorded summary
    assert "✓" not in out


@pytest.mark.pipeline
def test_without_the_record_an_unchanged_rerun_is_all_tfx_cache(finished_run):
    (finished_run / rerun.RECORD_FILE).unlink()
    result = run_tfxp("run", "--output", str(finished_run), *FAST_RUN_ARGS)
    assert result.code == 0, result.stderr
    _, runs = _runs(finished_run)
    latest = runs[-1]
    assert nodes.TUNER not in latest  # finished_run leaves it out
    resolver_free = ALL_NODES - {nodes.BASELINE_RESOLVER, nodes.TUNER}
    assert {node: latest[node].state for node in resolver_free} == {node: "CACHED" for node in resolver_free}
    assert latest[nodes.TRAINER].output("model").id == runs[0][nodes.TRAINER].output("model").id
    assert len(_versions(finished_run)) == 1
    assert "nothing new was pushed" in result.stdout
    assert (finished_run / rerun.RECORD_FILE).is_file()  # recorded again for the next rerun


@pytest.mark.pipeline
def test_run_shows_progress_and_a_summary(two_runs):
    out = two_runs.first.stdout
    for node in ALL_NODES:
        assert f"✓ {node}" in out
    assert "Overall" in out and "island=Biscoe" in out and "sex=female" in out
    assert "Blessed" in out
    version = _versions(two_runs.output)[0]
    assert f"Pushed to {version}" in " ".join(out.split())  # rich may wrap long paths
    assert f"tfxp tensorboard --output {two_runs.output}" in " ".join(out.split())
    assert "Code: training@" in out and "tfx_user_code_Trainer" in out  # which code made the model
    assert "Traceback" not in two_runs.first.stderr
    (log,) = (two_runs.output / "logs").glob("run-*.log")  # the second run was answered without TFX
    logged = log.read_text()
    assert "Training with hyperparameters {'hidden_layers'" in logged and "global batch 32" in logged
    assert "Total params" in logged  # run_fn's model summary
    assert "Attempting to infer TFX Python dependency" not in logged  # no 50 MB sdist per Beam component
    assert "Trained " in logged and " of at most 50 epochs of " in logged  # by epochs, stopped early or not


@pytest.mark.pipeline
def test_pushed_model_is_in_tf_serving_layout(two_runs):
    (version,) = _versions(two_runs.output)
    assert version.name.isdigit()
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables" / "variables.index").is_file()


def _eval_examples(output: Path) -> list[tf.train.Example]:
    """The eval split ExampleGen wrote: penguins the model never trained on."""
    (split_dir,) = (output / "pipeline" / nodes.EXAMPLE_GEN / "examples").glob("*/Split-eval")
    examples = []
    for path in split_dir.glob("*.gz"):
        for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
            examples.append(tf.train.Example.FromString(record.numpy()))
    return examples


@pytest.mark.pipeline
def test_example_gen_writes_each_split_in_the_tables_row_order(two_runs):
    """Beam's in-process runner writes the splits as they come, with no reshuffle: the same rows in the same order
    on every run, so the Trainer's seeded shuffle sees the same sequence."""
    import itertools

    from tfx.components.example_gen import base_example_gen_executor as tfx_example_gen

    from pipeline import config, settings, table_example_gen, wiring

    resolved = settings.resolve(config.load_project(PROJECT_ROOT / config.CONFIG_FILE), PROJECT_ROOT)
    csv = resolved.input_folder / resolved.data_files[0]
    rows = table_example_gen.serialized_examples(str(csv), "csv", resolved.example_column_types, LABEL)
    splits = wiring.split_config(resolved)
    buckets = list(itertools.accumulate(split.hash_buckets for split in splits.splits))  # as TFX's executor sums them
    expected = {split.name: [] for split in splits.splits}
    for row in rows:
        expected[splits.splits[tfx_example_gen._PartitionFn(row, len(buckets), buckets, splits)].name].append(row)
    for split, records in expected.items():
        (split_dir,) = (two_runs.output / "pipeline" / nodes.EXAMPLE_GEN / "examples").glob(f"*/Split-{split}")
        (path,) = split_dir.glob("*.gz")
        written = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
        assert written == records, split


@pytest.mark.pipeline
def test_pushed_model_classifies_held_out_penguins_from_serialized_examples(two_runs):
    (version,) = _versions(two_runs.output)
    model = tf.saved_model.load(str(version))
    assert set(model.signatures) == {"serving_default", "transform_features"}
    examples = _eval_examples(two_runs.output)
    labels = [e.features.feature[LABEL].bytes_list.value[0].decode() for e in examples]
    for example in examples:
        del example.features.feature[LABEL]  # a serving request carries no label
    # What TF Serving does with a PredictRequest: a batch of serialized tf.Examples to the signature.
    outputs = model.signatures["serving_default"](examples=tf.constant([e.SerializeToString() for e in examples]))
    assert outputs["probabilities"].shape == (len(examples), 3)
    predicted = [name.decode() for name in outputs["class_name"].numpy()]
    accuracy = sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels)
    assert len(labels) > 80
    assert accuracy > 0.85, accuracy  # chance is under 0.45


@pytest.mark.pipeline
def test_transform_features_signature_gives_tfma_the_label(two_runs):
    (version,) = _versions(two_runs.output)
    model = tf.saved_model.load(str(version))
    examples = _eval_examples(two_runs.output)[:4]
    out = model.signatures["transform_features"](examples=tf.constant([e.SerializeToString() for e in examples]))
    assert encodings.transformed_name(LABEL) in out
    assert out[encodings.transformed_name(LABEL)].shape == (4,)


@pytest.mark.pipeline
def test_lineage_links_pushed_model_to_its_training_examples(two_runs):
    store, runs = _runs(two_runs.output)
    first = runs[0]
    pushed = first[nodes.PUSHER].output("pushed_model")
    assert lineage.custom_property(pushed, "pushed") == 1
    assert lineage.custom_property(pushed, "pushed_destination") == str(_versions(two_runs.output)[0])
    upstream = {a.id: a for a in lineage.upstream_artifacts(store, pushed.id)}
    assert first[nodes.TRAINER].output("model").id in upstream
    assert first[nodes.EXAMPLE_GEN].output("examples").id in upstream
    assert first[nodes.TRANSFORM].output("transform_graph").id in upstream
    assert first[nodes.SCHEMA_GEN].output("schema").id in upstream
    assert first[nodes.TUNER].output("best_hyperparameters").id in upstream
    # Transform writes no transformed copy: the Trainer reads ExampleGen's examples through the transform graph.
    assert first[nodes.TRAINER].inputs["examples"][0].id == first[nodes.EXAMPLE_GEN].output("examples").id
    assert "transformed_examples" not in first[nodes.TRANSFORM].outputs


@pytest.mark.pipeline
def test_tensorboard_logs_hold_the_training_loss(two_runs):
    run_dir = nodes.training_logs(two_runs.output / "pipeline")
    (train_dir,) = run_dir.glob("*/train")
    events = event_accumulator.EventAccumulator(str(train_dir), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    assert "epoch_loss" in events.Tags()["tensors"]
    losses = [tf.make_ndarray(e.tensor_proto).item() for e in events.Tensors("epoch_loss")]
    assert len(losses) >= 5
    assert losses[-1] < losses[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.mark.pipeline
def test_tfxp_tensorboard_serves_the_training_curves(two_runs):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tensorboard", "--output", str(two_runs.output), "--port", str(port)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runs, deadline = [], time.monotonic() + 180
        while not runs and time.monotonic() < deadline and server.poll() is None:
            time.sleep(2)
            try:
                runs = _get_json(f"http://127.0.0.1:{port}/data/runs")
            except OSError:
                pass
        assert server.poll() is None, server.communicate()[1][-2000:]
        train_runs = [r for r in runs if r.endswith("/train")]
        assert train_runs, runs
        tags = _get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        assert "epoch_loss" in tags[train_runs[0]]
    finally:
        stop(server)


@pytest.mark.pipeline
def test_a_model_below_the_bar_is_not_pushed(finished_run):
    """Only the Evaluator's threshold changes after a blessed run, so only it and the Pusher re-run."""
    result = run_tfxp("run", "--output", str(finished_run), *FAST_RUN_ARGS, "--threshold", "1.01")
    assert result.code == 3, result.stderr
    out = " ".join(result.stdout.split())
    assert "Not blessed: Overall: accuracy = " in out and "misses ≥ 1.01" in out
    assert "Not pushed;" in out
    assert len(_versions(finished_run)) == 1
    _, runs = _runs(finished_run)
    assert runs[-1][nodes.TRAINER].state == "CACHED"
    assert runs[-1][nodes.EVALUATOR].state == "COMPLETE"
    assert lineage.custom_property(runs[-1][nodes.PUSHER].output("pushed_model"), "pushed") == 0
    again = run_tfxp("run", "--output", str(finished_run), *FAST_RUN_ARGS, "--threshold", "1.01")
    assert again.code == 3  # the unchanged rerun replays the verdict too
    replayed = " ".join(again.stdout.split())
    assert "Nothing changed since the run" in replayed and "Not blessed: Overall: accuracy = " in replayed
    assert len(_runs(finished_run)[1]) == len(runs)


def test_missing_data_folder_is_one_clear_error(tmp_path):
    result = run_tfxp("run", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "out"))
    assert result.code == 2
    assert result.stderr.strip() == (
        f"Error: data folder {tmp_path / 'nope'} does not exist (set [data] path in the project file, or pass --data)"
    )
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_tfxp("run", "--output", str(blocker / "outputs"))
    assert result.code == 2
    assert result.stderr.startswith(f"Error: output folder {blocker / 'outputs'} is not writable")
    assert "Traceback" not in result.stderr


def test_every_command_has_help():
    for args in (
        ["--help"],
        *(
            [command, "--help"]
            for command in (
                "init",
                "run",
                "watch",
                "tensorboard",
                "models",
                "rollback",
                "pending",
                "approve",
                "reject",
                "monitor",
                "status",
                "runs",
                "lineage",
                "report",
            )
        ),
    ):
        result = run_tfxp(*args)
        assert result.code == 0
        assert "Usage:" in result.stdout
    assert "--no-tuner" in run_tfxp("run", "--help").stdout


def test_tensorboard_without_runs_explains_what_to_do(tmp_path):
    result = run_tfxp("tensorboard", "--output", str(tmp_path))
    assert result.code == 2
    assert "run `tfxp run` first" in result.stderr


@pytest.mark.pipeline
def test_training_reads_the_whole_split_shuffled_although_the_file_is_sorted(two_runs):
    """penguins.csv lists all Adelie first; the Trainer's first batch must not."""
    import tensorflow_transform as tft
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from tfx.types import standard_artifacts

    from models import training
    from models.features import Label, Problem

    store, runs = _runs(two_runs.output)
    transform = runs[0][nodes.TRANSFORM]
    examples = standard_artifacts.Examples()
    examples.set_mlmd_artifact(runs[0][nodes.EXAMPLE_GEN].output("examples"))
    accessor = DataAccessor(tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []), None, None)
    tft_output = tft.TFTransformOutput(transform.output("transform_graph").uri)
    files = [f"{examples.uri}/Split-train/*"]
    rows = training.count_examples(files)
    label = Label(LABEL, Problem.MULTICLASS, ("Adelie", "Chinstrap", "Gentoo"))

    def first_batch(shuffle_rows: int) -> set[int]:
        dataset = training.make_dataset(files, accessor, tft_output, label, 32, shuffle_rows)
        _, labels = next(iter(dataset))
        return set(labels.numpy().tolist())

    assert rows > 200
    assert first_batch(0) == {0}  # read in file order: Adelie only
    assert first_batch(rows) == {0, 1, 2}
