"""The `tfxp` command line: run the pipeline, and open its training curves in TensorBoard."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shlex
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models import features
from models.features import Problem
from pipeline import config, file_modes, nodes, run_lock, watch
from pipeline import settings as settings_module
from pipeline.kubeflow import DEFAULT_OUTPUT, KUBEFLOW, TARGETS, VERTEX

if TYPE_CHECKING:  # init's module imports TFDV; the CLI loads it only when init runs
    from pipeline import monitoring, starter

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_BLESSED = 3
EXIT_NOT_SERVABLE = 4
EXIT_AWAITING_APPROVAL = 5
EXIT_THRESHOLD_CROSSED = 6  # drift stopped a run, serving traffic is skewed, or the serving model is too old
EXIT_BUSY = 7  # another command holds the output folder's run lock; nothing was done
EXIT_INTERRUPTED = 130
EXIT_MEANINGS = {  # what `tfxp watch` says of each run's exit code; the README's table says the same
    EXIT_OK: "ok, blessed and pushed",
    EXIT_FAILED: "failed",
    EXIT_BAD_INPUT: "bad input, nothing was run",
    EXIT_NOT_BLESSED: "not blessed, nothing pushed",
    EXIT_NOT_SERVABLE: "not servable, nothing pushed",
    EXIT_AWAITING_APPROVAL: "blessed, awaiting approval (tfxp pending)",
    EXIT_THRESHOLD_CROSSED: "a monitoring threshold was crossed",
    EXIT_BUSY: "another run is in progress, nothing was run",
    EXIT_INTERRUPTED: "interrupted",
}

# What `tfxp run` exits with for each way history.outcome says a run ended; "cached" and "not pushed" replay or
# depend on an earlier decision, so they say nothing of the code.
OUTCOME_CODES = {
    "pushed": EXIT_OK,
    "already serving": EXIT_OK,
    "not blessed": EXIT_NOT_BLESSED,
    "not servable": EXIT_NOT_SERVABLE,
    "awaiting approval": EXIT_AWAITING_APPROVAL,
    "stopped by drift": EXIT_THRESHOLD_CROSSED,
    "stopped by anomalies": EXIT_FAILED,
}


def exit_code_of(outcome: str) -> int | None:
    """The exit code of a run that ended with `outcome` (history.outcome), or None when it does not tell."""
    if outcome.startswith("failed at"):
        return EXIT_FAILED
    if outcome.startswith("interrupted at"):
        return EXIT_INTERRUPTED
    return OUTCOME_CODES.get(outcome)


def _fail(message: str, code: int) -> NoReturn:
    """Prints one clear error line and exits with `code`."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]Error:[/] {escape(message)}")
    sys.exit(code)


def _become(argv: list[str], env: dict[str, str]) -> NoReturn:
    """Replaces this process with `argv`: the way for a command to hand over to a long-running server.

    A child we waited on would outlive us: a SIGTERM from a supervisor, a test or `kill PID` stops only
    the process it names, and the orphan keeps its port. After exec there is no parent to lose; every
    signal, and the exit code, belong to the server itself.
    """
    sys.stdout.flush()  # exec drops Python's buffers, and with them anything printed but not yet written
    sys.stderr.flush()
    # Python ignores these, and exec would pass that on; reset them as subprocess does for its children.
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execve(argv[0], argv, env)
    except OSError as error:
        _fail(f"could not start {argv[0]}: {error}", EXIT_FAILED)


class _Commands(click.Group):
    """Every command's one-line answers to an unreadable ML Metadata store and to Ctrl-C."""

    def invoke(self, ctx):
        from pipeline import integrity

        try:
            return super().invoke(ctx)
        except integrity.StoreError as error:
            _fail(str(error), EXIT_BAD_INPUT)
        except KeyboardInterrupt:  # click would say "Aborted!" and exit 1, as if something had failed
            Console(stderr=True, highlight=False).print("Interrupted.")
            sys.exit(EXIT_INTERRUPTED)


def entry() -> None:
    """`tfxp` and `python -m pipeline`: the CLI, then Python's teardown with Ctrl-C ignored.

    A command has finished and said so when `main` ends; the teardown after it takes seconds with TensorFlow
    loaded. A Ctrl-C there could only print a traceback from an exit handler, or end the process by SIGINT in
    place of the exit code the command chose. Ignored, not handled: Python resets its own handlers to the
    default action part way through the teardown.
    """
    try:
        main()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """A local-first TFX pipeline: validated data in, a blessed SavedModel out, lineage throughout."""
    # Before anything is written, here or by TensorFlow, TFX and the store in this process and its children:
    # the serving folder is what a model server runs, and no umask (000 included) may let anyone replace it.
    file_modes.forbid_world_writes()


_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=config.CONFIG_FILE,
    show_default=True,
    help="Project file; relative paths in it are read from its folder.",
)


def _load(config_file: Path, overrides: dict | None = None, **resolve_args) -> settings_module.Settings:
    """Reads the project file and resolves it, or exits with the one-line reason."""
    try:
        project = config.load_project(config_file, overrides)
        return settings_module.resolve(
            project, config_file.absolute().parent, project_file=config_file.absolute(), **resolve_args
        )
    except config.ConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)


def _one_run(output_root: Path, hold: bool = True) -> None:
    """Holds the output folder's run lock until the command ends (with `hold=False`, only checks that no one
    holds it), or exits at once with EXIT_BUSY naming the run in progress."""
    context = click.get_current_context()
    command = f"{context.find_root().info_name} {shlex.join(sys.argv[1:])}"
    try:
        if not hold:
            run_lock.check(output_root)
            return
        taken_over = context.with_resource(run_lock.hold(output_root, command))
    except run_lock.Busy as error:
        _fail(str(error), EXIT_BUSY)
    if taken_over is not None:
        why = "which had let it go" if taken_over.running() else "which is no longer running"
        Console(highlight=False, soft_wrap=True).print(
            f"Took over the lock of run {escape(taken_over.describe())}, {why}."
        )


def _absolute(path: Path | None) -> str | None:
    """A path typed on the command line, made absolute against the current folder."""
    return str(path.absolute()) if path is not None else None


@main.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder of CSV or Parquet files (or of span-<N>/ folders) to profile.",
)
@click.option("--label", required=True, help="Column to predict.")
@click.option(
    "--format",
    "data_format",
    type=click.Choice(["csv", "parquet"]),
    default=None,
    help="File format. Default: whichever the folder holds.",
)
@click.option(
    "--problem",
    type=click.Choice([p.value for p in Problem]),
    default=None,
    help="Problem type. Default: inferred from the label, and printed.",
)
@click.option(
    "--name", "model_name", default=None, help="Model name in the serving path. Default: the data folder's name."
)
@click.option(
    "--project",
    "project_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Folder to write tfxp.toml and schema/schema.pbtxt into.",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="COLUMN",
    help="Column to leave out of the model, repeatable: a leak computed from the label, say. Ids are found for you.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing tfxp.toml and schema.")
def init(data, label, data_format, problem, model_name, project_dir, exclude, force):
    """Profile a dataset with TFDV; write a starter tfxp.toml and schema/schema.pbtxt to review."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter, before TFDV imports it
    warnings.simplefilter("ignore")
    from pipeline import starter

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Profiling {data} with TensorFlow Data Validation...")
    try:
        draft = starter.build_starter(
            project_dir, data, label, data_format, Problem(problem) if problem else None, model_name, tuple(exclude)
        )
        project_file, schema_file = starter.write_starter(draft, project_dir, force)
    except starter.InitError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    console.print(_decision_table(draft))
    console.print(f"Problem: [bold]{draft.problem.value}[/] (inferred: {escape(draft.problem_reason)})")
    console.print(f"Wrote {project_file} and {schema_file}.")
    console.print("Review both (the schema is what every new batch is checked against), then run [bold]tfxp run[/].")


def _decision_table(draft: starter.Starter) -> Table:
    """What init decided per column; the reason goes under the treatment so the table fits 80 columns."""
    table = Table(
        title=f"{draft.rows} rows: what init decided per column",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_lines=True,
        pad_edge=False,
    )
    table.add_column("column", overflow="fold", max_width=24)
    for heading in ("type", "missing", "distinct"):
        table.add_column(heading, no_wrap=True)
    table.add_column("treatment, and why", ratio=1)
    for d in draft.decisions:
        distinct = "" if d.distinct is None else str(d.distinct)
        decided = f"{escape(d.treatment)}\n[dim]{escape(d.reason)}[/]"
        table.add_row(escape(d.column), d.kind, f"{d.missing:.0%}", distinct, decided)
    return table


@main.command()
@_config_option
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Data folder, instead of [data] path.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for pipeline/, metadata.sqlite, serving/ and logs/, instead of the project's output.",
)
@click.option(
    "--schema", type=click.Path(path_type=Path), default=None, help="Curated schema, instead of [schema] path."
)
@click.option("--span", type=int, default=None, help="Span to train on (data/span-<N>/). Default: the newest.")
@click.option(
    "--tuner/--no-tuner", default=None, help="Search hyperparameters with KerasTuner first. Default: [training] tuner."
)
@click.option("--tuner-trials", type=int, default=None, help="Trials the Tuner may try.")
@click.option("--epochs", type=int, default=None, help="At most this many passes over the training split.")
@click.option("--train-steps", type=int, default=None, help="A fixed number of training steps instead of epochs.")
@click.option("--batch-size", type=int, default=None, help="Examples per step. Default: grows with the table.")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Bound the gate metric must meet to bless a model, instead of [evaluation] threshold.",
)
@click.option(
    "--on-drift",
    type=click.Choice(["warn", "stop"]),
    default=None,
    help="What a span past its drift thresholds does: warn and train, or stop. Default: [monitoring] on_drift.",
)
@click.option(
    "--beam-arg",
    "beam_args",
    multiple=True,
    metavar="ARG",
    help=f"Beam pipeline argument, repeatable. Default: {' '.join(settings_module.DEFAULT_BEAM_ARGS)}",
)
@click.option("--no-cache", is_flag=True, help="Re-execute every component even if nothing changed since the last run.")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow, Beam and TFX logs in the terminal.")
def run(
    config_file,
    data,
    output,
    schema,
    span,
    tuner,
    tuner_trials,
    epochs,
    train_steps,
    batch_size,
    threshold,
    on_drift,
    beam_args,
    no_cache,
    verbose,
):
    """Run the whole pipeline: check, validate, transform, tune, train, evaluate, and push if blessed."""
    overrides = {
        "data.path": _absolute(data),
        "output": _absolute(output),
        "schema.path": _absolute(schema),
        "training.tuner": tuner,
        "training.tuner_trials": tuner_trials,
        "training.epochs": epochs,
        "training.train_steps": train_steps,
        "training.batch_size": batch_size,
        "evaluation.threshold": threshold,
        "monitoring.on_drift": on_drift,
    }
    settings = _load(config_file, overrides, span=span, beam_args=tuple(beam_args), enable_cache=not no_cache)
    _one_run(settings.paths.output_root)
    console = Console(highlight=False, soft_wrap=True)
    label = settings.declarations.label
    how = (
        "from the project file"
        if settings.project.label.problem
        else f"inferred: {features.infer_problem(_schema_feature(settings, label.name), settings.schema)[1]}"
    )
    console.print(
        f"Project [bold]{escape(settings.model_name)}[/]: {label.problem.value} on '{escape(label.name)}' ({escape(how)})"
    )
    _forget_damaged_artifacts(settings, console)
    if settings.enable_cache:
        _replay_if_unchanged(settings, console)

    from pipeline import preflight

    try:
        summary = preflight.check_data(settings)
    except preflight.DataError as error:
        _fail(
            f"{error}\nNothing was run; {settings.paths.serving_root / settings.model_name} is untouched.",
            EXIT_BAD_INPUT,
        )
    except Exception as error:  # noqa: BLE001  (a reader bug must still read as one line, not a traceback)
        _fail(f"could not read {settings.input_folder}: {type(error).__name__}: {error}\nNothing was run.", EXIT_FAILED)
    span_text = f"span {settings.span}, " if settings.span is not None else ""
    console.print(f"Checked {span_text}{len(summary.files)} file(s), {summary.rows} rows in {summary.folder}")
    if summary.unlabeled:
        console.print(
            f"{summary.unlabeled} row(s) have no value in the label '{escape(label.name)}'; they are left out."
        )

    from pipeline import runner, serving

    folder = serving.ServingFolder(settings.paths.serving_root, settings.model_name)
    recovered = []
    if folder.model_dir.is_dir():  # never create the serving folder before a model is pushed
        try:
            with folder.lock():
                recovered = folder.recover()  # a cached Pusher would not run, and so not clean up
        except serving.DeliveryError as error:
            _fail(f"{error}\nNothing was run.", EXIT_BAD_INPUT)
    for leftover in recovered:
        console.print(f"Removed {leftover}, an unfinished push an interrupted run left in {folder.model_dir}.")
    settings = _with_drift_baseline(settings, folder, console)

    log_path = None if verbose else runner.new_log_path(settings)
    with runner.terminal(log_path) as (out, err):
        try:
            code = _run_and_report(settings, out, err, log_path)
        except KeyboardInterrupt:
            err.print("Interrupted. Finished components are cached in MLMD; rerun `tfxp run` to continue from them.")
            code = EXIT_INTERRUPTED
    sys.exit(code)


def _with_drift_baseline(settings: settings_module.Settings, folder, console: Console) -> settings_module.Settings:
    """The settings with the statistics this run's data is compared with for drift, said in one line."""
    from pipeline import lineage, monitoring

    baseline = None
    if settings.paths.metadata_path.is_file():
        baseline = monitoring.drift_baseline(lineage.open_store(settings.paths.output_root), folder, settings.span)
    if baseline is not None:
        what = f"span {settings.span}" if settings.span is not None else "this data"
        console.print(f"Drift: comparing {what} with {escape(baseline.why)}.")
    elif settings.span is not None:
        console.print(f"Drift: no earlier span has been run, so span {settings.span} is compared with nothing yet.")
    return dataclasses.replace(settings, drift_baseline=baseline)


def _forget_damaged_artifacts(settings: settings_module.Settings, console: Console) -> None:
    """Marks artifacts whose files are gone or truncated DELETED, saying which, so nothing reuses them."""
    from pipeline import integrity

    damages = integrity.damaged(settings.paths.output_root)
    if not damages:
        return
    from pipeline import lineage

    integrity.mark_deleted(lineage.open_store(settings.paths.output_root), settings.pipeline_name, damages)
    for damage in damages:
        console.print(
            f"Damaged: {escape(str(damage))}. Marked deleted in ML Metadata: no run reuses it, and the component "
            "that made it runs again when this run needs it."
        )


def _replay_if_unchanged(settings: settings_module.Settings, console: Console) -> None:
    """Shows the last run's summary and exits when nothing it depended on has changed."""
    from pipeline import report, rerun

    found = rerun.lookup(settings)
    if found.reason:
        console.print(f"[dim]{escape(found.reason)}[/]")
    recorded = found.recorded
    if recorded is None:
        return
    console.print(
        f"Nothing changed since the run that finished at {recorded.finished_at}: same data files, schema, "
        "settings and code, and no run since. TFX would reuse every result, so nothing was run. "
        "Pass --no-cache to run anyway.\n"
    )
    summary = report.RunReport(**recorded.report).replayed()
    report.render(summary, settings, console)
    newest = settings.paths.newest_report()
    if newest is not None:
        console.print(f"Report: {newest}")
    sys.exit(_exit_code(summary))


def _exit_code(summary) -> int:
    """A model TF Serving could not load is the graver finding, then one that missed the gate."""
    if not summary.servable:
        return EXIT_NOT_SERVABLE
    if not summary.blessed:
        return EXIT_NOT_BLESSED
    return EXIT_AWAITING_APPROVAL if summary.awaiting_approval else EXIT_OK


def _schema_feature(settings: settings_module.Settings, name: str):
    """The schema entry of one column."""
    return next(f for f in settings.schema.feature if f.name == name)


def _run_and_report(settings: settings_module.Settings, out: Console, err: Console, log_path: Path | None) -> int:
    """Runs the pipeline and prints its summary; returns the exit code."""
    if log_path is None:
        warnings.simplefilter("default")
    else:
        warnings.simplefilter("ignore")  # library deprecation chatter; the log keeps real errors
    from pipeline import report, rerun, runner  # heavy imports, after the cheap checks

    out.print(f"Running pipeline [bold]{settings.pipeline_name}[/] on {settings.paths.data_root}")
    if log_path:
        out.print(f"[dim]Full log: {log_path}[/]")
    before = _newest_run(settings)
    taken = rerun.inputs(settings)  # as the run starts: data changed during it must not be recorded as read
    try:
        timings = runner.run_pipeline(settings, out, log_path)
    except runner.RunFailed as failure:
        _note_artifact_files(settings, err)
        code = _failed(failure, settings, err)
        _write_report(settings, before, code, err)
        return code
    _note_artifact_files(settings, out)
    out.print(f"Pipeline finished in {sum(t.seconds for t in timings):.1f} s.\n")
    summary = report.build_report(settings)
    report.render(summary, settings, out)
    rerun.record(settings, dataclasses.asdict(summary), f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}", taken)
    code = _exit_code(summary)
    _write_report(settings, before, code, out)
    return code


def _note_artifact_files(settings: settings_module.Settings, console: Console) -> None:
    """Notes the artifacts' file sizes for the next run's damage check; a full disk only skips the note."""
    from pipeline import integrity

    try:
        integrity.note_files(settings.paths.output_root)
    except OSError as error:
        console.print(f"[dim]Could not note the artifacts' files for the next run's check: {escape(str(error))}[/]")


def _newest_run(settings: settings_module.Settings) -> int | None:
    """The newest run recorded in the output folder's MLMD store, or None before the first."""
    from pipeline import lineage

    if not settings.paths.metadata_path.is_file():
        return None
    runs = lineage.pipeline_runs(lineage.open_store(settings.paths.output_root))
    return runs[-1].id if runs else None


def _write_report(settings: settings_module.Settings, before: int | None, code: int, console: Console) -> None:
    """Writes the HTML report of the run that just ended and prints where; a run that recorded nothing has none."""
    from pipeline import run_report

    run_id = _newest_run(settings)
    if run_id is None or run_id == before:
        return
    try:
        path = run_report.write_report(settings, run_id, (code, _meaning(code)))
    except Exception as error:  # noqa: BLE001  (the run's own result and exit code still stand)
        console.print(f"[bold red]Could not write the run report:[/] {type(error).__name__}: {escape(str(error))}")
        return
    console.print(f"Report: {path}")


def _failed(failure, settings: settings_module.Settings, err: Console) -> int:
    """Says why the pipeline stopped; returns the exit code."""
    from pipeline import drift, guards, redaction

    # An exception's text may quote a Beam argument; the terminal gets what the log gets.
    cause = redaction.redact(str(failure.cause), redaction.secret_values(settings.beam_args))
    where = f"\nFull log: {failure.log_path}" if failure.log_path else ""
    if isinstance(failure.cause, guards.DataAnomaliesError):
        err.print(
            f"[bold red]Error:[/] data anomalies stopped the run before Transform; nothing was trained or pushed.\n"
            f"{escape(str(failure.cause))}\nFix the data, or review and update {settings.paths.schema_file} "
            "(edits take effect on the next run). To stop using and checking a column, add it to "
            f"{escape('[features] exclude')} in the project file.{escape(where)}"
        )
    elif isinstance(failure.cause, drift.DataDriftError):
        err.print(
            f"[bold red]Error:[/] drift stopped the run before Transform ({escape('[monitoring] on_drift')} = "
            f'"stop"); nothing was trained or pushed.\n{escape(str(failure.cause))}\n'
            f"Compared with {escape(settings.drift_baseline.why)}. If the change is real and the data is right, "
            f"raise the threshold for that column under {escape('[monitoring.thresholds]')}, or pass "
            f"--on-drift warn to train on it once.{escape(where)}"
        )
        return EXIT_THRESHOLD_CROSSED
    else:
        err.print(
            f"[bold red]Error:[/] {failure.node_id or 'the pipeline'} failed: "
            f"{type(failure.cause).__name__}: {escape(cause)}{escape(where)}"
        )
    return EXIT_FAILED


@main.command(name="compile")
@_config_option
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=VERTEX,
    show_default=True,
    help="vertex: a PipelineJob JSON for Vertex AI Pipelines. kubeflow: the pipeline spec as IR YAML for Kubeflow "
    "Pipelines.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"File to write. Default: {DEFAULT_OUTPUT[VERTEX]} (vertex) or {DEFAULT_OUTPUT[KUBEFLOW]} (kubeflow).",
)
def compile_spec(config_file, target, output):
    """Compile the pipeline for a cluster from the project file's [cluster] section: a KFP v2 spec (TFX's
    KubeflowV2DagRunner) whose tasks run in the [cluster] image, read and write its remote URIs, and run Beam on
    Dataflow."""
    try:
        project = config.load_project(config_file)
        settings = settings_module.resolve_for_cluster(
            project, config_file.absolute().parent, project_file=config_file.absolute()
        )
    except config.ConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    path = output or Path(DEFAULT_OUTPUT[target])
    if path.is_dir():
        _fail(f"--output {path} is a folder; name the file to write", EXIT_BAD_INPUT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter, before TFX imports it
    warnings.simplefilter("ignore")
    logging.getLogger("absl").setLevel(logging.ERROR)  # TFX logs each step of the compilation
    from pipeline import kubeflow, redaction

    started = time.monotonic()
    try:
        compiled = kubeflow.compile_pipeline(settings, target, path)
    except OSError as error:
        _fail(f"could not write {error.filename or path}: {error.strerror or error}", EXIT_FAILED)
    except Exception as error:  # noqa: BLE001  (the compiler refusing a node must still read as one line)
        _fail(f"TFX's Kubeflow V2 compiler refused the pipeline: {type(error).__name__}: {error}", EXIT_FAILED)
    cluster = settings.cluster
    where = "Vertex AI Pipelines" if target == VERTEX else "Kubeflow Pipelines"
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"Wrote {escape(str(path))}: pipeline [bold]{escape(settings.pipeline_name)}[/] for {where}, "
        f"{len(compiled.tasks)} tasks in image {escape(cluster.image)} ({time.monotonic() - started:.1f} s)."
    )
    reads = f"the newest span-<N>/ folder of {cluster.data}" if cluster.spans else cluster.data
    beam = f" in project {cluster.project}, region {cluster.region}" if cluster.runner == "DataflowRunner" else ""
    console.print(
        f"It reads {escape(reads)}, pushes to {escape(settings.serving_uri)}, and runs Beam on {cluster.runner}"
        f"{escape(beam)}."
    )
    console.print(
        "Before its first run, and after any schema edit, upload the schema it imports (named by its content):\n"
        f"  gcloud storage cp {escape(str(compiled.schema_file))} {escape(compiled.schema_uri)}"
    )
    secrets = redaction.secret_options(settings.beam_args)
    if secrets:  # logs and records redact them; a spec to upload cannot
        console.print(
            f"[yellow]Warning:[/] the spec holds the value of {escape(', '.join(secrets))} in clear text, as the "
            "Beam arguments of its tasks: anyone who can read the spec or the pipeline job can read it. Give "
            "Dataflow's workers their access through a service account (--service_account_email) instead."
        )
    if target == KUBEFLOW:
        console.print(
            "Kubeflow Pipelines' open-source backend does not run resolver tasks "
            f"({escape(nodes.BASELINE_RESOLVER)}), so a run there stops at them; Vertex AI Pipelines runs them. "
            "See the README's Running on a cluster."
        )


def _project_output(config_file: Path, output: Path | None) -> tuple[config.Project, Path]:
    """The project file, and the absolute output folder of its runs (or `output`), without loading TensorFlow."""
    try:
        project = config.load_project(config_file)
    except config.ConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    return project, (output or config_file.absolute().parent / project.output).absolute()


_output_option = click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder of the runs, instead of the project's output.",
)


@main.command()
@_config_option
@_output_option
@click.option("--port", type=int, default=6006, show_default=True, help="Port TensorBoard listens on.")
def tensorboard(config_file, output, port):
    """Open TensorBoard on the training curves of every run."""
    _, output = _project_output(config_file, output)
    log_dir = nodes.training_logs(output / "pipeline")
    if not log_dir.is_dir():
        _fail(f"no training logs under {log_dir}; run `tfxp run` first", EXIT_BAD_INPUT)
    binary = shutil.which("tensorboard", path=str(Path(sys.executable).parent)) or shutil.which("tensorboard")
    if binary is None:
        _fail("the tensorboard command is not installed in this environment", EXIT_FAILED)
    Console(highlight=False, soft_wrap=True).print(
        f"TensorBoard on {log_dir}: http://localhost:{port}/  (Ctrl-C to stop)"
    )
    quiet = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    _become([binary, "--logdir", str(log_dir), "--port", str(port)], quiet)


def _serving(config_file: Path, output: Path | None, writes: bool = False):
    """The project, its serving folder, and its MLMD store; exits if nothing was ever run there. A command that
    `writes` either holds the run lock from here on or exits with EXIT_BUSY."""
    from pipeline import lineage, serving

    project, output = _project_output(config_file, output)
    if writes:
        _one_run(output)
    if not (output / settings_module.METADATA_FILE).is_file():
        _fail(f"no runs in {output}; run `tfxp run` first", EXIT_BAD_INPUT)
    return project, serving.ServingFolder(output / "serving", project.model_name), lineage.open_store(output)


@main.command()
@_config_option
@_output_option
def models(config_file, output):
    """List every pushed version: its data, gate metric, servability, and which one TF Serving serves.

    Each version on disk is checked against the digest recorded when it was pushed; exits 4 when the files of
    the version TF Serving serves have changed since.
    """
    from pipeline import registry

    project, folder, store = _serving(config_file, output)
    console = Console(highlight=False, soft_wrap=True)
    versions = registry.pushed_versions(store, folder)
    if not versions:
        console.print(f"Nothing pushed yet to {folder.model_dir}.")
        return
    served, pinned = folder.served(), folder.pinned()
    table = Table(
        title=f"Versions of {escape(project.model_name)} in {folder.model_dir}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_lines=True,
        pad_edge=False,
    )
    table.add_column("version", no_wrap=True)
    table.add_column("pushed", no_wrap=True)
    table.add_column("span", no_wrap=True)
    table.add_column("gate metric", ratio=1)
    table.add_column("servability\n(p50/p99)", no_wrap=True)
    table.add_column("on disk", ratio=1)
    for v in versions:
        figures = v.servability
        speed = "\n".join(
            f"{rows} {figures[f'p50_ms_batch_{batch}']:.1f}/{figures[f'p99_ms_batch_{batch}']:.1f} ms"
            for batch, rows in ((1, "1 row"), (64, "64 rows"))
            if f"p50_ms_batch_{batch}" in figures
        )
        load = f"load {figures['load_seconds']:.2f} s\n" if "load_seconds" in figures else ""
        marker = "\n[bold green]serving[/]" if v.version == served else ""
        on_disk = f"[bold red]{escape(v.on_disk)}[/]" if v.on_disk == registry.CHANGED_ON_DISK else escape(v.on_disk)
        table.add_row(
            str(v.version),
            f"{v.pushed_at:%Y-%m-%d\n%H:%M:%S}",
            "" if v.span is None else str(v.span),
            escape(v.gate.replace(", ", "\n", 1)),
            load + speed or "not checked",
            on_disk + marker,
        )
    console.print(table)
    changed = [v.version for v in versions if v.on_disk == registry.CHANGED_ON_DISK]
    if changed:
        console.print(
            f"[bold red]Changed on disk:[/] version {', '.join(map(str, changed))}: the files differ from those "
            "pushed (SHA-256 recorded in ML Metadata), so what TF Serving loads is not what was checked. "
            "Roll back to another version, or push a checked model again with `tfxp run --no-cache`."
        )
    if served is None:
        console.print("No complete version on disk: TF Serving has nothing to serve.")
    else:
        how = "pinned by `tfxp rollback`; `tfxp rollback --clear` serves the latest again" if pinned else "the latest"
        console.print(f"TF Serving serves version {served} ({escape(how)}), per {folder.config_path}")
    history = registry.rollbacks(store)
    if history:
        last = history[0]
        moved = "latest again" if last.action == "clear" else f"{last.from_version} → {last.to_version}"
        console.print(
            f"Last rollback: {last.at:%Y-%m-%d %H:%M:%S} by {escape(last.user)}, {moved}: {escape(last.reason or '(no reason given)')}"
        )
    if served in changed:
        sys.exit(EXIT_NOT_SERVABLE)


@main.command()
@_config_option
@_output_option
@click.option(
    "--to",
    "to_version",
    type=int,
    default=None,
    help="Version to serve. Default: the one before the version serving now.",
)
@click.option("--clear", is_flag=True, help="Remove the pin: serve the latest version again.")
@click.option("--reason", default="", help="Why; recorded in ML Metadata with your user name and the time.")
def rollback(config_file, output, to_version, clear, reason):
    """Pin the version TF Serving serves (models.config), or with --clear go back to the latest."""
    from pipeline import registry, serving

    if clear and to_version is not None:
        _fail("--to and --clear contradict each other; pass one", EXIT_BAD_INPUT)
    project, folder, store = _serving(config_file, output, writes=True)
    console = Console(highlight=False, soft_wrap=True)
    try:
        with folder.lock():
            before, pinned_before = folder.served(), folder.pinned()
            target = None if clear else to_version if to_version is not None else folder.previous(before)
            if not clear and target is None:
                raise serving.DeliveryError(f"no complete version older than {before} to roll back to; pass --to")
            folder.pin(target)
            try:
                registry.record_rollback(
                    store, project.model_name, before, folder.served(), "clear" if clear else "pin", reason
                )
            except Exception:
                folder.pin(pinned_before)  # no unrecorded change of what serves
                raise
    except (serving.DeliveryError, registry.RegistryError) as error:
        _fail(f"{error}; nothing changed", EXIT_BAD_INPUT)
    after = folder.served()
    if clear:
        console.print(f"Serving the latest version again: {after} (was {before}).")
    else:
        console.print(f"Pinned version {after} (was {before}) in {folder.config_path}.")
    console.print("A TF Serving started with --model_config_file_poll_wait_seconds picks this up without a restart.")


@main.command()
@_config_option
@_output_option
def pending(config_file, output):
    """List the models awaiting approval, with their gate metric against the version serving now."""
    from pipeline import lineage, registry

    project, folder, store = _serving(config_file, output)
    console = Console(highlight=False, soft_wrap=True)
    decided = registry.decisions(store)
    waiting = [held for model_id, held in sorted(registry.held_models(store).items()) if model_id not in decided]
    served = folder.served()
    serving_gate = registry.served_gate(store, served)
    if not waiting:
        console.print("No model is awaiting approval.")
        return
    table = Table(title="Models awaiting approval", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for heading in ("model", "trained", "gate metric (vs its baseline)", "servability (p50/p99)"):
        table.add_column(heading)
    for held in waiting:
        figures = {k: lineage.custom_property(held.infra_blessing, k) or 0.0 for k in registry.FIGURES}
        table.add_row(
            str(held.model.id),
            f"{registry.when(held.model.create_time_since_epoch):%Y-%m-%d %H:%M}",
            escape(held.gate),
            f"1 row {figures['p50_ms_batch_1']:.1f}/{figures['p99_ms_batch_1']:.1f} ms",
        )
    console.print(table)
    if served is None:
        console.print("Nothing serves yet.")
    else:
        console.print(f"Serving now: version {served}, {escape(serving_gate)}")
    console.print("Decide with [bold]tfxp approve MODEL --note TEXT[/] or [bold]tfxp reject MODEL --note TEXT[/].")


@main.command()
@_config_option
@_output_option
@click.argument("model_id", metavar="MODEL", type=int)
@click.option("--note", default="", help="Why; recorded in ML Metadata with your user name and the time.")
@click.option("--force", is_flag=True, help="Push even if the model is older than the one serving now.")
def approve(config_file, output, model_id, note, force):
    """Approve a held model: push it to the serving folder and record who, when and why."""
    from pipeline import approval, serving

    project, folder, store = _serving(config_file, output, writes=True)
    try:
        push = approval.approve(
            store, project.model_name, folder, model_id, note, project.delivery.keep_versions, force
        )
    except (approval.ApprovalError, serving.DeliveryError) as error:
        _fail(f"{error}; nothing was pushed", EXIT_BAD_INPUT)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Approved model {model_id}: pushed to {push.path}, with TF Serving warmup requests.")
    if push.removed:
        console.print(f"Retention removed version(s) {', '.join(map(str, push.removed))} (keep_versions).")
    pinned = folder.pinned()
    if pinned is not None:
        console.print(f"Version {pinned} stays pinned; `tfxp rollback --clear` serves the latest.")


@main.command()
@_config_option
@_output_option
@click.argument("model_id", metavar="MODEL", type=int)
@click.option("--note", required=True, help="Why; recorded in ML Metadata with your user name and the time.")
def reject(config_file, output, model_id, note):
    """Reject a held model: it can never be pushed; record who, when and why."""
    from pipeline import approval

    project, _, store = _serving(config_file, output, writes=True)
    try:
        approval.reject(store, project.model_name, model_id, note)
    except approval.ApprovalError as error:
        _fail(f"{error}; nothing changed", EXIT_BAD_INPUT)
    Console(highlight=False, soft_wrap=True).print(f"Rejected model {model_id}; it will not be pushed.")


@main.command()
@_config_option
@_output_option
@click.option(
    "--requests",
    "requests_path",
    type=click.Path(path_type=Path),
    required=True,
    help="TF Serving request log (TFRecord of PredictionLog), CSV or Parquet of request rows, or a folder of them.",
)
def monitor(config_file, output, requests_path):
    """Compare what was sent to the server with the serving model's training statistics (training/serving skew).

    Exits 6 when a feature's distance crosses its [monitoring] threshold, a model input is missing, or values break
    the schema.
    """
    from pipeline import monitoring, registry

    if not requests_path.exists():
        _fail(f"no such file or folder: {requests_path}", EXIT_BAD_INPUT)
    _, folder, store = _serving(config_file, output, writes=True)
    version = folder.served()
    if version is None:
        _fail(f"nothing serves yet in {folder.model_dir}; push a model with `tfxp run` first", EXIT_BAD_INPUT)
    served = monitoring.serving_statistics(store, folder)
    if served is None:
        _fail(f"no training statistics are recorded for version {version}, which serves now", EXIT_BAD_INPUT)
    _, training = served
    try:
        training_statistics = monitoring.training_statistics(training)
    except monitoring.StatisticsError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    settings = _load(config_file, {"output": _absolute(output)})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter, before TFDV imports it
    warnings.simplefilter("ignore")
    from pipeline import request_logs, skew

    try:
        found = skew.check(settings, training_statistics, requests_path)
    except request_logs.RequestLogError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    checked_at = datetime.datetime.now()
    execution_id = monitoring.record_skew_check(
        store,
        settings.pipeline_name,
        settings.paths.output_root / "monitoring" / f"skew-{checked_at:%Y%m%d-%H%M%S-%f}",
        requests_path.absolute(),
        registry.served_model_id(store, version),
        training,
        found.statistics,
        found.anomalies,
    )
    result = monitoring.skew_of(found.anomalies)
    console = Console(highlight=False, soft_wrap=True)
    files = len(found.requests.files)
    console.print(
        f"{found.requests.rows} request rows from {files} file{'s' if files > 1 else ''} in {requests_path}, "
        f"compared with the training statistics of version {version} (serving now)"
    )
    console.print(_skew_table(result))
    console.print(f"Missing: {escape(', '.join(result.missing) or 'none')}")
    console.print(f"Unexpected: {escape(', '.join(result.unexpected) or 'none')}")
    for line in result.invalid:
        console.print(f"Invalid: {escape(line)}")
    if result.skewed:
        crossed = ", ".join(f.feature for f in result.crossed)
        why = [f"{len(result.crossed)} crossed ({crossed})" if result.crossed else ""]
        why += [f"{len(result.missing)} missing" if result.missing else ""]
        why += [f"{len(result.invalid)} invalid" if result.invalid else ""]
        console.print(f"[bold red]Skewed:[/] {escape('; '.join(w for w in why if w))}.")
    else:
        console.print("[bold green]No skew:[/] every distance is within its threshold.")
    console.print(f"Recorded in ML Metadata as SkewCheck {execution_id}.")
    sys.exit(EXIT_THRESHOLD_CROSSED if result.skewed else EXIT_OK)


def _skew_table(result: monitoring.Skew) -> Table:
    """One row per monitored feature: the distance TFDV measured, its threshold, and whether it crossed."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for heading in ("feature", "distance", "value", "threshold", ""):
        table.add_column(heading, no_wrap=True)
    for finding in result.distances:
        verdict = "[bold red]crossed[/]" if finding.value > finding.threshold else "ok"
        table.add_row(
            escape(finding.feature), finding.distance, f"{finding.value:.3f}", f"{finding.threshold:g}", verdict
        )
    return table


@main.command()
@_config_option
@_output_option
def status(config_file, output):
    """Say what serves, on which span and how old; whether a newer span waits; and the last drift and skew checks."""
    from pipeline import status as status_module

    project, folder, _ = _serving(config_file, output)
    data_root = (config_file.absolute().parent / project.data.path).absolute()
    found = status_module.read_status(project, data_root, folder.root.parent, datetime.datetime.now())
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]{escape(project.model_name)}[/] in {folder.root.parent}")
    status_module.render(found, project, console)
    sys.exit(EXIT_THRESHOLD_CROSSED if status_module.stale(found, project) else EXIT_OK)


@main.command()
@_config_option
@_output_option
def runs(config_file, output):
    """List past runs, newest first: when, on which span, how each ended, its gate metric and the version pushed."""
    from pipeline import history

    project, folder, store = _serving(config_file, output)
    found = history.runs(store)
    console = Console(highlight=False, soft_wrap=True)
    if not found:
        console.print(f"No runs recorded in {folder.root.parent}.")
        return
    table = Table(
        title=f"Runs of {escape(project.model_name)} in {folder.root.parent}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("run", "when", "took", "span", "outcome", "gate metric", "pushed"):
        table.add_column(name, no_wrap=name != "gate metric")
    for run in found:
        table.add_row(
            str(run.run_id),
            f"{run.started:%Y-%m-%d %H:%M}",
            f"{(run.finished - run.started).total_seconds():.0f} s",
            "" if run.span is None else str(run.span),
            run.outcome,
            escape(run.gate or ""),
            "" if run.version is None else str(run.version),
        )
    console.print(table)
    console.print("pushed: the version this run published, or found already serving its model (tfxp models).")


@main.command(name="lineage")
@_config_option
@_output_option
@click.argument("target", metavar="[VERSION | MODEL_ID]", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="The nodes and edges as JSON, instead of a tree.")
def lineage_tree(config_file, output, target, as_json):
    """Show what a pushed version (default: the one serving) or a Model artifact was made from, back to the data."""
    import json

    from pipeline import lineage, lineage_graph, registry

    _, folder, store = _serving(config_file, output)
    if target is None:
        target = folder.served()
        if target is None:
            _fail(f"nothing serves in {folder.model_dir}; name a version (tfxp models) or a model id", EXIT_BAD_INPUT)
    root = registry.lineage_root(store, target)
    if root is None:
        _fail(f"{target} is neither a pushed version (tfxp models) nor a Model artifact id in MLMD", EXIT_BAD_INPUT)
    graph = lineage.upstream_graph(store, root)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(graph), indent=2))
    else:
        Console(highlight=False, soft_wrap=True).print(lineage_graph.tree(graph))


@main.command(name="report")
@_config_option
@_output_option
@click.argument("run_id", metavar="[RUN]", type=int, required=False)
@click.option("--open", "open_it", is_flag=True, help="Open the report in a web browser.")
def report_command(config_file, output, run_id, open_it):
    """Rebuild the HTML report of a run (default: the newest) from ML Metadata: its data, model, evaluation,
    lineage and push, in one file with no network requests."""
    from pipeline import history, lineage

    settings = _load(config_file, {"output": _absolute(output)})
    run_id = run_id if run_id is not None else _newest_run(settings)
    if run_id is None:
        _fail(f"no runs in {settings.paths.output_root}; run `tfxp run` first", EXIT_BAD_INPUT)
    # Asked of MLMD alone, before TensorFlow loads: a mistyped id is answered at once.
    summary = history.run_summary(lineage.open_store(settings.paths.output_root), run_id)
    if summary is None:
        _fail(f"no run {run_id} in {settings.paths.output_root}; `tfxp runs` lists them", EXIT_BAD_INPUT)
    code = exit_code_of(summary.outcome)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter, before TFMA imports it
    warnings.simplefilter("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's readers log deprecations through it
    from pipeline import run_report

    path = run_report.write_report(settings, run_id, None if code is None else (code, _meaning(code)))
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Report of run {run_id}: {path}")
    if open_it:
        import webbrowser

        if not webbrowser.open(path.as_uri()):
            console.print(f"No web browser found here; open {path.as_uri()} in one.")


class _Duration(click.ParamType):
    """`30s`, `5m`, `1h` or a number of seconds, as seconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return watch.parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


def _meaning(code: int) -> str:
    """What a `tfxp run` exit code means, for the watcher's one-line report and the run report."""
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return EXIT_MEANINGS.get(code, "failed")


@main.command(name="watch")
@_config_option
@_output_option
@click.option(
    "--interval",
    type=_Duration(),
    default="60s",
    show_default=True,
    help="How often to look at the data folder (30s, 5m, 1h), and how long a span without _SUCCESS must stay unchanged.",
)
@click.option(
    "--once",
    is_flag=True,
    help="Look once (and again one interval later if the newest span has no _SUCCESS), run the newest complete "
    "span, and exit with tfxp run's code (0 if nothing is complete): for cron.",
)
def watch_spans(config_file, output, interval, once):
    """Run the pipeline on each new span as soon as it is complete; Ctrl-C or SIGTERM stops it."""
    settings = _load(config_file, {"output": _absolute(output)})
    _one_run(settings.paths.output_root, hold=False)  # each run takes the lock; an idle watcher must not hold it
    data_root, pattern = settings.paths.data_root, settings.project.data.file_pattern
    if not settings.spans and any(data_root.glob(pattern)):
        _fail(
            f"{data_root} holds {pattern} files directly; tfxp watch runs span-<N>/ folders. "
            "Move the files into span-1/, or use tfxp run.",
            EXIT_BAD_INPUT,
        )
    console = Console(highlight=False, soft_wrap=True)

    def say(line: str) -> None:
        console.print(f"[dim]{datetime.datetime.now():%H:%M:%S}[/] {escape(line)}")

    run_args = ["--config", str(config_file.absolute())] + (["--output", _absolute(output)] if output else [])
    runs = watch.ChildRuns(run_args, say)
    watcher = watch.Watcher(data_root, pattern, interval, runs, say, _meaning, busy=(EXIT_BUSY,))

    def on_signal(signum, frame):
        watcher.stop()
        runs.interrupt()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    every = watch.format_duration(interval)
    try:
        with watch.lock(settings.paths.output_root):
            if once:
                run = watcher.once()
                sys.exit(EXIT_OK if run is None else EXIT_FAILED if run.code is None else run.code)
            say(
                f"Watching {data_root} for span-<N>/ folders every {every} (Ctrl-C to stop). A span is complete when "
                f"it has a {watch.MARKER} file, or when its files are unchanged for {every}; the newest complete one runs."
            )
            watcher.watch()
    except watch.AlreadyWatching as error:
        _fail(f"{error}; stop it first", EXIT_BAD_INPUT)
    say("Stopped watching.")
