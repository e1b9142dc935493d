"""What an artifact was made from: the upstream graph, its tree and SVG drawings, and `tfxp lineage`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from pipeline import lineage, lineage_graph, nodes, registry, serving
from tests import mlmd_records
from tests.conftest import run_tfxp

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def recorded(tmp_path):
    """A store with a run that pushed, and a second run whose Trainer was CACHED: ids by name."""
    store = lineage.open_store(tmp_path)
    first = mlmd_records.new_run(store, "run-1")
    [examples] = mlmd_records.execute(
        store,
        first,
        nodes.EXAMPLE_GEN,
        "COMPLETE",
        outputs={"examples": mlmd_records.artifact(store, "Examples", "/o/ExampleGen/examples/1", span=3)},
    )
    [examples_artifact] = store.get_artifacts_by_id([examples])
    [model] = mlmd_records.execute(
        store,
        first,
        nodes.TRAINER,
        "COMPLETE",
        inputs={"examples": examples_artifact},
        outputs={"model": mlmd_records.artifact(store, "Model", "/o/Trainer/model/2")},
    )
    [model_artifact] = store.get_artifacts_by_id([model])
    [pushed] = mlmd_records.execute(
        store,
        first,
        nodes.PUSHER,
        "COMPLETE",
        inputs={"model": model_artifact},
        outputs={"pushed_model": mlmd_records.artifact(store, "PushedModel", "/o/Pusher/pushed_model/3")},
    )
    second = mlmd_records.new_run(store, "run-2")  # TFX records a cached execution's outputs again
    mlmd_records.execute(
        store,
        second,
        nodes.TRAINER,
        "CACHED",
        inputs={"examples": examples_artifact},
        outputs={"model": model_artifact},
    )
    executions = {
        e.type.rsplit(".", 1)[-1]: e.id
        for e in store.get_executions()
        if e.last_known_state != mlmd_records.STATES.CACHED
    }
    return tmp_path, store, {"examples": examples, "model": model, "pushed": pushed, **executions}


def test_the_graph_runs_from_the_artifact_back_to_the_data_through_the_executions_that_made_each(recorded):
    _, store, ids = recorded
    graph = lineage.upstream_graph(store, ids["pushed"])
    pushed, model, examples = (f"artifact:{ids[k]}" for k in ("pushed", "model", "examples"))
    pusher, trainer, example_gen = (f"execution:{ids[k]}" for k in (nodes.PUSHER, nodes.TRAINER, nodes.EXAMPLE_GEN))
    assert graph.root == pushed
    assert {n.key for n in graph.nodes} == {pushed, model, examples, pusher, trainer, example_gen}  # not the cached one
    assert sorted(graph.edges) == sorted(
        [(pusher, pushed), (model, pusher), (trainer, model), (examples, trainer), (example_gen, examples)]
    )
    assert graph.node(examples).label == "span 3"
    assert graph.node(model).label == "model/2" and graph.node(model).uri == "/o/Trainer/model/2"
    assert (graph.node(trainer).type, graph.node(trainer).label) == (nodes.TRAINER, "COMPLETE")
    assert [a.id for a in lineage.upstream_artifacts(store, ids["pushed"])] == [ids["model"], ids["examples"]]


def test_an_unknown_artifact_has_no_graph(recorded):
    _, store, _ = recorded
    with pytest.raises(LookupError, match="no artifact 999"):
        lineage.upstream_graph(store, 999)


def test_the_tree_draws_each_node_once_and_names_it_where_it_is_reached_again(recorded):
    _, store, ids = recorded
    graph = lineage.upstream_graph(store, ids["pushed"])
    graph.edges.append((f"artifact:{ids['examples']}", f"execution:{ids[nodes.PUSHER]}"))  # a second way to the data
    console = Console(record=True, width=200)
    console.print(lineage_graph.tree(graph))
    text = console.export_text()
    assert text.splitlines()[0] == f"PushedModel (artifact {ids['pushed']}) pushed_model/3"
    assert f"Trainer (execution {ids[nodes.TRAINER]}) COMPLETE" in text
    assert text.count(f"Examples (artifact {ids['examples']}) span 3") == 2
    assert text.count(f"Examples (artifact {ids['examples']}) span 3, as above") == 1


def test_the_svg_draws_every_node_once_ready_to_inline(recorded):
    _, store, ids = recorded
    graph = lineage.upstream_graph(store, ids["pushed"])
    svg = lineage_graph.to_svg(graph)
    assert svg is not None, "Graphviz's dot is not installed: apt-get install graphviz"
    assert svg.startswith("<svg")  # no XML prolog or doctype inside an HTML page
    drawn = ET.fromstring(svg).iter(f"{SVG}g")
    shapes = {g.find(f"{SVG}title").text: g for g in drawn if g.get("class") == "node"}
    assert sorted(shapes) == sorted(n.key.replace(":", "_") for n in graph.nodes)
    assert shapes[f"artifact_{ids['model']}"].find(f"{SVG}polygon") is not None  # an artifact is a box
    assert shapes[f"execution_{ids[nodes.TRAINER]}"].find(f"{SVG}ellipse") is not None
    assert "span 3" in svg


def test_without_graphviz_there_is_no_svg(recorded, monkeypatch):
    _, store, ids = recorded
    monkeypatch.setenv("PATH", "")
    assert lineage_graph.to_svg(lineage.upstream_graph(store, ids["pushed"])) is None


def test_tfxp_lineage_of_a_model_id_as_json(recorded):
    output, store, ids = recorded
    result = run_tfxp("lineage", str(ids["model"]), "--json", "--output", str(output))
    assert result.code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["root"] == f"artifact:{ids['model']}"
    expected = lineage.upstream_graph(store, ids["model"])
    assert [n["key"] for n in found["nodes"]] == [n.key for n in expected.nodes]
    assert [tuple(e) for e in found["edges"]] == expected.edges


@pytest.mark.parametrize("target", [[], ["999"]])  # nothing serves; no such version or model
def test_tfxp_lineage_of_nothing_it_knows_is_a_one_line_error(recorded, target):
    output, _, ids = recorded
    result = run_tfxp("lineage", *target, "--output", str(output))
    assert result.code == 2
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_tfxp_lineage_of_a_pushed_artifact_id_that_is_no_model_is_refused(recorded):
    output, _, ids = recorded
    result = run_tfxp("lineage", str(ids["pushed"]), "--output", str(output))
    assert result.code == 2
    assert f"{ids['pushed']} is neither a pushed version" in result.stderr


@pytest.mark.pipeline
def test_tfxp_lineage_traces_the_serving_version_back_to_its_span(two_runs):
    store = lineage.open_store(two_runs.output)
    folder = serving.ServingFolder(two_runs.output / "serving", "penguins")
    model_id = registry.served_model_id(store, folder.served())
    result = run_tfxp("lineage", "--output", str(two_runs.output))
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PushedModel (artifact ")
    for node_id in (nodes.PUSHER, nodes.EVALUATOR, nodes.SERVABILITY_CHECK, nodes.TRAINER, nodes.EXAMPLE_GEN):
        assert f"{node_id} (execution " in result.stdout
    assert f"Model (artifact {model_id}) " in result.stdout
    assert any("Examples (artifact" in line and line.endswith("span 0") for line in lines)
    graph = lineage.upstream_graph(store, model_id)
    svg = ET.fromstring(lineage_graph.to_svg(graph))
    assert sum(g.get("class") == "node" for g in svg.iter(f"{SVG}g")) == len(graph.nodes)
