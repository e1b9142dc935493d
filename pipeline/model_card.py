"""The model card that travels with every pushed version, in `assets.extra/model_card.md` and `.html`.

The `ModelCardGenerator` component gathers the card's facts from the run's own artifacts (ExampleGen's
span and file fingerprint, TFDV's row counts, the schema, the Tuner's hyperparameters, TFMA's metrics
per slice and the blessing) into `model_card.json`. Whoever pushes (the Pusher, or `tfxp approve`)
adds the version and the approval record and renders it with Jinja2 and Markdown; nothing is typed
twice. Only the intended use, users and limitations come from a person, in `[card]`.
(model-card-toolkit 2.0 needs TFMA < 0.42, absl-py < 1.1 and jsonschema < 4, which the pinned stack
does not have, so the card is written here from the same fields.)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path

import jinja2
import markdown

CARD_JSON = "model_card.json"
CARD_FILES = ("assets.extra/model_card.md", "assets.extra/model_card.html")  # inside each version folder

_TEMPLATE = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True).from_string(
    """# Model card: {{ name }}, version {{ version }}

{{ intended_use }}

| Model | {{ name }}, version {{ version }} |
|---|---|
| Problem | {{ problem }} on `{{ label }}`{% if classes %} (classes: {{ classes | join(", ") }}){% endif %} |
| Intended users | {{ users }} |
| Known limitations | {{ limitations }} |
| Code | {{ code_version }} |
| Pushed | {{ pushed_at }} |

## Approval

{{ approval }}

## Data

- Span {{ span }}: {{ files }} (ExampleGen's fingerprint: `{{ fingerprint }}`)
- Rows per split: {% for split, rows in row_counts.items() %}{{ split }} {{ rows }}{% if not loop.last %}, {% endif %}{% endfor %}

- Schema digest (SHA-256): `{{ schema_digest }}`

## Features

| feature | encoding |
|---|---|
{% for feature in features %}| {{ feature.name }} | {{ feature.encoding }}{% if feature.optional %} (may be missing){% endif %} |
{% endfor %}

## Training

- Hyperparameters: {% for key, value in hyperparameters.items() %}{{ key }} = {{ value }}{% if not loop.last %}, {% endif %}{% else %}defaults (no Tuner){% endfor %}

- Budget (0: sized to the table): {% for key, value in budget.items() %}{{ key }} = {{ value }}{% if not loop.last %}, {% endif %}{% endfor %}


## Evaluation (eval split)

The gate: {{ gate.metric }} {{ "≥" if gate.higher_is_better else "≤" }} {{ gate.threshold }}, and no more than
{{ gate.max_regression }} worse than the last blessed model. {{ verdict }}

{% if changes %}
Against the baseline model: {% for key, value in changes.items() %}{{ key }} {{ "%+.4f" | format(value) }}{% if not loop.last %}, {% endif %}{% endfor %}.

{% endif %}
| slice |{% for name in metric_names %} {{ name }} |{% endfor %}

|---|{% for name in metric_names %}---:|{% endfor %}

{% for slice, values in slices.items() %}
| {{ slice }}{% if slice == worst_slice %} **(worst)**{% endif %} |{% for name in metric_names %} {{ values[name] if name == "examples" else "%.4f" | format(values[name]) if name in values else "" }} |{% endfor %}

{% endfor %}

Fairness: {% if gate.max_slice_gap is none %}no gate on slices (`max_slice_gap` is not set){% else %}no slice of
{{ gate.min_slice_size }} or more examples may be more than {{ gate.max_slice_gap }} worse than overall in {{ gate.metric }}{% endif %}.
{% if worst_slice %}The worst slice of {{ gate.min_slice_size }} or more examples is **{{ worst_slice }}**.{% else %}No slice of
{{ gate.min_slice_size }} or more examples is behind overall in {{ gate.metric }}.{% endif %}
"""
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
td:not(:first-child) {{ font-variant-numeric: tabular-nums; }}
code {{ background: #f4f4f4; padding: 0 .2rem; }}
</style></head><body>
{body}
</body></html>
"""


def file_digest(path: str) -> str:
    """SHA-256 of one file."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def render(facts: dict, version: int, approval: str) -> dict[str, str]:
    """The card's files, by their path inside a version folder."""
    text = _TEMPLATE.render(
        **facts, version=version, approval=approval, pushed_at=f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}"
    )
    page = _PAGE.format(
        title=f"Model card: {facts['name']} {version}", body=markdown.markdown(text, extensions=["tables"])
    )
    return {CARD_FILES[0]: text, CARD_FILES[1]: page}


def read_facts(card_uri: str) -> dict:
    """The facts a ModelCardGenerator execution gathered."""
    with open(os.path.join(card_uri, CARD_JSON), encoding="utf-8") as handle:
        return json.load(handle)


def automatic_approval() -> str:
    """The approval record of a model the pipeline pushed by itself."""
    return 'Automatic (`[delivery] approval = "auto"`): blessed by the Evaluator\'s gate and the servability check.'


def personal_approval(user: str, at: datetime.datetime, note: str) -> str:
    """The approval record of a model a person approved with `tfxp approve`."""
    return f"Approved by **{user}** at {at:%Y-%m-%d %H:%M:%S}: {note or '(no note)'}"


def gather(
    model_name: str,
    declarations: dict,
    gate: dict,
    card_text: dict,
    budget: dict,
    code_version: str,
    files: list[str],
    evaluation_uri: str,
    blessed: bool,
    examples,
    statistics,
    schema_uri: str,
    hyperparameters_uri: str | None,
    reported: dict[str, str],
) -> dict:
    """Everything the card says except the version and the approval, from the run's artifacts."""
    from models import evaluation
    from pipeline import guards, report

    by_key, changes_by_key = report.read_metrics(evaluation_uri, reported)
    slices = {
        name: {reported[k]: int(v) if k == evaluation.EXAMPLE_COUNT else v for k, v in values.items()}
        for name, values in by_key.items()
    }
    changes = {reported[k]: v for k, v in changes_by_key.items()}
    ordered = dict(sorted(slices.items(), key=lambda item: (item[0] != "Overall", item[0])))
    metric = gate["metric"]
    worst = evaluation.worst_slice(ordered, metric, "examples", gate["higher_is_better"], gate["min_slice_size"]) or ""
    hyperparameters = best_hyperparameters(hyperparameters_uri) if hyperparameters_uri else {}
    placeholder = "(not written yet: set it under [card] in tfxp.toml)"
    label = declarations["label"]
    return {
        "name": model_name,
        "problem": label["problem"],
        "label": label["name"],
        "classes": list(label["classes"]),
        "intended_use": card_text.get("intended_use") or f"Intended use {placeholder}",
        "users": card_text.get("users") or placeholder,
        "limitations": card_text.get("limitations") or placeholder,
        "code_version": code_version,
        "span": examples.get_int_custom_property("span"),
        "files": ", ".join(files),
        "fingerprint": examples.get_string_custom_property("input_fingerprint"),
        "row_counts": guards.row_counts(statistics),
        "schema_digest": file_digest(os.path.join(schema_uri, "schema.pbtxt")),
        "features": declarations["features"],
        "hyperparameters": hyperparameters,
        "budget": budget,
        "gate": gate,
        "verdict": "Blessed." if blessed else "Not blessed.",
        "changes": changes,
        "metric_names": list(reported.values()),  # "examples" first
        "slices": ordered,
        "worst_slice": worst,
    }


BEST_HYPERPARAMETERS = "best_hyperparameters.txt"  # what TFX's Tuner writes in its HyperParameters artifact


def best_hyperparameters(uri: str) -> dict:
    """The Tuner's best values by name, from the folder of its HyperParameters artifact."""
    with open(os.path.join(uri, BEST_HYPERPARAMETERS), encoding="utf-8") as handle:
        return json.load(handle).get("values", {})


def write_facts(facts: dict, card_uri: str) -> None:
    Path(card_uri).mkdir(parents=True, exist_ok=True)
    Path(card_uri, CARD_JSON).write_text(json.dumps(facts, indent=1, default=str), encoding="utf-8")
