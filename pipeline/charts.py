"""Small charts for the run report, drawn with matplotlib as SVG text to inline in the page.

Text stays text (`svg.fonttype = none`): the browser draws it with its own fonts, so nothing is embedded or fetched.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("svg")  # no display, no GUI toolkit: the report is written by a command line or a scheduler

from matplotlib import pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib import ticker  # noqa: E402

# The browser draws the text: name one font for measuring, not matplotlib's dozen fallbacks on every label.
matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans"]

COLORS = ("#4c72b0", "#dd8452", "#8c8c8c")  # train, eval, the previous span: one colour per dataset everywhere
SMALL = (3.4, 1.1)  # inches: a feature's chart beside its row in the data table
WIDE = (6.4, 2.8)

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)  # the XML declaration and DOCTYPE, which HTML does not take
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)  # creator and date: noise in a report
_IDS = re.compile(r'( id="|url\(#|href="#)')  # matplotlib numbers ids per figure: figure_1 in every chart
_FIXED_SIZE = re.compile(r'(<svg[^>]*?) width="([\d.]+)pt" height="[\d.]+pt"')
PX_PER_PT = 96 / 72


def _svg(figure, name: str) -> str:
    """The figure as an inline <svg> element that scales with the page; its ids are prefixed with `name` so two
    charts in one page never share one."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = _METADATA.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1))
    text = _IDS.sub(lambda m: f"{m.group(1)}{name}-", text)
    # Shrinks with a narrow window, never grows past the size it was drawn at.
    return _FIXED_SIZE.sub(
        lambda m: f'{m.group(1)} class="chart" style="max-width: {float(m.group(2)) * PX_PER_PT:.0f}px"', text, count=1
    )


def _figure(size: tuple[float, float]):
    figure, axes = plt.subplots(figsize=size)
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=7)
    return figure, axes


def _legend_beside(axes) -> None:
    """The legend right of the axes, where no bar or bucket can hide it."""
    axes.legend(fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))


def histogram(name: str, datasets: dict[str, list[tuple[float, float, float]]]) -> str:
    """Overlaid histograms, one per dataset: each a list of (low, high, share of the dataset's values) buckets."""
    figure, axes = _figure(SMALL)
    for i, (color, (label, buckets)) in enumerate(zip(COLORS, datasets.items(), strict=False)):
        edges = [low for low, _, _ in buckets] + [buckets[-1][1]] if buckets else []
        shares = [share for _, _, share in buckets]
        if not shares:
            continue
        if i < 2:  # train and eval filled; the previous span as a dashed outline, so an unchanged one still shows
            axes.stairs(shares, edges, color=color, fill=True, alpha=0.35)
        axes.stairs(shares, edges, label=label, color=color, linewidth=1, linestyle="-" if i < 2 else "--")
    axes.xaxis.set_major_locator(ticker.MaxNLocator(nbins=5, integer=True))
    axes.set_yticks([])
    _legend_beside(axes)
    return _svg(figure, name)


def bars(name: str, datasets: dict[str, dict[str, float]], most: int = 8) -> str:
    """Grouped horizontal bars of each value's share in each dataset, for the `most` commonest values."""
    order = sorted(
        {v for shares in datasets.values() for v in shares},
        key=lambda v: -max(shares.get(v, 0.0) for shares in datasets.values()),
    )[:most]
    figure, axes = _figure((SMALL[0], max(SMALL[1], 0.28 * len(order) * max(len(datasets), 1) + 0.4)))
    height = 0.8 / max(len(datasets), 1)
    for i, (color, (label, shares)) in enumerate(zip(COLORS, datasets.items(), strict=False)):
        positions = [row + i * height for row in range(len(order))]
        axes.barh(positions, [shares.get(v, 0.0) for v in order], height=height, color=color, label=label)
    axes.set_yticks([row + height * (len(datasets) - 1) / 2 for row in range(len(order))], order)
    axes.invert_yaxis()
    axes.xaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=0))
    _legend_beside(axes)
    return _svg(figure, name)


def curves(name: str, series: dict[str, list[tuple[int, float]]], ylabel: str) -> str:
    """Lines of (step, value) points, one per series: training and evaluation loss by epoch, say."""
    figure, axes = _figure(WIDE)
    for color, (label, points) in zip(COLORS, series.items(), strict=False):
        axes.plot([s for s, _ in points], [v for _, v in points], marker=".", color=color, label=label)
    axes.set_xlabel("epoch", fontsize=8)
    axes.set_ylabel(ylabel, fontsize=8)
    axes.legend(fontsize=7, frameon=False)
    return _svg(figure, name)


def slice_bars(
    name: str, values: dict[str, float], metric: str, threshold: float | None, baseline: float | None
) -> str:
    """One bar per slice for the gate metric, with the threshold and the baseline model's overall value as lines."""
    labels = list(values)
    figure, axes = _figure((WIDE[0], 0.3 * len(labels) + 0.8))
    colors = [COLORS[1] if label == "Overall" else COLORS[0] for label in labels]
    axes.barh(labels, list(values.values()), color=colors)
    for label, value in values.items():
        axes.annotate(
            f"{value:.3f}", (value, label), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
        )
    if threshold is not None:
        axes.axvline(threshold, color="#c44e52", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    if baseline is not None:
        axes.axvline(baseline, color="#55a868", linestyle=":", linewidth=1.5, label=f"baseline model {baseline:.3f}")
    axes.invert_yaxis()
    axes.set_xlabel(metric, fontsize=8)
    if threshold is not None or baseline is not None:  # beside the axes: a bar near 1.0 would hide it inside
        axes.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.08, 0.5))
    return _svg(figure, name)


def matrix(name: str, counts: Sequence[Sequence[float]], labels: Sequence[str]) -> str:
    """A confusion matrix: actual classes down, predicted across, each cell's count written in it."""
    figure, axes = plt.subplots(figsize=(0.6 * len(labels) + 1.6, 0.6 * len(labels) + 1.2))
    axes.pcolormesh(counts, cmap="Blues", edgecolors="white")  # vector cells; imshow would embed a PNG
    axes.invert_yaxis()
    top = max((c for row in counts for c in row), default=0)
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            color = "white" if count > top / 2 else "black"
            axes.text(j + 0.5, i + 0.5, f"{count:.0f}", ha="center", va="center", fontsize=8, color=color)
    centres = [k + 0.5 for k in range(len(labels))]
    axes.set_xticks(centres, labels, fontsize=7, rotation=30, ha="right")
    axes.set_yticks(centres, labels, fontsize=7)
    axes.set_xlabel("predicted", fontsize=8)
    axes.set_ylabel("actual", fontsize=8)
    return _svg(figure, name)


def predicted_against_actual(name: str, predicted: Sequence[float], actual: Sequence[float], label: str) -> str:
    """One dot per eval example, and the diagonal a perfect model would sit on."""
    figure, axes = _figure((3.6, 3.4))
    axes.scatter(predicted, actual, s=6, color=COLORS[0], alpha=0.5, linewidths=0)
    low, high = min(*predicted, *actual), max(*predicted, *actual)
    axes.plot([low, high], [low, high], color=COLORS[2], linestyle="--", linewidth=1)
    axes.set_xlabel(f"predicted {label}", fontsize=8)
    axes.set_ylabel(f"actual {label}", fontsize=8)
    return _svg(figure, name)
