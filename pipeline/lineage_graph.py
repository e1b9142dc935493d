"""Drawings of a lineage graph (lineage.upstream_graph): a rich tree for the terminal, an SVG for the run report."""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass
class Branch:
    """A node of the graph as a tree from the root back to the data; one reached before is named, not expanded."""

    node: LineageNode
    repeated: bool
    children: list[Branch]

    @property
    def text(self) -> str:
        return caption(self.node) + (", as above" if self.repeated else "")


def branches(graph: LineageGraph) -> Branch:
    """The graph as a tree from its root, depth first; a node reached twice is expanded once, then named."""
    drawn = {graph.root}

    def grow(key: str) -> list[Branch]:
        found = []
        for source in graph.inputs(key):
            if source in drawn:
                found.append(Branch(graph.node(source), True, []))
            else:
                drawn.add(source)
                found.append(Branch(graph.node(source), False, grow(source)))
        return found

    return Branch(graph.node(graph.root), False, grow(graph.root))


def tree(graph: LineageGraph) -> Tree:
    """`branches` as a rich tree for the terminal."""

    def add(parent: Tree, branch: Branch) -> None:
        if branch.repeated:
            parent.add(f"[dim]{escape(branch.text)}[/]")
            return
        child = parent.add(_styled(branch.node))
        for grandchild in branch.children:
            add(child, grandchild)

    root = branches(graph)
    top = Tree(_styled(root.node))
    for branch in root.children:
        add(top, branch)
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
