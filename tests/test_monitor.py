"""`tfxp monitor`: serving requests compared with the serving model's training statistics (training/serving skew).

One finished run serves every test here; each writes its own requests: TF Serving request logs built with its own
protos, or CSV and Parquet tables of request rows.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from pipeline import cli, config, lineage, monitoring, registry, request_logs, serving, splits
from tests.conftest import cold_run, run_tfxp
from tests.datasets import PENGUINS_CSV, PROJECT_ROOT

PROJECT = config.load_project(PROJECT_ROOT / config.CONFIG_FILE)
LABEL = PROJECT.label.column
ROWS = 400
SHIFTED, TRIPLED = "body_mass_g", "island"  # what the skewed requests move
TRIPLED_VALUE = "Torgersen"  # about 15% of the penguins; 45% of the skewed requests


def _requests() -> pd.DataFrame:
    """Penguins rows, without the label, as a client sends them; whole numbers stay whole where values are missing."""
    table = pd.read_csv(PENGUINS_CSV)
    for column in table.columns:
        if pd.api.types.is_float_dtype(table[column]) and (table[column].dropna() % 1 == 0).all():
            table[column] = table[column].astype("Int64")
    return table.drop(columns=[LABEL])


def clean_rows() -> pd.DataFrame:
    """Rows drawn from the training data itself."""
    return _requests().sample(ROWS, replace=True, random_state=7).reset_index(drop=True)


def skewed_rows() -> pd.DataFrame:
    """Body mass two standard deviations heavier, and one island's share tripled."""
    rows = _requests()
    share = (rows[TRIPLED] == TRIPLED_VALUE).mean() * 3
    tripled = rows[rows[TRIPLED] == TRIPLED_VALUE].sample(round(ROWS * share), replace=True, random_state=7)
    others = rows[rows[TRIPLED] != TRIPLED_VALUE].sample(ROWS - len(tripled), replace=True, random_state=7)
    skewed = pd.concat([tripled, others], ignore_index=True)
    skewed[SHIFTED] = skewed[SHIFTED] + round(2 * rows[SHIFTED].std())
    return skewed


def example(row: dict) -> tf.train.Example:
    """One request row as the tf.Example a client serializes; a missing value is an absent feature."""
    built = tf.train.Example()
    for name, value in row.items():
        if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            continue
        feature = built.features.feature[name]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode())
        elif isinstance(value, (int, np.integer)):
            feature.int64_list.value.append(int(value))
        else:
            feature.float_list.value.append(float(value))
    return built


def write_predict_log(path: Path, rows: pd.DataFrame, batch: int = 8) -> Path:
    """TF Serving's request log of `serving_default` predict calls, `batch` serialized tf.Examples each."""
    records = rows.to_dict("records")
    with tf.io.TFRecordWriter(str(path)) as writer:
        for start in range(0, len(records), batch):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = PROJECT.model_name
            serialized = [example(r).SerializeToString() for r in records[start : start + batch]]
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(serialized, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """The output folder of one finished run, whose model serves; tests only add skew checks to it."""
    output = tmp_path_factory.mktemp("monitor") / "outputs"
    cold_run(output)
    return output


def monitor(output: Path, requests: Path):
    return run_tfxp("monitor", "--output", str(output), "--requests", str(requests))


def distance_line(stdout: str, feature: str) -> list[str]:
    """The table row of one feature: name, distance, value, threshold, verdict."""
    [line] = [line.split() for line in stdout.splitlines() if line.split()[:1] == [feature]]
    return line


def assert_clean(result) -> None:
    assert result.code == cli.EXIT_OK, result.stdout + result.stderr
    assert "No skew" in result.stdout
    assert "crossed" not in result.stdout
    assert "Missing: none" in result.stdout


def assert_skewed(result) -> None:
    assert result.code == cli.EXIT_THRESHOLD_CROSSED, result.stdout + result.stderr
    threshold = PROJECT.monitoring.threshold
    shifted, tripled = distance_line(result.stdout, SHIFTED), distance_line(result.stdout, TRIPLED)
    assert shifted[1] == "Jensen-Shannon" and float(shifted[2]) > threshold(SHIFTED) == float(shifted[3])
    assert tripled[1] == "L-infinity" and float(tripled[2]) > threshold(TRIPLED) == float(tripled[3])
    assert shifted[-1] == tripled[-1] == "crossed"
    assert distance_line(result.stdout, "sex")[-1] == "ok"
    assert f"crossed ({TRIPLED}, {SHIFTED})" in result.stdout or f"crossed ({SHIFTED}, {TRIPLED})" in result.stdout


@pytest.mark.pipeline
def test_request_logs_only_the_skewed_one_crosses(served, tmp_path):
    assert_clean(monitor(served, write_predict_log(tmp_path / "clean.tfrecord", clean_rows())))
    assert_skewed(monitor(served, write_predict_log(tmp_path / "skewed.tfrecord", skewed_rows())))


@pytest.mark.pipeline
def test_tables_of_request_rows_only_the_skewed_one_crosses(served, tmp_path):
    clean = tmp_path / "clean.csv"
    clean_rows().to_csv(clean, index=False)
    assert_clean(monitor(served, clean))
    skewed = tmp_path / "skewed"  # a folder of files: half the rows in CSV, half in Parquet
    skewed.mkdir()
    rows = skewed_rows().sample(frac=1, random_state=1)
    rows[: ROWS // 2].to_csv(skewed / "a.csv", index=False)
    rows[ROWS // 2 :].to_parquet(skewed / "b.parquet", index=False)
    result = monitor(served, skewed)
    assert_skewed(result)
    assert f"{ROWS} request rows from 2 files" in result.stdout


@pytest.mark.pipeline
def test_a_missing_input_crosses_and_an_unexpected_column_is_reported(served, tmp_path):
    missing = tmp_path / "missing.csv"
    clean_rows().drop(columns=["bill_depth_mm"]).to_csv(missing, index=False)
    result = monitor(served, missing)
    assert result.code == cli.EXIT_THRESHOLD_CROSSED, result.stdout + result.stderr
    assert "Missing: bill_depth_mm" in result.stdout
    assert "1 missing" in result.stdout

    extra = tmp_path / "extra.csv"
    clean_rows().assign(request_id=range(ROWS), **{LABEL: "Adelie"}).to_csv(extra, index=False)
    result = monitor(served, extra)
    assert result.code == cli.EXIT_OK, result.stdout + result.stderr  # the server ignores what it does not parse
    assert f"Unexpected: request_id, {LABEL}" in result.stdout or f"Unexpected: {LABEL}, request_id" in result.stdout


@pytest.mark.pipeline
def test_the_check_is_recorded_in_mlmd_linked_to_the_serving_model(served, tmp_path):
    requests = write_predict_log(tmp_path / "skewed.tfrecord", skewed_rows())
    result = monitor(served, requests)
    [execution_id] = map(int, re.findall(r"SkewCheck (\d+)", result.stdout))

    store = lineage.open_store(served)
    folder = serving.ServingFolder(served / "serving", PROJECT.model_name)
    [execution] = store.get_executions_by_id([execution_id])
    assert store.get_execution_types_by_id([execution.type_id])[0].name == monitoring.SKEW_CHECK
    assert execution.properties["requests"].string_value == str(requests)
    assert execution.properties["rows"].int_value == ROWS
    assert execution.properties["verdict"].string_value == "skewed"
    assert execution.properties["crossed"].int_value == 2
    [context] = store.get_contexts_by_execution(execution_id)
    assert context.name == PROJECT.model_name

    events = store.get_events_by_execution_ids([execution_id])
    inputs = {e.artifact_id for e in events if e.type == metadata_store_pb2.Event.INPUT}
    _, training = monitoring.serving_statistics(store, folder)
    assert inputs == {registry.served_model_id(store, folder.served()), training.id}
    outputs = store.get_artifacts_by_id([e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT])
    types = {t.id: t.name for t in store.get_artifact_types()}
    files = {types[a.type_id]: splits.split_file(a.uri, monitoring.SERVING_SPLIT, "") for a in outputs}
    assert (files["ExampleStatistics"] / splits.STATISTICS_FILE).is_file()
    assert (files["ExampleAnomalies"] / splits.ANOMALIES_FILE).is_file()
    assert all(Path(a.uri).is_relative_to(served / "monitoring") for a in outputs)

    last = monitoring.last_skew_check(store)
    assert (last.requests, last.rows, last.verdict) == (str(requests), ROWS, "skewed")
    assert {f.feature for f in last.crossed} == {SHIFTED, TRIPLED}
    assert last.model_id == registry.served_model_id(store, folder.served())

    status = run_tfxp("status", "--output", str(served))
    assert status.code == 0, status.stdout + status.stderr
    said = " ".join(status.stdout.split())
    assert f"Skew: {ROWS} request rows from {requests} against model {last.model_id}" in said
    assert "skewed (`tfxp monitor` exited 6)" in said and f"{SHIFTED}: Jensen-Shannon" in said


# TensorFlow's C++ start-up log, which the tests' TF_CPP_MIN_LOG_LEVEL lets through and a user's shell does not.
TF_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ")


def assert_one_line(result, *fragments: str) -> None:
    assert result.code == cli.EXIT_BAD_INPUT, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.strip().splitlines() if not TF_LOG_LINE.match(line)]
    assert len(said) == 1 and said[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.pipeline
def test_unreadable_requests_are_one_line(served, tmp_path):
    garbage = tmp_path / "requests.log"
    garbage.write_bytes(np.random.default_rng(0).bytes(2048))
    assert_one_line(monitor(served, garbage), str(garbage), "not a TFRecord file of request logs")

    examples = tmp_path / "examples.tfrecord"  # tf.Examples, not PredictionLogs
    with tf.io.TFRecordWriter(str(examples)) as writer:
        for row in clean_rows()[:5].to_dict("records"):
            writer.write(example(row).SerializeToString())
    assert_one_line(monitor(served, examples), str(examples), "holds no predict, classify, regress")

    broken = tmp_path / "broken.csv"
    broken.write_text("island,body_mass_g\nDream,heavy\n")
    assert_one_line(monitor(served, broken), str(broken), "not a readable csv file")


@pytest.mark.pipeline
def test_nothing_serving_or_no_training_statistics_is_one_line(served, tmp_path):
    requests = write_predict_log(tmp_path / "clean.tfrecord", clean_rows()[:16])
    unpushed = tmp_path / "unpushed"  # the run's records, but no serving folder
    unpushed.mkdir()
    shutil.copy(served / "metadata.sqlite", unpushed)
    assert_one_line(monitor(unpushed, requests), "nothing serves yet")

    cleaned = tmp_path / "cleaned"  # the pipeline folder was deleted since the push
    cleaned.mkdir()
    shutil.copy(served / "metadata.sqlite", cleaned)
    shutil.copytree(served / "serving", cleaned / "serving")
    store = lineage.open_store(cleaned)
    _, training = monitoring.serving_statistics(store, serving.ServingFolder(cleaned / "serving", PROJECT.model_name))
    training.uri = str(cleaned / "pipeline" / "gone")
    store.put_artifacts([training])
    assert_one_line(monitor(cleaned, requests), "no training statistics at")


def test_a_missing_requests_path_or_output_is_one_line(tmp_path):
    assert_one_line(monitor(tmp_path, tmp_path / "nope"), f"no such file or folder: {tmp_path / 'nope'}")
    requests = write_predict_log(tmp_path / "clean.tfrecord", clean_rows()[:16])
    assert_one_line(monitor(tmp_path, requests), "run `tfxp run` first")


def _log_file(path: Path, *logs: prediction_log_pb2.PredictionLog) -> Path:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def test_classify_regress_and_multi_inference_logs_carry_their_examples(tmp_path):
    rows = [example(r) for r in clean_rows()[:6].to_dict("records")]
    listed = input_pb2.Input(example_list=input_pb2.ExampleList(examples=rows[:2]))
    context = tf.train.Example()
    context.features.feature["year"].int64_list.value.append(2009)
    bare = [tf.train.Example(), tf.train.Example()]
    with_context = input_pb2.Input(
        example_list_with_context=input_pb2.ExampleListWithContext(examples=bare, context=context)
    )
    path = _log_file(
        tmp_path / "logs.gz",  # gzipped, as a logging pipeline may store them
        prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classification_pb2.ClassificationRequest(input=listed))
        ),
        prediction_log_pb2.PredictionLog(
            regress_log=prediction_log_pb2.RegressLog(request=regression_pb2.RegressionRequest(input=with_context))
        ),
        prediction_log_pb2.PredictionLog(
            multi_inference_log=prediction_log_pb2.MultiInferenceLog(
                request=inference_pb2.MultiInferenceRequest(input=listed)
            )
        ),
    )
    requests = request_logs.read_requests(path, {})
    assert requests.rows == 6
    years = [y for batch in requests.batches for y in batch.column("year").to_pylist()]
    assert years[2:4] == [[2009], [2009]]  # the context joined each bare example


def test_a_predict_request_without_serialized_examples_is_refused(tmp_path):
    request = predict_pb2.PredictRequest()
    request.inputs["body_mass_g"].CopyFrom(tf.make_tensor_proto([3750.0]))
    path = _log_file(
        tmp_path / "log", prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    )
    with pytest.raises(request_logs.RequestLogError, match="not the one string tensor of serialized tf.Examples"):
        request_logs.read_requests(path, {})
