"""`make bench-quality`: the starter pipeline's model quality on public tables, against gradient boosting.

For each table that scikit-learn or statsmodels ships (no download), as a new user would: write
it as a CSV folder, `tfxp init --data … --label …`, `tfxp run` with the starter defaults, then
fit scikit-learn's HistGradientBoosting with default settings on the same train split ExampleGen
produced and score it on the same eval split with the same metric. Writes bench/quality.json
(raw) and bench/QUALITY.md (the table, what the bench saw, and the findings written by hand).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import pandas as pd

from bench import measure

BENCH = Path(__file__).resolve().parent
RESULTS_JSON = BENCH / "quality.json"
REPORT_MD = BENCH / "QUALITY.md"
TEMPLATE = "QUALITY.md.j2"
DEFAULT_WORK = BENCH / "work" / "quality"
RUN_TIMEOUT = 3600  # seconds for one `tfxp run`; the largest table takes a few minutes
# The targets: the pipeline within 2% of the baseline, or an RMSE at most 10% above it.
HIGHER_IS_BETTER_TARGET = 0.98
RMSE_TARGET = 1.1
FINDINGS_START, FINDINGS_END = "<!-- findings:start -->", "<!-- findings:end -->"


# ---------------------------------------------------------------- the tables


def _whole_numbers_as_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns holding only whole numbers become integers, as the original table and a database export store them.

    scikit-learn hands every table over as float64 (diabetes' age 59.0, digits' pixel 16.0);
    the sources list them as integers, and `tfxp init` decides on the type it reads.
    """
    frame = frame.copy()
    for name in frame.columns:
        values = frame[name]
        if values.dtype.kind == "f" and values.notna().any() and np.all(np.mod(values.dropna(), 1) == 0):
            frame[name] = values.astype("Int64")  # nullable: a gap stays an empty field
    return frame


def _sklearn(loader: str, label: str, class_names: bool = True, **kwargs) -> Callable[[], pd.DataFrame]:
    """A loader for a bundled scikit-learn table; the target renamed to `label`, as class names when it has them."""

    def load() -> pd.DataFrame:
        """The table as scikit-learn ships it, in its original units and categories."""
        from sklearn import datasets

        bunch = getattr(datasets, loader)(as_frame=True, **kwargs)
        frame = _whole_numbers_as_integers(bunch.frame.rename(columns={"target": label}))
        if class_names:  # the source's categories are names (setosa, malignant), not 0/1/2
            frame[label] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
        return frame

    return load


def _statsmodels(module: str, csv_name: str, sep: str = ",") -> Callable[[], pd.DataFrame]:
    """A loader for the CSV file a statsmodels dataset ships, read as the package reads it but with its own types.

    `load_pandas()` turns most tables into floats; the shipped file has integers, gaps and
    strings, which is what a user's export looks like.
    """

    def load() -> pd.DataFrame:
        """The shipped file, with the quotes some headers carry stripped as statsmodels does."""
        from statsmodels.datasets import utils

        package = importlib.import_module(f"statsmodels.datasets.{module}")
        return utils.strip_column_names(utils.load_csv(package.__file__, csv_name, sep=sep))

    return load


@dataclasses.dataclass(frozen=True)
class Table:
    """One public table and how a user would point `tfxp init` at it."""

    name: str
    source: str
    load: Callable[[], pd.DataFrame]
    label: str
    exclude: tuple[str, ...] = ()  # leaks, given with --exclude
    note: str = ""  # what the table is, and its quirks kept on purpose


TABLES = (
    Table(
        "iris",
        "scikit-learn load_iris",
        _sklearn("load_iris", "species"),
        "species",
        note="150 flowers, 3 species; rows ordered by species",
    ),
    Table(
        "wine",
        "scikit-learn load_wine",
        _sklearn("load_wine", "cultivar"),
        "cultivar",
        note="178 wines, 3 cultivars (class_0..2); rows ordered by cultivar",
    ),
    Table(
        "breast_cancer",
        "scikit-learn load_breast_cancer",
        _sklearn("load_breast_cancer", "diagnosis"),
        "diagnosis",
        note="569 tumours, malignant/benign, 30 measurements; names with spaces",
    ),
    Table(
        "diabetes",
        "scikit-learn load_diabetes(scaled=False)",
        _sklearn("load_diabetes", "progression", class_names=False, scaled=False),
        "progression",
        note="442 patients in original units; sex coded 1/2; disease progression after a year",
    ),
    Table(
        "digits",
        "scikit-learn load_digits",
        _sklearn("load_digits", "digit", class_names=False),
        "digit",
        note="1,797 8x8 images as 64 pixel counts 0-16, some always 0; digit 0-9",
    ),
    Table(
        "randhie",
        "statsmodels randhie",
        _statsmodels("randhie", "randhie.csv"),
        "mdvis",
        note="RAND health insurance experiment, 20,190 person-years; outpatient visits (a count)",
    ),
    Table(
        "fair",
        "statsmodels fair",
        _statsmodels("fair", "fair.csv"),
        "affairs",
        note="6,366 women (Redbook 1974); time in affairs, 0 for 68%; rows with affairs first",
    ),
    Table(
        "anes96",
        "statsmodels anes96",
        _statsmodels("anes96", "anes96.csv", sep=r"\s"),
        "vote",
        note="944 voters, 1996 election; Clinton 0 / Dole 1; answers coded as integers",
    ),
    Table(
        "modechoice",
        "statsmodels modechoice",
        _statsmodels("modechoice", "modechoice.csv", sep=";"),
        "choice",
        note="210 travellers x 4 modes (air, train, bus, car), 1 chosen; integer traveller id",
    ),
    Table(
        "grunfeld",
        "statsmodels grunfeld",
        _statsmodels("grunfeld", "grunfeld.csv"),
        "invest",
        note="220 firm-years, 11 firms by name, 1935-1954; rows by firm, then year",
    ),
    Table(
        "macrodata",
        "statsmodels macrodata",
        _statsmodels("macrodata", "macrodata.csv"),
        "infl",
        exclude=("realint",),
        note="203 US quarters 1959-2009, in date order; realint = tbilrate - infl is a leak",
    ),
    Table(
        "co2",
        "statsmodels co2",
        _statsmodels("co2", "co2.csv"),
        "co2",
        note="2,284 weekly Mauna Loa readings from 1958, dates as yyyymmdd, 59 weeks without a reading",
    ),
    Table(
        "fertility",
        "statsmodels fertility",
        _statsmodels("fertility", "fertility.csv"),
        "2011",
        note="219 countries x one column per year 1960-2013, with gaps; 2012 and 2013 empty",
    ),
)


# ---------------------------------------------------------------- running the CLI as a user


def step(table: str, message: str, started: float) -> None:
    """One progress line: the time, the table, what happened, and seconds since the table started."""
    print(
        f"{datetime.datetime.now():%H:%M:%S} {table:<14} {message} ({time.perf_counter() - started:.1f} s)", flush=True
    )


def error_text(timed: measure.Timed) -> str:
    """The CLI's one-line error, with the indented lines that follow it (anomalies), or the output's last line."""
    for stream in (timed.stderr, timed.stdout):
        lines = stream.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Error:"):
                following = [line] + [n for n in lines[i + 1 : i + 6] if n.startswith(" ")]
                return "\n".join(following)[:800]
    tail = [n for n in (timed.stderr or timed.stdout).splitlines() if n.strip()]
    return tail[-1][:800] if tail else f"exit code {timed.code}"


def tfxp(project: Path, *args: str) -> measure.Timed:
    """`python -m pipeline ARGS` in the project folder; a time-out is a failure with its own message."""
    try:
        return measure.run_process([sys.executable, "-m", "pipeline", *args], cwd=project, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return measure.Timed(RUN_TIMEOUT, 124, "", f"Error: timed out after {RUN_TIMEOUT} s")


# ---------------------------------------------------------------- reading the run back


def load_settings(project: Path):
    """The run's resolved settings, read from the project file init wrote, as `tfxp run` resolves them."""
    from pipeline import config, settings

    return settings.resolve(config.load_project(project / config.CONFIG_FILE), project)


def read_split(examples_uri: str, split: str) -> pd.DataFrame:
    """Every tf.Example of one ExampleGen split as a row; an absent feature is a missing value."""
    import tensorflow as tf

    files = sorted(str(p) for p in Path(examples_uri, f"Split-{split}").iterdir())
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        row = {}
        for key, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = getattr(feature, kind).value if kind else []
            if values:
                row[key] = values[0].decode() if kind == "bytes_list" else values[0]
        rows.append(row)
    return pd.DataFrame(rows)


def training_curves(model_run_uri: str) -> dict[str, list[float]]:
    """Loss per epoch on train and eval data, from the Trainer's TensorBoard logs."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    curves: dict[str, list[float]] = {}
    for side in ("train", "validation"):
        losses = []
        for path in sorted(Path(model_run_uri, side).glob("events.out.tfevents.*")):
            for record in tf.data.TFRecordDataset(str(path)):
                for value in event_pb2.Event.FromString(record.numpy()).summary.value:
                    if value.tag == "epoch_loss":
                        loss = value.simple_value if value.HasField("simple_value") else tf.make_ndarray(value.tensor)
                        losses.append(float(loss))
        curves[side] = losses
    return curves


def declared(project: Path) -> dict:
    """What init decided, as the run resolves it: the problem, the features and their encodings, the gate."""
    from models import evaluation

    settings = load_settings(project)
    problem = settings.declarations.label.problem
    return {
        "problem": problem.value,
        "metric": evaluation.DEFAULT_GATE_METRIC[problem],  # auc, accuracy or rmse: the one compared
        "features": {f.name: f.encoding.value for f in settings.declarations.features},
        "excluded": list(settings.project.features.exclude),
        "column_types": settings.column_types,
        "classes": list(settings.declarations.label.classes),
        "gate": dataclasses.asdict(settings.gate),
        "epochs_allowed": settings.project.training.epochs,
        "batch_size": settings.project.training.batch_size,  # None: sized to the table
    }


def recorded(project: Path) -> dict:
    """What the run produced and scored, from ML Metadata and TFMA through the summary's own functions."""
    from models import evaluation
    from pipeline import lineage, nodes, report

    settings = load_settings(project)
    problem = settings.declarations.label.problem
    store = lineage.open_store(settings.paths.output_root)
    executions = lineage.latest_run_executions(store)
    found: dict = {
        "components": {n: dataclasses.asdict(c) for n, c in measure.components(settings.paths.output_root).items()},
    }
    if nodes.EXAMPLE_GEN in executions and executions[nodes.EXAMPLE_GEN].output("examples") is not None:
        found["examples_uri"] = executions[nodes.EXAMPLE_GEN].output("examples").uri
    if nodes.TRAINER in executions and (run_dir := executions[nodes.TRAINER].output("model_run")) is not None:
        found["training_curves"] = training_curves(run_dir.uri)
    if nodes.TUNER in executions and (best := executions[nodes.TUNER].output("best_hyperparameters")) is not None:
        chosen = Path(best.uri, "best_hyperparameters.txt")
        if chosen.is_file():
            found["hyperparameters"] = json.loads(chosen.read_text())["values"]
    if nodes.PUSHER in executions:  # the run reached the end: read the same report `tfxp run` prints
        summary = report.build_report(settings)
        overall = summary.slices.get("Overall", {})
        compared = evaluation.metric(problem, evaluation.DEFAULT_GATE_METRIC[problem])
        found["pipeline_metrics"] = {report.METRIC_NAMES.get(k, k): v for k, v in overall.items()}
        found["pipeline"] = overall.get(compared.key)
        found["gate_value"] = overall.get(evaluation.metric(problem, settings.gate.metric).key)
        found["blessed"], found["not_blessed_because"] = summary.blessed, summary.reasons
    return found


# ---------------------------------------------------------------- the baseline


def baseline(run: dict, label: str, train: pd.DataFrame, held_out: pd.DataFrame) -> dict:
    """HistGradientBoosting with default settings on the pipeline's train split, scored on its eval split.

    The pipeline's feature columns only (so its exclusions too); string columns ordinal-encoded
    and declared categorical; missing values left for the trees to route.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score
    from sklearn.preprocessing import OrdinalEncoder

    columns = list(run["features"])
    strings = [c for c in columns if run["column_types"][c] == "BYTES"]
    x_train, x_eval = train.reindex(columns=columns), held_out.reindex(columns=columns)
    categorical = []
    if strings:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
        x_train[strings] = encoder.fit_transform(
            x_train[strings].astype(object).where(x_train[strings].notna(), np.nan)
        )
        x_eval[strings] = encoder.transform(x_eval[strings].astype(object).where(x_eval[strings].notna(), np.nan))
        # HistGradientBoosting takes at most 255 categories per column; more stay ordinal codes.
        categorical = [c for c, cats in zip(strings, encoder.categories_, strict=True) if len(cats) <= 255]
    x_train, x_eval = x_train.astype(float), x_eval.astype(float)
    mask = [c in categorical for c in columns]
    result = {
        "categorical": categorical,
        "ordinal_only": [c for c in strings if c not in categorical],
        "train_rows": len(x_train),
        "eval_rows": len(x_eval),
    }
    if run["problem"] == "regression":
        model = HistGradientBoostingRegressor(categorical_features=mask, random_state=0)
        model.fit(x_train, train[label].astype(float))
        result["value"] = math.sqrt(mean_squared_error(held_out[label].astype(float), model.predict(x_eval)))
        return result
    index = {name: i for i, name in enumerate(run["classes"])}  # the pipeline's class order, from the schema
    y_train = train[label].map(lambda v: index[str(v)])
    y_eval = held_out[label].map(lambda v: index[str(v)])
    model = HistGradientBoostingClassifier(categorical_features=mask, random_state=0)
    model.fit(x_train, y_train)
    if run["problem"] == "binary":
        probability = (
            model.predict_proba(x_eval)[:, list(model.classes_).index(1)]
            if 1 in model.classes_
            else np.zeros(len(x_eval))
        )
        result["value"] = float(roc_auc_score(y_eval, probability)) if y_eval.nunique() == 2 else None
        result["accuracy"] = float(accuracy_score(y_eval, model.predict(x_eval)))
    else:
        result["value"] = float(accuracy_score(y_eval, model.predict(x_eval)))
    return result


def compare(metric: str, pipeline: float | None, reference: float | None) -> dict:
    """Ratio and gap of the pipeline to the baseline, and whether it is within the target."""
    if pipeline is None or reference is None or reference == 0:
        return {"ratio": None, "gap": None, "within_target": None}
    ratio = pipeline / reference
    within = ratio <= RMSE_TARGET if metric == "rmse" else ratio >= HIGHER_IS_BETTER_TARGET
    return {"ratio": ratio, "gap": pipeline - reference, "within_target": bool(within)}


# ---------------------------------------------------------------- what the bench saw


def _yyyymmdd(values: pd.Series) -> bool:
    """Whether integers all read as yyyymmdd dates (19580329)."""
    months, days = (values // 100) % 100, values % 100
    return bool(
        values.between(1800_01_01, 2100_12_31).all() and months.between(1, 12).all() and days.between(1, 31).all()
    )


def observations(frame: pd.DataFrame, table: Table, run: dict) -> dict:
    """Facts about the table and what init made of it, gathered to explain a miss; not judgements."""
    seen: dict = {}
    labels = frame[table.label]
    seen["missing_labels"] = int(labels.isna().sum())
    codes = labels.astype("category").cat.codes if labels.dtype == object else labels
    # How strongly file order follows the label: 1.0 when rows are sorted by it.
    order = pd.Series(np.arange(len(frame))).corr(pd.Series(np.asarray(codes, dtype=float)), method="spearman")
    seen["label_order_correlation"] = None if math.isnan(order) else abs(float(order))
    seen["near_empty_columns"] = {c: float(frame[c].isna().mean()) for c in frame if frame[c].isna().mean() >= 0.9}
    features = run.get("features", {})
    integer = [c for c in features if run["column_types"].get(c) == "INT"]
    seen["integer_categories"] = [c for c in integer if features[c] == "vocabulary"]
    seen["integer_sequences"] = [  # ids, row numbers or dates that only grow down the file, used as features
        c for c in integer if frame[c].notna().all() and frame[c].is_monotonic_increasing and frame[c].nunique() > 10
    ]
    seen["integer_dates"] = [c for c in integer if frame[c].notna().all() and _yyyymmdd(frame[c].astype("int64"))]
    seen["excluded_by_init"] = [c for c in run.get("excluded", []) if c not in table.exclude]
    validation = run.get("training_curves", {}).get("validation", [])
    if "train_rows" in run and validation:
        seen["epochs_trained"] = len(validation)  # each epoch is one pass over the training split
    if len(validation) >= 3:
        seen["eval_loss_first_last"] = [validation[0], validation[-1]]
        seen["eval_loss_lowest"] = [min(validation), validation.index(min(validation)) + 1, len(validation)]
        # Still learning when the last epochs improved the eval loss by more than 1%.
        seen["eval_loss_still_falling"] = bool(validation[-1] < 0.99 * min(validation[:-2]))
    return seen


# ---------------------------------------------------------------- one table


def measure_table(table: Table, work: Path) -> dict:
    """Writes the table, runs init and run in a fresh project folder, reads the run back and fits the baseline."""
    started = time.perf_counter()
    project = work / table.name
    shutil.rmtree(project, ignore_errors=True)
    data = project / "data"
    data.mkdir(parents=True)
    frame = table.load()
    frame.to_csv(data / f"{table.name}.csv", index=False)
    result: dict = {
        "name": table.name,
        "source": table.source,
        "label": table.label,
        "exclude": list(table.exclude),
        "note": table.note,
        "rows": len(frame),
        "columns": len(frame.columns),
        "measured_at": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
    }
    step(table.name, f"wrote {len(frame)} rows x {len(frame.columns)} columns", started)

    init = tfxp(
        project,
        "init",
        "--data",
        "data",
        "--label",
        table.label,
        *(arg for column in table.exclude for arg in ("--exclude", column)),
    )
    (project / "init.log").write_text(init.stdout + init.stderr)
    result.update(init_seconds=init.seconds, init_exit_code=init.code)
    step(table.name, f"tfxp init exited {init.code}", started)
    if init.code != 0:
        result.update(exit_code=None, error=error_text(init), seconds=init.seconds, stage="init")
        result["observed"] = observations(frame, table, result)
        return result

    run = tfxp(project, "run")
    (project / "run.log").write_text(run.stdout + run.stderr)
    result.update(run_seconds=run.seconds, exit_code=run.code, seconds=init.seconds + run.seconds)
    if run.code not in (0, 3):
        result.update(error=error_text(run), stage="run")
    step(
        table.name,
        f"tfxp run exited {run.code}" + (f": {result['error'].splitlines()[0]}" if "error" in result else ""),
        started,
    )
    try:
        result.update(declared(project))
        if load_settings(project).paths.metadata_path.is_file():  # absent when the checks refused the data
            result.update(recorded(project))
        if "examples_uri" in result:  # even a failed run's split shows what the baseline makes of the data
            train, held_out = read_split(result["examples_uri"], "train"), read_split(result["examples_uri"], "eval")
            result.update(train_rows=len(train), eval_rows=len(held_out))
            result["baseline"] = baseline(result, table.label, train, held_out)
            result.update(compare(result["metric"], result.get("pipeline"), result["baseline"]["value"]))
            step(
                table.name,
                f"{result['metric']}: pipeline {_number(result.get('pipeline'))}, "
                f"baseline {_number(result['baseline']['value'])}",
                started,
            )
    except Exception as error:  # noqa: BLE001  (one table's surprise is a result, not the end of the benchmark)
        result["read_error"] = f"{type(error).__name__}: {error}"
        step(table.name, f"could not read the run back or fit the baseline: {result['read_error']}", started)
    result["observed"] = observations(frame, table, result)
    return result


# ---------------------------------------------------------------- the report


def _number(value, digits: int = 4) -> str:
    """A figure for the table, or a dash."""
    return "–" if value is None else f"{value:.{digits}f}"


def saw(result: dict) -> list[str]:
    """Plain sentences of what the bench observed for one table, for QUALITY.md."""
    seen = result.get("observed", {})
    lines = []
    if result.get("error"):
        lines.append(f"{result.get('stage', 'run')} failed: `{result['error'].splitlines()[0]}`")
    if result.get("read_error"):
        lines.append(f"reading the run back failed: `{result['read_error']}`")
    if seen.get("missing_labels"):
        lines.append(f"{seen['missing_labels']} rows have no label")
    if seen.get("near_empty_columns"):
        lines.append(
            "near-empty columns: " + ", ".join(f"{c} ({m:.0%} missing)" for c, m in seen["near_empty_columns"].items())
        )
    if seen.get("excluded_by_init"):
        lines.append("init excluded " + ", ".join(seen["excluded_by_init"]))
    if seen.get("integer_sequences"):
        lines.append(
            "integer columns that only grow down the file, used as features: " + ", ".join(seen["integer_sequences"])
        )
    if seen.get("integer_dates"):
        lines.append(
            "integer columns that read as yyyymmdd dates, used as plain numbers: " + ", ".join(seen["integer_dates"])
        )
    if seen.get("integer_categories"):
        lines.append(
            f"{len(seen['integer_categories'])} integer column(s) encoded as categories: "
            + ", ".join(seen["integer_categories"][:8])
            + (" …" if len(seen["integer_categories"]) > 8 else "")
        )
    if seen.get("label_order_correlation", 0) >= 0.5:
        lines.append(f"rows are ordered by the label (rank correlation {seen['label_order_correlation']:.2f})")
    if "epochs_trained" in seen:
        from models import budget

        batch = result.get("batch_size") or budget.batch_size_for(result["train_rows"])
        lines.append(
            f"the final model trained {seen['epochs_trained']} of at most {result.get('epochs_allowed')} epochs "
            f"over the {result['train_rows']} training rows, batch {batch}"
        )
    if "eval_loss_first_last" in seen:
        first, last = seen["eval_loss_first_last"]
        lowest, epoch, epochs = seen["eval_loss_lowest"]
        lines.append(
            f"eval loss {first:.4g} → {last:.4g} over {epochs} epochs, lowest {lowest:.4g} after epoch {epoch}"
            + (", still falling at the end" if seen.get("eval_loss_still_falling") else "")
        )
    if result.get("hyperparameters"):
        lines.append("tuner chose " + ", ".join(f"{k}={v}" for k, v in result["hyperparameters"].items()))
    if result.get("not_blessed_because"):
        lines.append("not blessed: " + "; ".join(result["not_blessed_because"]))
    return lines


def kept_findings() -> str:
    """The hand-written findings in the current QUALITY.md, kept when the table is rewritten."""
    if REPORT_MD.is_file():
        text = REPORT_MD.read_text()
        if FINDINGS_START in text and FINDINGS_END in text:
            return text.split(FINDINGS_START, 1)[1].split(FINDINGS_END, 1)[0].strip("\n")
    return "_No findings written yet: after a run, write here why each table that missed the target missed it._"


def render(results: dict) -> None:
    """Writes QUALITY.md from the results, keeping its hand-written findings."""
    import jinja2

    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(BENCH),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    REPORT_MD.write_text(
        template.get_template(TEMPLATE).render(
            r=results,
            saw=saw,
            number=_number,
            findings=kept_findings(),
            start=FINDINGS_START,
            end=FINDINGS_END,
            higher_target=HIGHER_IS_BETTER_TARGET,
            rmse_target=RMSE_TARGET,
        )
    )


def _summary_line(result: dict) -> str:
    """The table's outcome in a few words, for the last progress line."""
    if result.get("error"):
        return f"failed ({result.get('stage')}, exit {result.get('exit_code', result.get('init_exit_code'))})"
    verdict = {True: "within target", False: "MISSES target", None: "not compared"}[result.get("within_target")]
    return (
        f"{result.get('metric')} pipeline {_number(result.get('pipeline'))} / baseline "
        f"{_number(result.get('baseline', {}).get('value'))}: {verdict}"
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="NAME",
    type=click.Choice([t.name for t in TABLES]),
    help="Run only this table (repeatable); its row in quality.json is replaced, the others kept.",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_WORK,
    show_default="bench/work/quality",
    help="Scratch folder for the tables' project folders (each cleared before its run).",
)
@click.option("--render", "render_only", is_flag=True, help="Only rewrite QUALITY.md from quality.json.")
def main(only: tuple[str, ...], work: Path, render_only: bool) -> None:
    """Runs every table (or --only ones) and writes bench/quality.json and bench/QUALITY.md."""
    if render_only:
        render(json.loads(RESULTS_JSON.read_text()))
        return
    # The CLI runs in each table's own folder: put this checkout first on the import path, so its
    # pipeline/ and models/ are measured, not whichever an editable install points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(measure.PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    os.environ.update(measure.QUIET)
    warnings.simplefilter("ignore")  # library deprecation chatter would bury the progress lines
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads in this process)

    started = time.perf_counter()
    work = work.absolute()
    tables = [t for t in TABLES if not only or t.name in only]
    previous = json.loads(RESULTS_JSON.read_text()) if only and RESULTS_JSON.is_file() else {"tables": []}
    measured = []
    for table in tables:
        try:
            result = measure_table(table, work)
        except Exception as error:  # noqa: BLE001  (e.g. a loader that breaks: recorded, and on to the next)
            result = {
                "name": table.name,
                "source": table.source,
                "label": table.label,
                "note": table.note,
                "stage": "bench",
                "error": f"{type(error).__name__}: {error}",
            }
        measured.append(result)
        print(f"{datetime.datetime.now():%H:%M:%S} {table.name:<14} {_summary_line(result)}", flush=True)
    by_name = {r["name"]: r for r in previous["tables"]} | {r["name"]: r for r in measured}
    order = [t.name for t in TABLES]
    results = {
        "machine": measure.machine(),
        "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
        "targets": {"auc_accuracy_ratio_at_least": HIGHER_IS_BETTER_TARGET, "rmse_ratio_at_most": RMSE_TARGET},
        "minutes": (time.perf_counter() - started) / 60 if not only else previous.get("minutes"),
        "tables": sorted(by_name.values(), key=lambda r: order.index(r["name"]) if r["name"] in order else len(order)),
    }
    if only:
        results["last_partial_run"] = {"tables": list(only), "minutes": (time.perf_counter() - started) / 60}
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    render(results)
    print(f"Wrote {RESULTS_JSON} and {REPORT_MD} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
