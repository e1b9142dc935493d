"""The HTML run report: written at the end of one real penguins run and checked against what MLMD recorded, opened
in headless Chromium with the network cut off, and built for a hand-recorded run that stopped at a gate."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from models import evaluation
from pipeline import cli, config, history, lineage, monitoring, nodes, report, run_report, splits
from pipeline import settings as settings_module
from tests import mlmd_records
from tests.conftest import CliResult, run_tfxp
from tests.datasets import PROJECT_ROOT

CHROMIUM = shutil.which("chromium")
SECTIONS = ("run", "data", "model", "evaluation", "lineage", "serving")
LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", re.I)


def _settings(output: Path) -> settings_module.Settings:
    """The default project's settings, writing into `output`."""
    project = config.load_project(PROJECT_ROOT / config.CONFIG_FILE, {"output": str(output)})
    return settings_module.resolve(project, PROJECT_ROOT)


def _sections(page: str) -> dict[str, str]:
    """Each section's text, tags stripped (charts' SVG text included)."""
    found = dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))
    return {name: html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))) for name, body in found.items()}


@dataclasses.dataclass
class ReportedRun:
    output: Path
    result: CliResult
    run_id: int
    path: Path


@pytest.fixture(scope="module")
def reported_run(two_runs) -> ReportedRun:
    """The cold run of the shared default-project runs; the report it wrote is read, never changed, by the tests."""
    output = two_runs.output
    run_id = lineage.pipeline_runs(lineage.open_store(output))[-1].id
    return ReportedRun(output, two_runs.first, run_id, run_report.report_path(_settings(output), run_id))


@pytest.mark.pipeline
def test_tfxp_run_writes_the_report_and_prints_its_path(reported_run):
    assert reported_run.path == reported_run.output / "report" / str(reported_run.run_id) / "index.html"
    assert f"Report: {reported_run.path}" in reported_run.result.stdout
    page = reported_run.path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not list(reported_run.path.parent.glob(".*.tmp"))  # written through a temporary file, then renamed


@pytest.mark.pipeline
def test_every_section_holds_what_mlmd_recorded(reported_run):
    store = lineage.open_store(reported_run.output)
    settings = _settings(reported_run.output)
    summary = history.run_summary(store, reported_run.run_id)
    executions = lineage.run_executions(store, store.get_contexts_by_id([reported_run.run_id])[0])
    sections = _sections(reported_run.path.read_text())
    assert set(sections) == set(SECTIONS)

    run = sections["run"]
    assert f"Run {reported_run.run_id}" in run and settings.model_name in run
    assert summary.outcome == "pushed" and "pushed" in run
    assert f"Exit code {cli.EXIT_OK}: {cli.EXIT_MEANINGS[cli.EXIT_OK]}" in run
    for node_id, ran in summary.nodes.items():
        assert f"{node_id} {ran.state.lower()} {ran.seconds:.1f}" in run

    data = sections["data"]
    statistics = executions[nodes.STATISTICS_GEN].output("statistics")
    for split in ("train", "eval"):
        path = splits.split_file(statistics.uri, split, splits.STATISTICS_FILE)
        dataset = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes()).datasets[0]
        assert f"{split} {dataset.num_examples}" in data
    for feature in dataset.features:
        assert f"{feature.path.step[0]} {statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)}" in data
    assert "island STRING 0.0% 3" in data  # three islands, none missing
    assert "No anomalies against the schema" in data

    model = sections["model"]
    hyperparameters = executions[nodes.TUNER].output("best_hyperparameters")
    chosen = json.loads((Path(hyperparameters.uri) / "best_hyperparameters.txt").read_text())["values"]
    for name, value in chosen.items():
        assert f"{name} {value}" in model
    assert "Tuner trials" in model and "training" in model and "evaluation" in model  # the two loss curves' legend

    found = sections["evaluation"]
    slices, _ = report.read_metrics(
        executions[nodes.EVALUATOR].output("evaluation").uri,
        evaluation.reported_metrics(settings.declarations.label.problem),
    )
    accuracy = evaluation.metric(settings.declarations.label.problem, "accuracy").key
    assert f"Overall {slices['Overall'][evaluation.EXAMPLE_COUNT]:.0f} {slices['Overall'][accuracy]:.4f}" in found
    assert {"island=Biscoe", "island=Dream", "island=Torgersen", "sex=female", "sex=male"} <= set(slices)
    for name in slices:
        assert name in found
    assert "Blessed" in found and f"threshold {settings.gate.threshold:g}" in found
    assert "Confusion matrix" in found and "predicted" in found and "Adelie" in found

    assert "Trainer" in sections["lineage"] and "Examples" in sections["lineage"]
    assert f"Version {summary.version}" in sections["serving"]
    assert str(reported_run.output / "serving" / settings.model_name / str(summary.version)) in sections["serving"]


@pytest.mark.pipeline
def test_the_report_links_to_nothing_outside_itself(reported_run):
    page = reported_run.path.read_text()
    links = LINK.findall(page)
    assert links, "the page has its section links at least"
    assert all(link.startswith("#") for link in links), links
    assert "<script" not in page.lower()
    assert not re.search(r"url\(\s*['\"]?https?:", page)  # nothing fetched from CSS either


@pytest.mark.pipeline
def test_tfxp_report_rebuilds_a_past_run_and_refuses_an_unknown_one(reported_run, monkeypatch):
    monkeypatch.setenv("BROWSER", "echo")  # "opens" the page by printing its address
    rebuilt = run_tfxp("report", str(reported_run.run_id), "--output", str(reported_run.output), "--open")
    assert rebuilt.code == 0, rebuilt.stderr
    assert f"Report of run {reported_run.run_id}: {reported_run.path}" in rebuilt.stdout
    assert reported_run.path.as_uri() in rebuilt.stdout
    assert "Exit code 0: ok, blessed and pushed" in _sections(reported_run.path.read_text())["run"]

    unknown = run_tfxp("report", "99999", "--output", str(reported_run.output))
    assert unknown.code == cli.EXIT_BAD_INPUT
    assert unknown.stderr.strip().splitlines() == [
        f"Error: no run 99999 in {reported_run.output}; `tfxp runs` lists them"
    ]


@dataclasses.dataclass
class Shown:
    dom: str
    console: list[str]  # what the page logged
    requests: list[str]  # what the page asked the network for


def _open_offline(page: Path, folder: Path, *args: str) -> Shown:
    """Opens `page` in headless Chromium with every name lookup failing, as a reader without a network would."""
    assert CHROMIUM, "headless Chromium is needed: apt-get install chromium (.ci/run installs it)"
    net_log = folder / "net-log.json"
    shown = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={folder / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            f"--log-net-log={net_log}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    # Chromium fetches for itself too (a clock, spelling dictionaries); the page's requests are the ones
    # partitioned under its file:// origin.
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [e["params"] for e in log["events"] if e["type"] == start]
    return Shown(
        shown.stdout,
        [line for line in shown.stderr.splitlines() if ":CONSOLE" in line],
        [p["url"] for p in starts if p.get("network_isolation_key", "").startswith("file://")],
    )


@pytest.mark.pipeline
def test_chromium_renders_every_section_offline_without_console_errors(reported_run, tmp_path):
    leaky = tmp_path / "leaky.html"  # first, that the checks below would catch a page that leaks or logs
    leaky.write_text('<img src="https://example.com/x.png"><script>console.error("leaked")</script>')
    caught = _open_offline(leaky, tmp_path / "leaky", "--dump-dom")
    assert caught.requests == ["https://example.com/x.png"] and len(caught.console) == 1

    shown = _open_offline(reported_run.path, tmp_path / "report", "--dump-dom")
    rendered = dict(re.findall(r'<section id="(\w+)">(.*?)</section>', shown.dom, re.S))
    assert set(rendered) == set(SECTIONS)
    for section in ("data", "model", "evaluation", "lineage"):
        assert "<svg" in rendered[section], f"no chart in {section}"
    assert f"Run {reported_run.run_id}" in _sections(shown.dom)["run"]
    assert shown.console == [] and shown.requests == []

    screenshot = tmp_path / "report.png"
    _open_offline(reported_run.path, tmp_path / "screenshot", f"--screenshot={screenshot}", "--window-size=1000,1400")
    assert screenshot.stat().st_size > 10_000  # a page with charts, not a blank one


def _split_artifact(store, type_name: str, uri: Path, written: dict[str, tuple[str, object]]):
    """An artifact in TFX's split layout: one file per split under `uri`, and the split names as a property."""
    kind = store.put_artifact_type(
        metadata_store_pb2.ArtifactType(name=type_name, properties={"split_names": metadata_store_pb2.STRING})
    )
    for split, (file_name, proto) in written.items():
        path = splits.split_file(uri, split, file_name)
        path.parent.mkdir(parents=True)
        path.write_bytes(proto.SerializeToString())
    found = metadata_store_pb2.Artifact(type_id=kind, uri=str(uri))
    found.properties["split_names"].string_value = splits.encode_split_names(list(written))
    return found


def _statistics() -> statistics_pb2.DatasetFeatureStatisticsList:
    """Ten rows: one number and one string column, as TFDV describes them."""
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=10)
    number = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.FLOAT)
    number.path.step.append("bill_length_mm")
    number.num_stats.common_stats.num_non_missing = 9
    number.num_stats.common_stats.num_missing = 1
    histogram = number.num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
    for low, count in ((30, 3), (40, 4), (50, 2)):
        histogram.buckets.add(low_value=low, high_value=low + 10, sample_count=count)
    text = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
    text.path.step.append("island")
    text.string_stats.common_stats.num_non_missing = 10
    text.string_stats.unique = 2
    text.string_stats.top_values.add(value="Biscoe", frequency=6)
    text.string_stats.top_values.add(value="Atlantis", frequency=4)
    return stats


def test_a_run_stopped_by_anomalies_reports_its_data_and_says_where_it_stopped(tmp_path):
    settings = _settings(tmp_path / "outputs")
    store = lineage.open_store(settings.paths.output_root)
    run = mlmd_records.new_run(store, "run-1")
    mlmd_records.execute(store, run, nodes.EXAMPLE_GEN, "COMPLETE")
    mlmd_records.execute(
        store,
        run,
        nodes.STATISTICS_GEN,
        "COMPLETE",
        outputs={
            "statistics": _split_artifact(
                store,
                monitoring.STATISTICS,
                tmp_path / "statistics",
                {split: (splits.STATISTICS_FILE, _statistics()) for split in ("train", "eval")},
            )
        },
    )
    found = anomalies_pb2.Anomalies()
    found.anomaly_info["island"].short_description = "Unexpected string values"
    found.anomaly_info["island"].description = "Examples contain values missing from the schema: Atlantis (~40%)."
    anomalies = _split_artifact(
        store, monitoring.ANOMALIES, tmp_path / "anomalies", {"train": (splits.ANOMALIES_FILE, found)}
    )
    mlmd_records.execute(store, run, nodes.EXAMPLE_VALIDATOR, "COMPLETE", outputs={"anomalies": anomalies})
    mlmd_records.execute(store, run, nodes.ANOMALIES_GATE, "FAILED")

    path = run_report.write_report(settings, run.id, (cli.EXIT_FAILED, cli.EXIT_MEANINGS[cli.EXIT_FAILED]))

    sections = _sections(path.read_text())
    assert "stopped by anomalies" in sections["run"] and "The run stopped at AnomaliesGate" in sections["run"]
    assert f"Exit code {cli.EXIT_FAILED}: {cli.EXIT_MEANINGS[cli.EXIT_FAILED]}" in sections["run"]
    assert "[train] island: Unexpected string values (Examples contain values missing" in sections["data"]
    assert "bill_length_mm FLOAT 10.0%" in sections["data"] and "island STRING 0.0% 2" in sections["data"]
    assert "Atlantis" in sections["data"]  # the bar chart's label
    assert "stopped before the Trainer" in sections["model"]
    assert "stopped before the Evaluator" in sections["evaluation"]
    assert "No model" in sections["lineage"]
    assert "nothing was pushed" in sections["serving"]


def test_a_run_whose_evaluator_failed_before_writing_anything_still_gets_its_report(tmp_path):
    """An Evaluator that raised before TFX recorded an output (TFMA failing to load the model, say)."""
    settings = _settings(tmp_path / "outputs")
    store = lineage.open_store(settings.paths.output_root)
    run = mlmd_records.new_run(store, "run-1")
    mlmd_records.execute(store, run, nodes.EXAMPLE_GEN, "COMPLETE")
    statistics = _split_artifact(
        store,
        monitoring.STATISTICS,
        tmp_path / "statistics",
        {split: (splits.STATISTICS_FILE, _statistics()) for split in ("train", "eval")},
    )
    mlmd_records.execute(store, run, nodes.STATISTICS_GEN, "COMPLETE", outputs={"statistics": statistics})
    mlmd_records.execute(store, run, nodes.EVALUATOR, "FAILED")

    path = run_report.write_report(settings, run.id, (cli.EXIT_FAILED, cli.EXIT_MEANINGS[cli.EXIT_FAILED]))

    sections = _sections(path.read_text())
    assert "The run stopped at Evaluator" in sections["run"]
    assert "nothing was pushed" in sections["serving"]


def test_an_unknown_run_is_refused(tmp_path):
    settings = _settings(tmp_path / "outputs")
    with pytest.raises(run_report.UnknownRun, match="no run 5 in"):
        run_report.write_report(settings, 5)


def test_a_binary_model_gets_tfmas_confusion_matrix_at_the_cut(tmp_path, project):
    import pandas as pd
    import tensorflow_model_analysis as tfma

    from tests.test_fairness import BINARY, _raw_data_config
    from tests.test_fairness import _settings as binary_settings

    resolved = binary_settings(project, BINARY)
    label = resolved.declarations.label
    # 3 true negatives, 1 false positive, 2 false negatives, 4 true positives at the 0.5 cut
    scores = [(0, 0.1)] * 3 + [(0, 0.7)] + [(1, 0.2)] * 2 + [(1, 0.9)] * 4
    rows = [{label.transformed_name: float(y), "probability": p, "island": "Biscoe"} for y, p in scores]
    tfma.analyze_raw_data(pd.DataFrame(rows), _raw_data_config(resolved), output_path=str(tmp_path / "evaluation"))

    plot, title = run_report._plot(str(tmp_path / "evaluation"), resolved)

    assert title == f"Confusion matrix at {evaluation.ERROR_RATE_CUT:g}, eval split"
    cells = [int(n) for n in re.findall(r">(\d+)</text>", plot)]
    assert cells == [3, 1, 2, 4]  # actual down, predicted across
    assert all(name in plot for name in label.classes)


def test_without_graphviz_the_lineage_is_a_nested_list_of_the_same_facts(tmp_path, monkeypatch):
    store = lineage.open_store(tmp_path)
    run = mlmd_records.new_run(store, "run-1")
    [examples] = mlmd_records.execute(
        store,
        run,
        nodes.EXAMPLE_GEN,
        "COMPLETE",
        outputs={"examples": mlmd_records.artifact(store, "Examples", span=3)},
    )
    [model] = mlmd_records.execute(
        store,
        run,
        nodes.TRAINER,
        "COMPLETE",
        inputs={"examples": store.get_artifacts_by_id([examples])[0]},
        outputs={"model": mlmd_records.artifact(store, "Model", "/out/Trainer/model/8")},
    )
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)  # no `dot` on this machine

    [root] = run_report._lineage(store, model)

    assert root.text.startswith(f"Model (artifact {model})")
    [trainer] = root.children
    assert trainer.text.startswith("Trainer (execution")
    [data] = trainer.children
    assert data.text == f"Examples (artifact {examples}) span 3"
    [example_gen] = data.children
    assert example_gen.text.startswith("ExampleGen (execution") and example_gen.children == []
