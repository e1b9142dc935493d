"""`tfxp compile`: the pipeline as a KFP v2 spec, compiled by TFX's KubeflowV2DagRunner, for Vertex AI Pipelines or
Kubeflow Pipelines.

It is the same `create_pipeline` that runs here, with the settings of `[cluster]` (settings.resolve_for_cluster):
remote URIs for the pipeline root, data, schema and serving folder, the container image for every task, and Beam
on Dataflow. Nothing of this machine goes into the spec; the one file the pipeline needs from here, the curated
schema, is staged under the output folder, named by its content, for the user to upload to the URI it is read from.

What each target gets:
- vertex: the PipelineJob JSON TFX writes (the spec with its runtime config: the pipeline root), which
  `google.cloud.aiplatform.PipelineJob(template_path=...)` submits as it is;
- kubeflow: the PipelineSpec inside it, as YAML: the "IR YAML" the KFP SDK client and dashboard upload. The
  open-source KFP v2 backend does not run resolver tasks ("resolver executors not implemented" in its Argo
  compiler), nor the pre-cache-check hook in which TFX runs ExampleGen's driver, so a run there stops at the
  baseline resolver (README: Running on a cluster).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from pipeline import file_modes
from pipeline.settings import Settings

VERTEX, KUBEFLOW = "vertex", "kubeflow"
TARGETS = (VERTEX, KUBEFLOW)
DEFAULT_OUTPUT = {VERTEX: "pipeline.json", KUBEFLOW: "pipeline.yaml"}  # KFP's upload takes .yaml, .zip or .tar.gz
# The command each task's container runs (TFX's own, for an image with TFX installed): the image's ENTRYPOINT is
# Beam's worker boot program, for Dataflow, so it is never relied on.
TASK_COMMAND = ("python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A written spec, and what the user must do before a run can read it."""

    path: Path
    tasks: tuple[str, ...]  # the root DAG's task names
    schema_file: Path  # the staged schema on this machine...
    schema_uri: str  # ...and where the pipeline reads it


def pipeline_job(settings: Settings) -> dict:
    """The PipelineJob TFX's KubeflowV2DagRunner compiles from `create_pipeline(settings)`, as a JSON-ready dict."""
    from tfx import v1 as tfx

    from pipeline.wiring import create_pipeline

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            display_name=settings.pipeline_name,
            default_image=settings.cluster.image,
            default_commands=list(TASK_COMMAND),
        )
    )
    # The orchestrator keeps its own ML Metadata store (Vertex ML Metadata, or the cluster's): no connection here.
    return runner.run(create_pipeline(settings, None), write_out=False)


def compile_pipeline(settings: Settings, target: str, path: Path) -> Compiled:
    """Compiles for `target` (TARGETS), writes the spec to `path` whole, and stages the schema it imports."""
    from pipeline.runner import stage_schema

    job = pipeline_job(settings)
    if target == VERTEX:
        text = json.dumps(job, indent=2, sort_keys=True) + "\n"
    else:
        text = yaml.safe_dump(job["pipelineSpec"], sort_keys=True, width=120)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_modes.write_whole(path, text)
    tasks = tuple(sorted(job["pipelineSpec"]["root"]["dag"]["tasks"]))
    return Compiled(path, tasks, stage_schema(settings), settings.schema_uri)
