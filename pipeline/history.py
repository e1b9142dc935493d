"""Past runs, read back from ML Metadata: when each ran, on which span, how it ended, and what it pushed.

MLMD only, no TensorFlow or TFX: `tfxp runs` answers in about a second.
"""

from __future__ import annotations

import dataclasses
import datetime

from ml_metadata.metadata_store import metadata_store

from pipeline import lineage, nodes, registry

GATES = {nodes.ANOMALIES_GATE: "stopped by anomalies", nodes.DRIFT_GATE: "stopped by drift"}


@dataclasses.dataclass(frozen=True)
class NodeRun:
    """One component's execution in a run."""

    state: str  # COMPLETE, CACHED, FAILED, RUNNING
    seconds: float  # from MLMD's create to last-update time


@dataclasses.dataclass
class RunSummary:
    """What one `tfxp run` did, as MLMD recorded it."""

    run_id: int  # the pipeline_run context's MLMD id: what users type to name a run
    started: datetime.datetime
    finished: datetime.datetime
    span: int | None  # of ExampleGen's Examples
    outcome: str  # "pushed", "not blessed", "stopped by drift", "failed at Trainer", … (see `outcome`)
    gate: str | None  # the gate metric recorded on the Pusher's PushedModel (registry.gate_text)
    version: int | None  # the serving version this run pushed, or found already serving its model
    nodes: dict[str, NodeRun]  # node id → its execution, in the order they started


def outcome(executions: dict[str, lineage.NodeExecution]) -> str:
    """How a run ended, in a few words: a failure first, then a run cut short, then the push decision.

    "cached" when the Pusher's execution was reused: the decision is an earlier run's. Not "every execution
    CACHED": the resolvers look again on every run, and so does the drift check once there is a baseline.
    """
    ordered = _in_order(executions)
    failed = [e.node_id for e in ordered if e.state == "FAILED"]
    if failed:
        return GATES.get(failed[0], f"failed at {failed[0]}")
    running = [e.node_id for e in ordered if e.state == "RUNNING"]
    if running:  # the process died (Ctrl-C, a kill, a crash) before MLMD heard the end of it
        return f"interrupted at {running[0]}"
    pusher = executions.get(nodes.PUSHER)
    if pusher is not None and pusher.state == "CACHED":  # so were the Trainer, Evaluator and checks it reads
        return "cached"
    return push_outcome(executions)


def push_outcome(executions: dict[str, lineage.NodeExecution]) -> str:
    """What the push decided, cached or not: already serving, pushed, awaiting approval, not blessed, not
    servable, or not pushed."""
    pushed = _output(executions, nodes.PUSHER, "pushed_model")
    if pushed is not None:
        if lineage.custom_property(pushed, "reused") == 1:
            return "already serving"
        if lineage.custom_property(pushed, "pushed") == 1:
            return "pushed"
        if lineage.custom_property(pushed, "awaiting_approval") == 1:
            return "awaiting approval"
    # The servability check stamps "not blessed" on every model the Evaluator did not bless: ask the Evaluator first.
    if _blessed(executions, nodes.EVALUATOR) is False:
        return "not blessed"
    if _blessed(executions, nodes.SERVABILITY_CHECK) is False:
        return "not servable"
    return "not pushed"  # e.g. a model rejected by `tfxp reject` before this run


def _in_order(executions: dict[str, lineage.NodeExecution]) -> list[lineage.NodeExecution]:
    return sorted(executions.values(), key=lambda e: (e.execution.create_time_since_epoch, e.execution.id))


def _output(executions: dict[str, lineage.NodeExecution], node_id: str, key: str):
    execution = executions.get(node_id)
    return execution.output(key) if execution is not None else None


def _blessed(executions: dict[str, lineage.NodeExecution], node_id: str) -> bool | None:
    blessing = _output(executions, node_id, "blessing")
    return None if blessing is None else lineage.custom_property(blessing, "blessed") == 1


def summarize(run_id: int, executions: dict[str, lineage.NodeExecution]) -> RunSummary:
    """A RunSummary of one run's executions (`lineage.run_executions`)."""
    ordered = _in_order(executions)
    examples = _output(executions, nodes.EXAMPLE_GEN, "examples")
    pushed = _output(executions, nodes.PUSHER, "pushed_model")
    ended = outcome(executions)
    gate = (
        registry.gate_text(pushed) if pushed is not None and registry.GATE_METRIC in pushed.custom_properties else None
    )
    version = lineage.custom_property(pushed, "pushed_version") if ended in ("pushed", "already serving") else None
    return RunSummary(
        run_id=run_id,
        started=registry.when(min(e.execution.create_time_since_epoch for e in ordered)),
        finished=registry.when(max(e.execution.last_update_time_since_epoch for e in ordered)),
        span=lineage.span(examples) if examples is not None else None,
        outcome=ended,
        gate=gate,
        version=int(version) if version is not None else None,
        nodes={
            e.node_id: NodeRun(
                e.state, (e.execution.last_update_time_since_epoch - e.execution.create_time_since_epoch) / 1000
            )
            for e in ordered
        },
    )


def runs(store: metadata_store.MetadataStore) -> list[RunSummary]:
    """Every recorded run that executed something, newest first."""
    found = []
    for run in reversed(lineage.pipeline_runs(store)):
        executions = lineage.run_executions(store, run)
        if executions:
            found.append(summarize(run.id, executions))
    return found


def run_summary(store: metadata_store.MetadataStore, run_id: int) -> RunSummary | None:
    """The summary of the run with this id, or None when no run has it."""
    found = [c for c in store.get_contexts_by_id([run_id]) if c.type == lineage.PIPELINE_RUN]
    if not found:
        return None
    run = found[0]
    executions = lineage.run_executions(store, run)
    return summarize(run_id, executions) if executions else None
