"""`make bench`: times the pipeline against a plain Keras script, side by side, and writes the results.

Each figure is a ratio of two measurements taken next to each other in this run; absolute
seconds are context. Writes bench/results.json and bench/RESULTS.md. Scratch work goes to
bench/work/, which each run clears.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import jinja2
from rich.console import Console

from bench import generate, measure
from pipeline import nodes, rerun

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work"
PENGUINS_CSV = measure.PROJECT_ROOT / "data" / "penguins.csv"
SCALES = (100_000, 1_000_000)
MULTI_PROCESSING = ("--beam-arg=--direct_running_mode=multi_processing", "--beam-arg=--direct_num_workers=2")
# The plain script's training work, which the pipeline is held to here: 200 steps of 32 examples.
SAME_TRAINING = ("--train-steps", "200", "--batch-size", "32")
TRAINED_EXAMPLES = 200 * 32  # train_steps × batch size: what the Trainer reads, whatever the data size
TARGETS = {  # the targets: ratio ≤ target, except the trainer input ratio (≥)
    "cold_tuner_off": 2.0,
    "rerun_unchanged": 0.3,
    "scale_1000000": 4.0,  # issue #17 (was 2.0)
    "trainer_input": 0.9,
    "serving_batch_1_p50": 1.5,
}
# Why each heavy component costs what it does, for RESULTS.md's account of missed targets.
WHY = {
    nodes.EXAMPLE_GEN: "converts every row to a tf.Example, hash-splits and writes gzipped TFRecords, one "
    "Python element per row through Beam",
    nodes.STATISTICS_GEN: "TFDV computes full statistics (quantiles, histograms, top-k) per feature and split",
    nodes.TRANSFORM: "TFT analyses every example in a Beam pipeline, then traces and saves the transform graph "
    "(the Trainer applies it as it reads)",
    nodes.TRAINER: "builds, trains and exports the model with its Transform layer as a SavedModel",
    nodes.EVALUATOR: "TFMA runs both signatures on every eval example and combines metrics per slice "
    "(overall, island, sex) element by element in Beam",
    nodes.TUNER: "trains one model per trial",
    nodes.SERVABILITY_CHECK: "loads the model in a clean TensorFlow process and times warmup requests from eval rows",
}
CODE_COPY = WORK / "src"  # models/ and pipeline/ copied, so the rerun section can edit the model code
console = Console(highlight=False, soft_wrap=True)


def step(message: str) -> None:
    """One progress line, timestamped."""
    console.print(f"[dim]{datetime.datetime.now():%H:%M:%S}[/] {message}")


def plain(csv: Path, name: str, *flags: str) -> dict:
    """Runs bench/plain_keras.py as a whole process."""
    seconds, out = measure.python_json("bench.plain_keras", str(csv), str(WORK / f"plain-{name}"), *flags)
    step(f"  plain script ({name}): {seconds:.1f} s, eval accuracy {out['accuracy']:.3f}")
    return {"seconds": seconds, **out}


def pipeline_run(output: str, *args: str, code_copy: bool = False) -> dict:
    """Runs `tfxp run` as a whole process; returns its time, per-component times and what it pushed.

    With `code_copy`, the pipeline and model code are imported from CODE_COPY instead of the project.
    """
    folder = WORK / output
    before = measure.serving_versions(folder)
    config = ("--config", str(measure.PROJECT_ROOT / "tfxp.toml")) if code_copy else ()
    timed = measure.tfxp(
        "run", *config, "--output", str(folder), *SAME_TRAINING, *args, cwd=CODE_COPY if code_copy else None
    )
    recorded = json.loads((folder / rerun.RECORD_FILE).read_text())["report"]
    parts = {n: dataclasses.asdict(c) for n, c in measure.components(folder).items()}
    result = {
        "seconds": timed.seconds,
        "exit_code": timed.code,
        "output": str(folder),
        "replayed": "Nothing changed since the run" in timed.stdout,
        "pushed_new_version": measure.serving_versions(folder) != before,
        "accuracy": recorded["slices"]["Overall"].get("sparse_categorical_accuracy"),
        "eval_examples": recorded["slices"]["Overall"].get("example_count"),
        "components": parts,
        "pipeline_seconds": sum(c["seconds"] for c in parts.values()),
    }
    step(
        f"  tfxp run {' '.join(args)} → {output}: {timed.seconds:.1f} s"
        + (" (replayed: nothing changed)" if result["replayed"] else f", pipeline {result['pipeline_seconds']:.1f} s")
    )
    return result


def fixed_cost() -> dict:
    """Cold penguins runs against the plain script, Tuner off and on."""
    step("1. Fixed cost on penguins (344 rows)")
    off_plain = plain(PENGUINS_CSV, "tuner-off")
    off_pipeline = pipeline_run("cold-tuner-off", "--no-tuner")
    on_plain = plain(PENGUINS_CSV, "tuner-on", "--tuner")
    on_pipeline = pipeline_run("cold-tuner-on", code_copy=True)
    tuned_plain = plain(PENGUINS_CSV, "tuner-off-no-autograph", "--skip-keras-autograph")
    return {
        "tuner_off": {
            "plain": off_plain,
            "pipeline": off_pipeline,
            "ratio": off_pipeline["seconds"] / off_plain["seconds"],
        },
        "tuner_on": {"plain": on_plain, "pipeline": on_pipeline, "ratio": on_pipeline["seconds"] / on_plain["seconds"]},
        "plain_without_keras_autograph": tuned_plain,
    }


def rerun_cost(fixed: dict) -> dict:
    """An unchanged rerun of the Tuner-on run, then a rerun after an edit to the network code only."""
    step("2. Rerun cost")
    unchanged = pipeline_run("cold-tuner-on", code_copy=True)
    (WORK / "cold-tuner-on" / rerun.RECORD_FILE).unlink()  # the same rerun, decided by TFX's cache instead
    through_tfx = pipeline_run("cold-tuner-on", code_copy=True)
    network = CODE_COPY / "models" / "network.py"
    network.write_text(network.read_text().replace("ONE_HOT_LIMIT = 64", "ONE_HOT_LIMIT = 48"))
    edited = pipeline_run("cold-tuner-on", code_copy=True)
    states = {n: c["state"] for n, c in edited["components"].items()}
    return {
        "unchanged": {
            **unchanged,
            "ratio": unchanged["seconds"] / fixed["tuner_off"]["plain"]["seconds"],
            "ratio_to_plain_tuner_on": unchanged["seconds"] / fixed["tuner_on"]["plain"]["seconds"],
        },
        "unchanged_through_tfx_cache": {
            **through_tfx,
            "ratio": through_tfx["seconds"] / fixed["tuner_off"]["plain"]["seconds"],
            "executed": [n for n, c in through_tfx["components"].items() if c["state"] == "COMPLETE"],
        },
        "model_code_change": {
            **edited,
            "change": "models/network.py: ONE_HOT_LIMIT = 64 → 48",
            "executed": [n for n, s in states.items() if s == "COMPLETE"],
            "cached": [n for n, s in states.items() if s == "CACHED"],
            "ratio_to_cold": edited["seconds"] / fixed["tuner_on"]["pipeline"]["seconds"],
        },
    }


def arrow_read_seconds(csv: Path) -> float:
    """Best of three `pyarrow.csv.read_csv` of the whole file."""
    import pyarrow.csv

    times = []
    for _ in range(3):
        started = time.perf_counter()
        pyarrow.csv.read_csv(csv)
        times.append(time.perf_counter() - started)
    return min(times)


def scale() -> dict:
    """The same schema at 100k and 1M rows: pipeline against plain, per component, and against Arrow."""
    step("3. Per-example cost at scale")
    sizes = {}
    for rows in SCALES:
        csv = generate.write(rows, WORK / f"data-{rows}" / "penguins.csv")
        arrow = arrow_read_seconds(csv)
        step(f"  {rows} rows generated; pyarrow.csv.read_csv {arrow:.2f} s")
        plain_run = plain(csv, f"{rows}")
        run = pipeline_run(f"scale-{rows}", "--no-tuner", "--data", str(csv.parent))
        handled = {
            nodes.EXAMPLE_GEN: rows,
            nodes.STATISTICS_GEN: rows,
            nodes.TRANSFORM: rows,
            nodes.TRAINER: TRAINED_EXAMPLES,
            nodes.EVALUATOR: run["eval_examples"],
        }
        rates = {n: handled[n] / run["components"][n]["seconds"] for n in handled}
        sizes[str(rows)] = {
            "plain": plain_run,
            "pipeline": run,
            "ratio": run["seconds"] / plain_run["seconds"],
            "examples_per_second": rates,
            "arrow_read_seconds": arrow,
            "vs_arrow": {n: rates[n] / (rows / arrow) for n in (nodes.EXAMPLE_GEN, nodes.STATISTICS_GEN)},
        }
    small, large = (sizes[str(r)] for r in SCALES)
    fits = {}
    for side in ("pipeline", "plain"):
        per_example = (large[side]["seconds"] - small[side]["seconds"]) / (SCALES[1] - SCALES[0])
        fits[side] = {
            "per_example_us": per_example * 1e6,
            "fixed_seconds": small[side]["seconds"] - per_example * SCALES[0],
        }
    per_component = {}
    for node in large["pipeline"]["components"]:
        a, b = (s["pipeline"]["components"][node]["seconds"] for s in (small, large))
        per_component[node] = {"per_example_us": (b - a) / (SCALES[1] - SCALES[0]) * 1e6}
    return {"sizes": sizes, "fit": fits, "per_component_fit": per_component}


def beam_mode(scaled: dict) -> dict:
    """StatisticsGen and Transform under multi_processing with 2 workers, against the in_memory run at 100k."""
    step("4. Beam mode at 100k rows")
    in_memory = scaled["sizes"]["100000"]["pipeline"]
    multi = pipeline_run("beam-multi-100000", "--no-tuner", "--data", str(WORK / "data-100000"), *MULTI_PROCESSING)
    _, counts_in_memory = measure.python_json("bench.micro", "record_counts", in_memory["output"])
    _, counts_multi = measure.python_json("bench.micro", "record_counts", multi["output"])
    compared = {
        node: {
            "in_memory": in_memory["components"][node]["seconds"],
            "multi_processing": multi["components"][node]["seconds"],
        }
        for node in (nodes.EXAMPLE_GEN, nodes.STATISTICS_GEN, nodes.TRANSFORM, nodes.EVALUATOR)
    }
    for times in compared.values():
        times["ratio"] = times["multi_processing"] / times["in_memory"]
    return {
        "components": compared,
        "record_counts": {"in_memory": counts_in_memory, "multi_processing": counts_multi},
        "counts_equal": counts_in_memory == counts_multi,
        "whole_run": {"in_memory": in_memory["seconds"], "multi_processing": multi["seconds"]},
    }


def micro(scaled: dict, fixed: dict) -> dict:
    """The Trainer's input pipeline at 100k rows, and serving latency of the penguins model."""
    step("5. Trainer input pipeline (100k rows)")
    _, trainer = measure.python_json("bench.micro", "trainer_input", scaled["sizes"]["100000"]["pipeline"]["output"])
    step(f"  tf.data / in memory: {trainer['ratio']:.2f}")
    step("6. Serving latency")
    _, serving = measure.python_json("bench.micro", "serving", fixed["tuner_off"]["pipeline"]["output"])
    step(f"  batch 1 p50: serving_default / forward pass {serving['batch_1']['p50_ratio']:.2f}")
    return {"trainer_input": trainer, "serving": serving}


def render(results: dict) -> None:
    """Writes RESULTS.md from the results."""
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(BENCH), trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined
    )
    (BENCH / "RESULTS.md").write_text(template.get_template("RESULTS.md.j2").render(r=results, why=WHY))


def main() -> None:
    """Runs every section and writes bench/results.json and bench/RESULTS.md (`--render`: only the latter)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite RESULTS.md from bench/results.json (after editing the template)",
    )
    if parser.parse_args().render:
        render(json.loads((BENCH / "results.json").read_text()))
        return
    started = time.perf_counter()
    shutil.rmtree(WORK, ignore_errors=True)
    for package in ("models", "pipeline"):  # the rerun section edits this copy, never the project's code
        shutil.copytree(
            measure.PROJECT_ROOT / package, CODE_COPY / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    results = {"machine": measure.machine(), "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}", "targets": TARGETS}
    results["fixed_cost"] = fixed_cost()
    results["rerun"] = rerun_cost(results["fixed_cost"])
    results["scale"] = scale()
    results["beam_mode"] = beam_mode(results["scale"])
    results.update(micro(results["scale"], results["fixed_cost"]))
    results["bench_minutes"] = (time.perf_counter() - started) / 60
    (BENCH / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    render(results)
    step(f"Wrote {BENCH / 'results.json'} and {BENCH / 'RESULTS.md'} in {results['bench_minutes']:.1f} min")
    if not results["beam_mode"]["counts_equal"]:
        console.print("[bold red]multi_processing produced different record counts than in_memory[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
