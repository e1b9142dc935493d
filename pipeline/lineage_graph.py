"""Drawings of a lineage graph (lineage.upstream_graph): a rich tree for the terminal, an SVG for the run report."""

from __future__ import annotations

import shutil

from rich.markup import escape
from rich.tree import Tree

from pipeline.lineage import LineageGraph, LineageNode


def caption(node: LineageNode) -> str:
    """'Model (artifact 9) model/8' or 'Trainer (execution 8) COMPLETE': what it is, its MLMD id, its detail."""
    return f"{node.type} ({node.kind} {node.mlmd_id}) {node.label}"


def _styled(node: LineageNode) -> str:
    style = "bold" if node.kind == "artifact" else "cyan"
    return f"[{style}]{escape(node.type)}[/] ({node.kind} {node.mlmd_id}) {escape(node.label)}"


def tree(graph: LineageGraph) -> Tree:
    """The graph as a tree from its root back to the data; a node reached twice is drawn once, then named."""
    drawn = {graph.root}

    def grow(branch: Tree, key: str) -> None:
        for source in graph.inputs(key):
            node = graph.node(source)
            if source in drawn:
                branch.add(f"[dim]{escape(caption(node))}, as above[/]")
            else:
                drawn.add(source)
                grow(branch.add(_styled(node)), source)

    top = Tree(_styled(graph.node(graph.root)))
    grow(top, graph.root)
    return top


def to_svg(graph: LineageGraph) -> str | None:
    """The graph drawn left to right by Graphviz, artifacts as boxes and executions as ellipses, as SVG text to
    inline in HTML (no XML prolog or doctype); None when Graphviz's `dot` is not installed."""
    if shutil.which("dot") is None:
        return None
    import pydot  # only the report draws; the terminal commands need none of it

    dot = pydot.Dot(graph_type="digraph", rankdir="LR", fontname="Helvetica")
    names = {node.key: node.key.replace(":", "_") for node in graph.nodes}  # ':' would name a port in dot
    for node in graph.nodes:
        dot.add_node(
            pydot.Node(
                names[node.key],
                label=f'"{node.type}\\n{node.kind} {node.mlmd_id}\\n{node.label}"',
                shape="box" if node.kind == "artifact" else "ellipse",
                style="filled",
                fillcolor="#eef3fb" if node.kind == "artifact" else "#fdf3e1",
                fontname="Helvetica",
                fontsize="10",
            )
        )
    for source, target in graph.edges:
        dot.add_edge(pydot.Edge(names[source], names[target]))
    svg = dot.create_svg().decode()
    return svg[svg.index("<svg") :]
