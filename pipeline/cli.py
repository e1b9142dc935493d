"""The `tfxp` command line: run the pipeline, and open its training curves in TensorBoard."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from pipeline import config, nodes

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_BLESSED = 3
EXIT_INTERRUPTED = 130

def _fail(message: str, code: int) -> None:
    """Prints one clear error line and exits with `code`."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]Error:[/] {escape(message)}")
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """A local-first TFX pipeline: validated data in, a blessed SavedModel out, lineage throughout."""


_output_option = click.option(
    "--output", type=click.Path(path_type=Path), default=config.DEFAULT_OUTPUT, show_default=True,
    help="Folder for all artifacts: pipeline/, metadata.sqlite, serving/ and logs/.",
)


@main.command()
@click.option("--data", type=click.Path(path_type=Path), default=config.DEFAULT_DATA, show_default=True,
              help="Folder of CSV files to train on.")
@_output_option
@click.option("--schema", type=click.Path(path_type=Path), default=config.DEFAULT_SCHEMA, show_default=True,
              help="Curated schema that every batch is validated against.")
@click.option("--infer-schema", is_flag=True, help="Let SchemaGen infer the schema instead of importing --schema.")
@click.option("--tuner/--no-tuner", default=config.Training.tuner_enabled, show_default=True,
              help="Search hyperparameters with KerasTuner before training.")
@click.option("--tuner-trials", type=int, default=config.Training.tuner_trials, show_default=True,
              help="Trials the Tuner may try.")
@click.option("--train-steps", type=int, default=config.Training.train_steps, show_default=True,
              help="Training steps for the final model.")
@click.option("--min-accuracy", type=float, default=config.Training.min_accuracy, show_default=True,
              help="Eval accuracy a model needs to be blessed and pushed.")
@click.option("--beam-arg", "beam_args", multiple=True, metavar="ARG",
              help=f"Beam pipeline argument, repeatable. Default: {' '.join(config.DEFAULT_BEAM_ARGS)}")
@click.option("--no-cache", is_flag=True, help="Re-execute every component even if its inputs are unchanged.")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow, Beam and TFX logs in the terminal.")
def run(data, output, schema, infer_schema, tuner, tuner_trials, train_steps, min_accuracy, beam_args, no_cache, verbose):
    """Run the whole pipeline: validate, transform, tune, train, evaluate, and push if blessed."""
    settings = config.Settings(
        paths=config.Paths(data_root=data.resolve(), schema_file=None if infer_schema else schema.resolve(),
                           output_root=output.resolve()),
        training=dataclasses.replace(config.Training(), tuner_enabled=tuner, tuner_trials=tuner_trials,
                                     train_steps=train_steps, min_accuracy=min_accuracy),
        beam_args=tuple(beam_args) or config.DEFAULT_BEAM_ARGS,
        enable_cache=not no_cache,
    )
    try:
        settings.validate()
    except config.ConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)

    from pipeline import runner

    log_path = None if verbose else runner.new_log_path(settings)
    with runner.terminal(log_path) as (out, err):
        try:
            code = _run_and_report(settings, out, err, log_path)
        except KeyboardInterrupt:
            err.print("Interrupted. Finished components are cached in MLMD; rerun `tfxp run` to continue from them.")
            code = EXIT_INTERRUPTED
    sys.exit(code)


def _run_and_report(settings: config.Settings, out: Console, err: Console, log_path: Path | None) -> int:
    """Runs the pipeline and prints its summary; returns the exit code."""
    if log_path is None:
        warnings.simplefilter("default")
    else:
        warnings.simplefilter("ignore")  # library deprecation chatter; the log keeps real errors
    from pipeline import guards, report, runner  # heavy imports, after the cheap checks

    out.print(f"Running pipeline [bold]{settings.pipeline_name}[/] on {settings.paths.data_root}")
    if log_path:
        out.print(f"[dim]Full log: {log_path}[/]")
    try:
        timings = runner.run_pipeline(settings, out, log_path)
    except runner.RunFailed as failure:
        where = f"\nFull log: {failure.log_path}" if failure.log_path else ""
        if isinstance(failure.cause, guards.DataAnomaliesError):
            err.print(f"[bold red]Error:[/] data anomalies stopped the run before Transform; nothing was trained or pushed.\n"
                      f"{escape(str(failure.cause))}\nFix the data, or review and update {settings.paths.schema_file}.{escape(where)}")
        else:
            err.print(f"[bold red]Error:[/] {failure.node_id or 'the pipeline'} failed: "
                      f"{type(failure.cause).__name__}: {escape(str(failure.cause))}{escape(where)}")
        return EXIT_FAILED
    out.print(f"Pipeline finished in {sum(t.seconds for t in timings):.1f} s.\n")
    summary = report.build_report(settings)
    report.render(summary, settings, out)
    return 0 if summary.blessed else EXIT_NOT_BLESSED


@main.command()
@_output_option
@click.option("--port", type=int, default=6006, show_default=True, help="Port TensorBoard listens on.")
def tensorboard(output, port):
    """Open TensorBoard on the training curves of every run."""
    settings = config.Settings(paths=config.Paths(output_root=output.resolve()))
    log_dir = nodes.training_logs(settings.paths.pipeline_root)
    if not log_dir.is_dir():
        _fail(f"no training logs under {log_dir}; run `tfxp run` first", EXIT_BAD_INPUT)
    binary = shutil.which("tensorboard", path=str(Path(sys.executable).parent)) or shutil.which("tensorboard")
    if binary is None:
        _fail("the tensorboard command is not installed in this environment", EXIT_FAILED)
    Console(highlight=False, soft_wrap=True).print(f"TensorBoard on {log_dir}: http://localhost:{port}/  (Ctrl-C to stop)")
    try:
        quiet = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
        sys.exit(subprocess.call([binary, "--logdir", str(log_dir), "--port", str(port)], env=quiet))
    except KeyboardInterrupt:
        sys.exit(0)
