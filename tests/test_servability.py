"""The servability check and the Pusher's use of it, on small SavedModels built here: good ones, and ones
that load in this project's Python but would fail in TF Serving."""

import json
import shutil
import uuid
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

import models  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from pipeline import pusher, servability, serving
from tests.datasets import PROJECT_ROOT

LABEL = "y"
FORBIDDEN = {"models", "pipeline", "tf_keras", "keras", "tfx", "tensorflow_transform", "tensorflow_model_analysis"}
PARSE_SPEC = {"x": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}


class Scorer(tf.Module):
    """What TF Serving would call: serialized tf.Examples in, a score and a class name out."""

    def __init__(self, score_fn=None):
        super().__init__()
        self.weight = tf.Variable(2.0)
        self.score_fn = score_fn or (lambda x: x * self.weight)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        x = tf.io.parse_example(examples, PARSE_SPEC)["x"]
        score = self.score_fn(x)
        return {"score": tf.ensure_shape(score, [None, 1]), "class_name": tf.fill([tf.shape(x)[0]], "a")}


class FloatInput(tf.Module):
    """A signature that takes features, not serialized tf.Examples: a Predict request of examples cannot call it."""

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(self, x):
        return {"score": x * 2.0}


def save(module: tf.Module, folder: Path) -> Path:
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def python_only(x):
    # Runs this process's Python: the op's callback exists only where the model was built.
    return tf.reshape(tf.py_function(lambda t: t * 2.0, [x], tf.float32), [-1, 1])


def with_unknown_op(folder: Path) -> Path:
    """Renames one op in the saved graph to an op no TensorFlow registers, as a custom op missing from a server."""
    path = folder / "saved_model.pb"
    model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for function in model.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "Mul":
                node.op = "TfxpCustomScoringOp"
                path.write_bytes(model.SerializeToString())
                return folder
    raise AssertionError("no Mul op to rename")


def eval_examples(folder: Path, rows: int = 70) -> standard_artifacts.Examples:
    """An ExampleGen-shaped Examples artifact: gzipped tf.Examples per split, with the label in."""
    for split in ("train", "eval"):
        (folder / f"Split-{split}").mkdir(parents=True)
        with tf.io.TFRecordWriter(str(folder / f"Split-{split}" / "data.gz"), options="GZIP") as writer:
            for i in range(rows):
                example = tf.train.Example()
                example.features.feature["x"].float_list.value.append(float(i))
                example.features.feature[LABEL].int64_list.value.append(i % 2)
                writer.write(example.SerializeToString())
    examples = standard_artifacts.Examples()
    examples.uri = str(folder)
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return examples


def evaluated(model_folder: Path, digest: str | None = None) -> standard_artifacts.ModelBlessing:
    """The Evaluator's blessing of the model at `model_folder`, with the digest it records (or `digest`)."""
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_string_custom_property(serving.MODEL_DIGEST, digest or serving.saved_model_digest(model_folder))
    return blessing


def check(
    model_folder: Path, tmp_path: Path, examples: standard_artifacts.Examples | None = None, before=None
) -> standard_artifacts.InfraBlessing:
    """Runs the ServabilityCheck component's executor, as the pipeline would, on a Model artifact at `model_folder`
    the Evaluator evaluated; `before(model_folder)` runs between the evaluation and the check."""
    model = standard_artifacts.Model()
    model.uri = str(model_folder.parent)  # the Trainer writes the SavedModel to <uri>/Format-Serving
    model_blessing = evaluated(model_folder)
    if before is not None:
        before(model_folder)
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    Path(blessing.uri).mkdir()
    executor = servability.ServabilityCheck.EXECUTOR_SPEC.executor_class()
    executor.Do(
        {
            "model": [model],
            "model_blessing": [model_blessing],
            "examples": [examples or eval_examples(tmp_path / "examples")],
        },
        {"blessing": [blessing]},
        {"label": LABEL, "model_name": "scorer", "code_digest": "test"},
    )
    return blessing


@pytest.fixture
def model_dir(tmp_path) -> Path:
    (tmp_path / "model").mkdir()
    return tmp_path / "model" / "Format-Serving"


def test_a_servable_model_is_blessed_with_its_figures_and_stamped_with_warmup(model_dir, tmp_path):
    blessing = check(save(Scorer(), model_dir), tmp_path)
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("has_model") == 1
    assert blessing.get_int_custom_property("warmup_requests") == len(servability.WARMUP_BATCHES)
    for figure in ("load_seconds", "p50_ms_batch_1", "p99_ms_batch_1", "p50_ms_batch_64", "p99_ms_batch_64"):
        assert blessing.get_float_custom_property(figure) > 0, figure
    assert blessing.get_float_custom_property("p50_ms_batch_1") <= blessing.get_float_custom_property("p99_ms_batch_1")
    assert "loads in" in blessing.get_string_custom_property("verdict")
    assert (Path(blessing.uri) / servability.BLESSED_FILE).is_file()
    stamped = Path(blessing.uri) / "stamped_model"
    assert (stamped / "saved_model.pb").is_file() and (stamped / "variables").is_dir()
    assert (stamped / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_warmup_requests_are_prediction_logs_of_eval_rows_without_the_label(model_dir, tmp_path):
    blessing = check(save(Scorer(), model_dir), tmp_path)
    stamped = Path(blessing.uri) / "stamped_model"
    loaded = tf.saved_model.load(str(stamped)).signatures["serving_default"]
    sizes = []
    for record in tf.data.TFRecordDataset(str(stamped / "assets.extra" / "tf_serving_warmup_requests")):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "scorer" and request.model_spec.signature_name == "serving_default"
        serialized = tf.make_ndarray(request.inputs["examples"])
        rows = [tf.train.Example.FromString(s) for s in serialized]
        assert all(LABEL not in row.features.feature and "x" in row.features.feature for row in rows)
        outputs = loaded(examples=tf.constant(serialized))  # replayed as TF Serving does at load
        assert outputs["score"].shape == (len(rows), 1)
        sizes.append(len(rows))
    assert sizes == list(servability.WARMUP_BATCHES)


def test_the_check_runs_in_a_process_without_this_project_or_keras(model_dir, tmp_path):
    stamped = tmp_path / "stamped"
    save(Scorer(), stamped)
    servability.write_warmup(str(stamped), "scorer", [tf.train.Example().SerializeToString()])
    verdict = servability.run_probe(str(stamped))
    assert verdict["servable"], verdict
    assert {"tensorflow", "tensorflow_serving"} <= set(verdict["imported"])
    assert not FORBIDDEN & set(verdict["imported"])
    assert not [p for p in verdict["sys_path"] if Path(p).resolve() == PROJECT_ROOT.resolve()]
    assert verdict["outputs"] == {"score": ["float32", [-1, 1]], "class_name": ["string", [-1]]}


@pytest.mark.parametrize(
    ("broken", "stage", "words"),
    [
        (lambda folder: save(Scorer(python_only), folder), "call", "pyfunc"),
        (lambda folder: with_unknown_op(save(Scorer(), folder)), "load", "TfxpCustomScoringOp"),
        (lambda folder: save(FloatInput(), folder), "signature", "serialized tf.Examples"),
        (lambda folder: save(Scorer(lambda x: x * tf.math.log(-1.0)), folder), "call", "NaN"),
    ],
    ids=["python-only function", "unregistered op", "takes features, not tf.Examples", "NaN output"],
)
def test_a_model_tf_serving_would_fail_on_is_not_blessed_and_says_why(broken, stage, words, model_dir, tmp_path):
    blessing = check(broken(model_dir), tmp_path)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property("has_model") == 0
    verdict = blessing.get_string_custom_property("verdict")
    assert verdict.startswith(f"fails at {stage}:") and words in verdict, verdict
    assert json.loads((Path(blessing.uri) / servability.NOT_BLESSED_FILE).read_text())["stage"] == stage


def push_with(
    blessed: int, infra_blessed: int, stamped_from: Path, tmp_path: Path, keep_versions: int = 5, tamper=None
):
    """Runs the project's Pusher executor with a model blessing and an infra blessing; returns PushedModel.

    The infra blessing keeps the stamped model's digest, as the servability check does; `tamper(stamped_from)`
    runs after that."""
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.set_int_custom_property("blessed", blessed)
    infra = standard_artifacts.InfraBlessing()
    infra.uri = str(stamped_from.parent)
    infra.set_int_custom_property("blessed", infra_blessed)
    infra.set_int_custom_property("has_model", infra_blessed)
    infra.set_string_custom_property(serving.MODEL_DIGEST, serving.saved_model_digest(stamped_from))
    if tamper is not None:
        tamper(stamped_from)
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "trained")
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed" / uuid.uuid4().hex)
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(tmp_path / "serving" / "scorer"))
    )
    pusher.Executor().Do(
        {"model": [model], "model_blessing": [model_blessing], "infra_blessing": [infra]},
        {"pushed_model": [pushed]},
        {
            "push_destination": proto_utils.proto_to_json(destination),
            "custom_config": json.dumps({pusher.KEEP_VERSIONS: keep_versions}),
        },
    )
    return pushed


@pytest.fixture
def stamped(tmp_path) -> Path:
    folder = tmp_path / "infra" / "stamped_model"
    save(Scorer(), folder)
    servability.write_warmup(str(folder), "scorer", [tf.train.Example().SerializeToString()])
    return folder


def test_the_pusher_publishes_the_stamped_model_with_its_warmup(stamped, tmp_path):
    pushed = push_with(1, 1, stamped, tmp_path)
    folder = serving.ServingFolder(tmp_path / "serving", "scorer")
    [version] = folder.versions()
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == str(version)
    assert (folder.version_dir(version) / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert folder.served() == version and folder.config_path.is_file()
    # What `tfxp models` recomputes: the digest of the version's files as published.
    assert pushed.get_string_custom_property(serving.VERSION_DIGEST) == serving.saved_model_digest(
        folder.version_dir(version)
    )


def test_the_pusher_refuses_a_stamped_model_changed_after_the_servability_check(stamped, tmp_path):
    def swap_warmup(folder: Path) -> None:
        servability.write_warmup(str(folder), "other", [tf.train.Example().SerializeToString()])

    with pytest.raises(serving.DeliveryError, match="changed after the servability check called it") as refused:
        push_with(1, 1, stamped, tmp_path, tamper=swap_warmup)
    assert "then," in str(refused.value) and "nothing was pushed" in str(refused.value)
    assert serving.ServingFolder(tmp_path / "serving", "scorer").versions() == []


def test_a_model_swapped_on_disk_after_evaluation_is_not_servable(model_dir, tmp_path):
    def retrain(folder: Path) -> None:  # another model in the Trainer's output folder
        shutil.rmtree(folder)
        save(Scorer(lambda x: x * 3.0), folder)

    blessing = check(save(Scorer(), model_dir), tmp_path, before=retrain)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property("has_model") == 0
    verdict = blessing.get_string_custom_property("verdict")
    assert verdict.startswith(f"fails at copy: the model's files in {model_dir} changed after the Evaluator"), verdict
    assert json.loads((Path(blessing.uri) / servability.NOT_BLESSED_FILE).read_text())["stage"] == "copy"


@pytest.mark.parametrize(("blessed", "infra_blessed"), [(1, 0), (0, 1)], ids=["not servable", "not blessed"])
def test_the_pusher_pushes_nothing_unless_both_checks_blessed(blessed, infra_blessed, stamped, tmp_path):
    pushed = push_with(blessed, infra_blessed, stamped, tmp_path)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not (tmp_path / "serving" / "scorer").exists() or not list((tmp_path / "serving" / "scorer").iterdir())


def test_retention_is_recorded_on_the_pushed_model(stamped, tmp_path):
    first = push_with(1, 1, stamped, tmp_path, keep_versions=1)
    retrained = tmp_path / "infra2" / "stamped_model"
    save(Scorer(lambda x: x * 3.0), retrained)
    second = push_with(1, 1, retrained, tmp_path, keep_versions=1)
    folder = serving.ServingFolder(tmp_path / "serving", "scorer")
    assert folder.versions() == [int(second.get_string_custom_property("pushed_version"))]
    assert second.get_string_custom_property(pusher.REMOVED_VERSIONS) == first.get_string_custom_property(
        "pushed_version"
    )


def test_a_re_executed_pusher_does_not_publish_the_same_model_twice(stamped, tmp_path):
    # A changed [delivery] setting re-keys the Pusher's cache, so it runs again on the model it pushed.
    first = push_with(1, 1, stamped, tmp_path)
    again = push_with(1, 1, stamped, tmp_path)
    folder = serving.ServingFolder(tmp_path / "serving", "scorer")
    assert len(folder.versions()) == 1
    assert again.get_string_custom_property("pushed_version") == first.get_string_custom_property("pushed_version")
    assert again.get_int_custom_property(pusher.REUSED) == 1 and first.get_int_custom_property(pusher.REUSED) == 0
    assert again.get_string_custom_property(serving.VERSION_DIGEST) == first.get_string_custom_property(
        serving.VERSION_DIGEST
    )


def test_eval_rows_drop_the_label_and_keep_every_feature(tmp_path):
    rows = servability.eval_rows(eval_examples(tmp_path / "examples", rows=70), LABEL)
    assert len(rows) == 64
    parsed = [tf.train.Example.FromString(r) for r in rows]
    assert [p.features.feature["x"].float_list.value[0] for p in parsed] == [float(i) for i in range(64)]
    assert all(LABEL not in p.features.feature for p in parsed)


def test_an_empty_eval_split_is_not_servable_rather_than_unchecked(model_dir, tmp_path):
    blessing = check(save(Scorer(), model_dir), tmp_path, eval_examples(tmp_path / "examples", rows=0))
    assert blessing.get_int_custom_property("blessed") == 0
    assert "no rows" in blessing.get_string_custom_property("verdict")
