"""Drift between spans, on sensor readings generated per span: the same distribution twice, then a span with the
temperature two standard deviations higher and the north region's share tripled (within the schema), then a
truncated span with a tenth of the rows."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pipeline import lineage, monitoring, nodes
from tests import datasets
from tests.conftest import CliResult, run_tfxp

pytestmark = pytest.mark.pipeline

FAST = ("--no-tuner",)
DRIFTED = {"temperature", "region"}
MEASURED = re.compile(r"^\s+(\S+): (L-infinity|Jensen-Shannon) ", re.MULTILINE)


@dataclasses.dataclass
class Spans:
    folder: Path
    runs: dict[str, CliResult]

    @property
    def output(self) -> Path:
        return self.folder / "outputs"

    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.output / "serving" / "sensors").iterdir())


@pytest.fixture(scope="module")
def spans(tmp_path_factory) -> Spans:
    folder = tmp_path_factory.mktemp("sensors")
    data = folder / "data"
    datasets.write_sensors(data / "span-1", seed=1)
    datasets.write_sensors(data / "span-2", seed=2)
    datasets.write_sensors(data / "span-3", seed=3, drifted=True)
    header = ["region", "temperature", "vibration", "load", "failed"]
    datasets.write_csv(data / "span-4" / "readings.csv", header, datasets.sensor_rows(800, 4)[:80])  # truncated
    init = run_tfxp("init", "--data", str(data), "--label", "failed", "--name", "sensors", "--project", str(folder))
    assert init.code == 0, init.stdout + init.stderr
    config_file = str(folder / "tfxp.toml")
    runs = {}
    for name, args in (
        ("first", ("--span", "1")),
        ("same", ("--span", "2")),
        ("stopped", ("--span", "3", "--on-drift", "stop")),
        ("warned", ("--span", "3")),
        ("truncated", ("--span", "4", "--on-drift", "stop")),
    ):
        runs[name] = run_tfxp("run", "--config", config_file, *args, *FAST)
        if name in ("stopped", "warned"):
            runs[f"versions_after_{name}"] = sorted(p.name for p in (folder / "outputs/serving/sensors").iterdir())
    return Spans(folder, runs)


def _drifted(text: str) -> set[str]:
    """The features a summary or error lists as past their threshold."""
    return {name for name, _ in MEASURED.findall(text)}


def test_the_first_span_has_nothing_to_compare_with(spans):
    first = spans.runs["first"]
    assert first.code == 0, first.stdout + first.stderr
    assert "Drift: no earlier span has been run, so span 1 is compared with nothing yet." in first.stdout
    store = lineage.open_store(spans.output)
    assert nodes.DISTRIBUTION_VALIDATOR not in lineage.run_executions(store, lineage.pipeline_runs(store)[0])


def test_a_span_from_the_same_distribution_shows_no_drift(spans):
    same = spans.runs["same"]
    assert same.code == 0, same.stdout + same.stderr
    assert "Drift: comparing span 2 with span 1, which trained version" in same.stdout
    assert "No drift against span 1, which trained version" in same.stdout
    assert not _drifted(same.stdout)


def test_stop_blocks_a_drifted_span_and_names_exactly_what_moved(spans):
    stopped = spans.runs["stopped"]
    assert stopped.code == 6, stopped.stdout + stopped.stderr
    assert "drift stopped the run before Transform" in stopped.stderr
    assert _drifted(stopped.stderr) == DRIFTED
    assert "threshold 0.1" in stopped.stderr
    assert spans.runs["versions_after_stopped"] == spans.versions()[:2]  # nothing pushed
    store = lineage.open_store(spans.output)
    executions = lineage.run_executions(store, lineage.pipeline_runs(store)[2])
    assert executions[nodes.DRIFT_GATE].state == "FAILED"
    assert nodes.TRANSFORM not in executions and nodes.PUSHER not in executions


def test_warn_trains_and_lists_exactly_the_drifted_features(spans):
    warned = spans.runs["warned"]
    assert warned.code == 0, warned.stdout + warned.stderr
    assert "Drift against span 2, which trained version" in warned.stdout
    assert '2 past [monitoring] thresholds (on_drift = "warn", so the run went on)' in warned.stdout
    assert _drifted(warned.stdout) == DRIFTED
    assert len(spans.runs["versions_after_warned"]) == 3  # span 3's model was pushed


def test_a_truncated_span_is_reported(spans):
    truncated = spans.runs["truncated"]
    assert truncated.code == 6, truncated.stdout + truncated.stderr
    for split in ("train", "eval"):
        assert re.search(
            rf"\[{split}\] row count: 0\.\d\d× the baseline's rows, below the bound 0\.5", truncated.stderr
        )


def test_lineage_links_the_comparison_to_both_spans_statistics(spans):
    store = lineage.open_store(spans.output)
    runs = lineage.pipeline_runs(store)
    executions = lineage.run_executions(store, runs[3])  # the warned run of span 3
    validator = executions[nodes.DISTRIBUTION_VALIDATOR]
    [current], [baseline] = validator.inputs["statistics"], validator.inputs["baseline_statistics"]
    assert monitoring.statistics_span(store, current) == 3
    assert monitoring.statistics_span(store, baseline) == 2
    assert current.id == executions[nodes.STATISTICS_GEN].output("statistics").id
    anomalies = validator.output("anomalies")
    [kind] = store.get_artifact_types_by_id([anomalies.type_id])
    assert kind.name == "ExampleAnomalies"
    comparisons = monitoring.read_comparisons(anomalies.uri, anomalies.properties["split_names"].string_value)
    assert set(comparisons) == {"train", "eval"}
    assert {f.feature for f in monitoring.drift_findings(comparisons)} == DRIFTED


def test_status_tells_the_story(spans, tmp_path):
    result = run_tfxp("status", "--config", str(spans.folder / "tfxp.toml"))
    assert result.code == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    newest = spans.versions()[-1]
    assert f"Serving: version {newest} (the latest), model" in out and "trained on span 3" in out
    assert "newest span 4 has not been trained on" in out
    assert "Drift: span 4 against span 3" in out and "(the run was stopped)" in out
    assert "row count: 0." in out and "temperature: Jensen-Shannon" in out
    assert "Skew: serving traffic never checked" in out


def test_status_exits_6_when_the_serving_model_is_older_than_allowed(spans):
    config_file = spans.folder / "tfxp.toml"
    text = config_file.read_text()
    aged = spans.folder / "aged.toml"
    aged.write_text(text.replace("[monitoring]", "[monitoring]\nmax_model_age_days = 0.00001", 1))
    result = run_tfxp("status", "--config", str(aged))
    assert result.code == 6, result.stdout + result.stderr
    assert "Stale: the serving model is" in result.stdout and "more than max_model_age_days = 1e-05" in result.stdout
