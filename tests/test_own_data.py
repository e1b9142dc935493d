"""Bring your own data: `tfxp init` then `tfxp run`, from configuration alone, on data shaped unlike penguins.

- diabetes (scikit-learn's real clinical table) as Parquet: regression;
- subscriptions (seeded churn generator) as two CSV spans: binary, with missing values, a
  high-cardinality string, a timestamp, an id and a leak. Span 2 trains against span 1's model;
- loans (seeded generator) with one large branch whose outcomes are coin flips: the fairness gate
  across slices stops the model, and the same model without the gate is pushed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipeline import lineage, nodes
from tests import datasets
from tests.conftest import CliResult, run_tfxp

pytestmark = pytest.mark.pipeline  # every test here reads a project after `tfxp init` and `tfxp run`

NO_TUNER = ("--no-tuner",)  # the Tuner is covered by the penguins run; these check the data paths


@dataclasses.dataclass
class Project:
    """A user's project folder after init and a run."""

    folder: Path
    init: CliResult
    runs: list[CliResult]

    @property
    def output(self) -> Path:
        return self.folder / "outputs"

    @property
    def config(self) -> dict:
        return tomllib.loads((self.folder / "tfxp.toml").read_text())

    def serving_versions(self, model: str) -> list[Path]:
        folder = self.output / "serving" / model
        return sorted(folder.iterdir()) if folder.exists() else []

    def lineage(self):
        store = lineage.open_store(self.output)
        return store, [lineage.run_executions(store, run) for run in lineage.pipeline_runs(store)]


def _flat(text: str) -> str:
    """What a user reads, without rich's line wrapping and table borders."""
    return " ".join(text.replace("│", " ").split())


def _init_and_run(folder: Path, init_args: list[str], *runs: tuple[str, ...]) -> Project:
    """`tfxp init` in the project folder, then each run, as a user would type them."""
    init = run_tfxp("init", "--project", str(folder), *init_args)
    assert init.code == 0, init.stdout + init.stderr
    results = [run_tfxp("run", "--config", str(folder / "tfxp.toml"), *args) for args in runs]
    return Project(folder, init, results)


# ---------------------------------------------------------------- diabetes: regression from Parquet


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory) -> Project:
    folder = tmp_path_factory.mktemp("diabetes")
    datasets.write_diabetes(folder / "exports", "parquet")
    project = _init_and_run(
        folder, ["--data", str(folder / "exports"), "--label", "progression", "--name", "diabetes"], NO_TUNER
    )
    assert project.runs[0].code == 0, project.runs[0].stdout + project.runs[0].stderr
    return project


def test_init_infers_regression_and_writes_a_config_to_review(diabetes):
    out = _flat(diabetes.init.stdout)
    assert "442 rows" in out
    assert "Problem: regression (inferred: 'progression' is a float)" in out
    config = diabetes.config
    assert config["data"]["format"] == "parquet" and config["data"]["path"] == "exports"
    assert config["label"] == {"column": "progression", "problem": "regression"}
    assert config["features"]["overrides"] == {"sex": {"encoding": "vocabulary"}}  # 1/2 coded: a category
    assert config["evaluation"]["metric"] == "rmse"
    assert 70 < config["evaluation"]["threshold"] < 85  # the label's standard deviation, 77.0
    assert (diabetes.folder / "schema" / "schema.pbtxt").is_file()


def test_regression_run_reports_rmse_and_pushes(diabetes):
    out = _flat(diabetes.runs[0].stdout)
    assert "Project diabetes: regression on 'progression' (from the project file)" in out
    assert "Checked 1 file(s), 442 rows" in out
    assert "rmse" in out and "mae" in out and "sex=1" in out
    assert "Blessed" in out
    assert len(diabetes.serving_versions("diabetes")) == 1

    [report_line] = [line for line in diabetes.runs[0].stdout.splitlines() if line.startswith("Report: ")]
    page = Path(report_line.removeprefix("Report: ")).read_text()
    assert "Predicted against actual, eval split" in page  # the regression chart, drawn from the model's predictions
    chart = page[page.index("Predicted against actual") :]
    assert 'id="predicted-PathCollection' in chart and "predicted progression" in chart
    assert chart.count("<use ") >= 100  # a dot per eval example (about 140 of 442 rows)


def _eval_examples(output: Path) -> list[tf.train.Example]:
    """The newest eval split ExampleGen wrote: rows the model never trained on."""
    split = max(
        (output / "pipeline" / nodes.EXAMPLE_GEN / "examples").glob("*/Split-eval"), key=lambda p: int(p.parent.name)
    )
    records = tf.data.TFRecordDataset([str(p) for p in split.glob("*.gz")], compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()) for r in records]


def _serve(version: Path, examples: list[tf.train.Example], label: str) -> tuple[dict, list[tf.train.Example]]:
    """Calls serving_default as TF Serving would: serialized tf.Examples without the label."""
    model = tf.saved_model.load(str(version))
    requests = []
    for example in examples:
        request = tf.train.Example()
        request.CopyFrom(example)
        del request.features.feature[label]
        requests.append(request.SerializeToString())
    return model.signatures["serving_default"](examples=tf.constant(requests)), examples


def test_served_regression_beats_predicting_the_mean(diabetes):
    (version,) = diabetes.serving_versions("diabetes")
    outputs, examples = _serve(version, _eval_examples(diabetes.output), "progression")
    truth = np.array([e.features.feature["progression"].float_list.value[0] for e in examples])
    predicted = outputs["prediction"].numpy().reshape(-1)
    assert predicted.shape == truth.shape and len(truth) > 100
    rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    assert rmse < 0.85 * truth.std(), (rmse, truth.std())  # clearly better than the mean alone


# ---------------------------------------------------------------- subscriptions: binary, two spans of CSV


@pytest.fixture(scope="module")
def subscriptions(tmp_path_factory) -> Project:
    folder = tmp_path_factory.mktemp("churn")
    datasets.write_subscriptions(folder / "exports" / "span-1", count=1500, seed=7)
    datasets.write_subscriptions(folder / "exports" / "span-2", count=1500, seed=8, first_id=1501)
    return _init_and_run(
        folder,
        ["--data", str(folder / "exports"), "--label", "churned", "--exclude", datasets.LEAK_COLUMN, "--name", "churn"],
        ("--span", "1", *NO_TUNER),
        NO_TUNER,  # the newest span: 2
    )


def test_init_explains_each_column(subscriptions):
    out = _flat(subscriptions.init.stdout)
    assert "customer_id BYTES 0% 1500 excluded looks like an id: all 1500 values distinct" in out
    assert "signed_up_at BYTES 0%" in out and "timestamp: hour, weekday, month" in out
    assert "company BYTES 0%" in out and "hashed into 1000 buckets" in out
    assert "monthly_spend FLOAT 8%" in out and "z-score + missing indicator" in out
    assert f"{datasets.LEAK_COLUMN} BYTES" in out and "given with --exclude" in out
    assert "Problem: binary (inferred: 'churned' is a string with 2 values)" in out
    config = subscriptions.config
    assert config["features"]["exclude"] == ["customer_id", datasets.LEAK_COLUMN]
    assert config["features"]["overrides"]["company"] == {"encoding": "hashed", "buckets": 1000}
    assert config["features"]["overrides"]["signed_up_at"] == {"encoding": "timestamp"}
    assert config["evaluation"]["metric"] == "auc"


def test_each_span_trains_and_the_first_is_pushed(subscriptions):
    first, second = subscriptions.runs
    assert first.code == 0, first.stdout + first.stderr
    assert second.code in (0, 3), second.stdout + second.stderr  # 3: blessed no better than span 1's model
    assert "Checked span 1, 1 file(s), 1500 rows" in _flat(first.stdout)
    assert "Checked span 2, 1 file(s), 1500 rows" in _flat(second.stdout)
    assert "auc" in first.stdout and "plan=basic" in first.stdout
    assert "Against the last blessed model" in second.stdout
    assert len(subscriptions.serving_versions("churn")) == (2 if second.code == 0 else 1)


def test_lineage_records_which_span_trained_which_model_and_the_baseline(subscriptions):
    store, (first, second) = subscriptions.lineage()

    def trained_on_span(run) -> int:
        model = run[nodes.TRAINER].output("model")
        examples = [
            a
            for a in lineage.upstream_artifacts(store, model.id)
            if a.id == run[nodes.EXAMPLE_GEN].output("examples").id
        ]
        assert examples, "the model's lineage does not reach ExampleGen's output"
        return lineage.custom_property(examples[0], "span")

    assert trained_on_span(first) == 1
    assert trained_on_span(second) == 2
    (baseline,) = second[nodes.EVALUATOR].inputs["baseline_model"]
    assert baseline.id == first[nodes.TRAINER].output("model").id
    assert "(span 1)" in subscriptions.runs[0].stdout and "(span 2)" in subscriptions.runs[1].stdout


def test_served_churn_model_gives_probabilities_and_class_names(subscriptions):
    version = subscriptions.serving_versions("churn")[-1]
    examples = _eval_examples(subscriptions.output)[:50]
    outputs, _ = _serve(version, examples, "churned")
    probability = outputs["probability"].numpy().reshape(-1)
    assert probability.shape == (50,) and ((probability > 0) & (probability < 1)).all()
    names = {n.decode() for n in outputs["class_name"].numpy()}
    assert names <= {"no", "yes"}


# ---------------------------------------------------------------- a CRM export: what real tables contain


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> Project:
    folder = tmp_path_factory.mktemp("crm")
    datasets.write_crm_export(folder / "exports")
    # A low bar: this test is about the data path, not the model's quality.
    return _init_and_run(
        folder,
        ["--data", str(folder / "exports"), "--label", "renewed", "--name", "crm"],
        (*NO_TUNER, "--threshold", "0.5"),
    )


def test_rows_without_a_label_are_left_out_and_said_so(crm):
    (run,) = crm.runs
    assert run.code == 0, run.stdout + run.stderr
    assert f"{datasets.EXPORT_UNLABELED} row(s) have no value in the label 'renewed'; they are left out." in _flat(
        run.stdout
    )
    store, (executions,) = crm.lineage()
    statistics = executions[nodes.STATISTICS_GEN].output("statistics")
    counted = 0
    for split in ("train", "eval"):
        path = Path(statistics.uri) / f"Split-{split}" / "FeatureStats.pb"
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
        counted += stats.datasets[0].num_examples
    assert counted == 600 - datasets.EXPORT_UNLABELED


def test_the_served_model_reads_us_dates_and_unix_seconds(crm):
    (version,) = crm.serving_versions("crm")
    examples = _eval_examples(crm.output)[:20]
    assert examples[0].features.feature["signed_up"].bytes_list.value[0].decode().count("/") == 2  # as exported
    outputs, _ = _serve(version, examples, "renewed")
    probability = outputs["probability"].numpy().reshape(-1)
    assert probability.shape == (20,) and np.isfinite(probability).all()
    excluded = crm.config["features"]["exclude"]
    assert set(excluded) == {"row", "customer_id", "note", "country"}


# ---------------------------------------------------------------- loans: the fairness gate across slices

GAP_LINE = "# max_slice_gap = 0.05"  # as init writes it: off, with an example


@pytest.fixture(scope="module")
def loans(tmp_path_factory) -> Project:
    """init, a run with max_slice_gap = 0.1, then the same project as init wrote it (no gate): the Trainer's
    result is reused, so both runs judge one model."""
    folder = tmp_path_factory.mktemp("loans")
    datasets.write_loans(folder / "exports")
    init = run_tfxp(
        "init", "--project", str(folder), "--data", str(folder / "exports"), "--label", "repaid", "--name", "loans"
    )
    assert init.code == 0, init.stdout + init.stderr
    project_file = folder / "tfxp.toml"
    written = project_file.read_text()
    assert GAP_LINE in written.splitlines()
    project_file.write_text(written.replace(GAP_LINE, "max_slice_gap = 0.1"))
    gated = run_tfxp("run", "--config", str(project_file), *NO_TUNER)
    project_file.write_text(written)
    ungated = run_tfxp("run", "--config", str(project_file), *NO_TUNER)
    return Project(folder, init, [gated, ungated])


def _table_row(out: str, name: str) -> list[str]:
    """The cells of one slice's row in the summary table."""
    (line,) = [line for line in out.splitlines() if line.startswith(f"│ {name} ")]
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_a_large_slice_far_behind_overall_stops_the_model(loans):
    gated = loans.runs[0]
    assert gated.code == 3, gated.stdout + gated.stderr
    out = _flat(gated.stdout)
    found = re.search(
        r"Not blessed: branch=harbor: auc = ([\d.]+) against ([\d.]+) overall \((\d+) examples\), "
        r"([\d.]+) worse, more than max_slice_gap = 0.1 Servable",
        out,
    )
    assert found, out
    value, overall, size, gap = float(found[1]), float(found[2]), int(found[3]), float(found[4])
    assert size >= 30 and value < 0.65 and overall > 0.75  # coin flips, against a model that ranks the rest well
    assert gap == pytest.approx(overall - value, abs=2e-4)
    harbor = _table_row(gated.stdout, "branch=harbor")
    assert harbor[:3] == ["branch=harbor", str(size), f"{value:.4f}"] and harbor[-1] == "◀ worst"
    summit = _table_row(gated.stdout, "branch=summit")  # coin flips too, but too few rows to judge
    assert int(summit[1]) < 30 and summit[-1] == "< 30 examples" and "branch=summit:" not in out
    assert "Fairness gate: no slice of 30 or more examples may be more than 0.1 worse than overall in auc." in out
    assert "Not pushed;" in out
    _, (first, _) = loans.lineage()
    assert lineage.custom_property(first[nodes.EVALUATOR].output("blessing"), "blessed") == 0
    assert lineage.custom_property(first[nodes.PUSHER].output("pushed_model"), "pushed") == 0


def test_the_same_model_without_the_gate_is_blessed_and_pushed(loans):
    gated, ungated = loans.runs
    assert ungated.code == 0, ungated.stdout + ungated.stderr
    out = _flat(ungated.stdout)
    assert "Blessed: the model meets every threshold." in out and "Pushed to" in out
    assert "No fairness gate ([evaluation] max_slice_gap is not set). Worst slice: branch=harbor, auc" in out
    assert _table_row(ungated.stdout, "branch=harbor") == _table_row(gated.stdout, "branch=harbor")  # one model
    _, (first, second) = loans.lineage()
    (version,) = loans.serving_versions("loans")  # the gated run pushed nothing: this is the second run's push
    assert lineage.custom_property(second[nodes.PUSHER].output("pushed_model"), "pushed_destination") == str(version)
    assert second[nodes.TRAINER].state == "CACHED" and second[nodes.EVALUATOR].state == "COMPLETE"
    assert second[nodes.TRAINER].output("model").id == first[nodes.TRAINER].output("model").id


def test_binary_runs_report_false_positive_and_negative_rates_per_slice(loans):
    out = loans.runs[1].stdout
    header = next(line for line in out.splitlines() if line.startswith("┃ slice"))
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == [
        "slice",
        "examples",
        "auc",
        "accuracy",
        "log_loss",
        "fpr",
        "fnr",
        "note",
    ]
    for name in ("Overall", "branch=east", "branch=harbor", "branch=north"):
        fpr, fnr = (float(cell) for cell in _table_row(out, name)[5:7])
        assert 0 <= fpr <= 1 and 0 <= fnr <= 1
    harbor, north = _table_row(out, "branch=harbor"), _table_row(out, "branch=north")
    assert float(harbor[5]) + float(harbor[6]) > float(north[5]) + float(north[6])  # coin flips err more
