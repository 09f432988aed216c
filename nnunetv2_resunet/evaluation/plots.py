"""Plots for the report: per-class bar charts and per-case box plots (one group per class, one colour per model),
and the paired comparison's forest plot.

Takes plain numbers (no report objects) and writes PNG files with matplotlib's Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


def _figure_width(n_groups: int, n_series: int) -> float:
    return min(max(6.0, 0.35 * n_groups * (n_series + 1) + 2.0), 30.0)


def _colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _finish(fig, ax, groups: Sequence[str], ylabel: str, title: str, path: str) -> None:
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_class_bars(
    groups: Sequence[str],
    means: Mapping[str, Sequence[float]],
    stds: Mapping[str, Sequence[float]],
    ylabel: str,
    title: str,
    path: str,
    upper_bound: float | None = None,
) -> None:
    """Grouped bar chart: one group per class (e.g. the classes and their mean), one bar per model.

    Args:
        groups: x-axis groups (class names).
        means: model label -> one mean per group (NaN draws no bar).
        stds: model label -> one standard deviation per group, drawn as error bars (NaN draws none). The bars are
            clipped to the metric's range: at 0 below and at ``upper_bound`` above.
        ylabel: y-axis label, with units.
        title: figure title.
        path: PNG file to write.
        upper_bound: largest possible value (100 for Dice in %), or ``None``.
    """
    fig, ax = plt.subplots(figsize=(_figure_width(len(groups), len(means)), 4.5))
    width = 0.8 / max(len(means), 1)
    x = np.arange(len(groups))
    for i, (colour, (label, values)) in enumerate(zip(_colours(len(means)), means.items(), strict=True)):
        spread = [0.0 if math.isnan(s) or math.isnan(m) else s for m, s in zip(values, stds[label], strict=True)]
        below = [min(s, m) if s else 0.0 for m, s in zip(values, spread, strict=True)]
        above = [
            min(s, upper_bound - m) if s and upper_bound is not None else s for m, s in zip(values, spread, strict=True)
        ]
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, yerr=[below, above], capsize=2, label=label, color=colour)
    _finish(fig, ax, groups, ylabel, title, path)


def plot_box_over_cases(
    groups: Sequence[str],
    values: Mapping[str, Sequence[Sequence[float]]],
    ylabel: str,
    title: str,
    path: str,
) -> None:
    """Box plots of per-case values: one group per class, one box per model.

    Args:
        groups: x-axis groups (class names).
        values: model label -> for each group, the per-case values (NaNs are dropped).
        ylabel: y-axis label, with units.
        title: figure title.
        path: PNG file to write.
    """
    fig, ax = plt.subplots(figsize=(_figure_width(len(groups), len(values)), 4.5))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(groups))
    for i, (colour, (label, per_group)) in enumerate(zip(_colours(len(values)), values.items(), strict=True)):
        data = [[v for v in group if not math.isnan(v)] for group in per_group]
        positions = x - 0.4 + width * (i + 0.5)
        box = ax.boxplot(
            data,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            showfliers=True,
            flierprops={"markersize": 3},
            medianprops={"color": "black"},
        )
        for patch in box["boxes"]:
            patch.set_facecolor(colour)
        ax.plot([], [], color=colour, linewidth=8, label=label)  # legend handle
    ax.set_xlim(-0.6, len(groups) - 0.4)
    _finish(fig, ax, groups, ylabel, title, path)


def plot_forest(panels: Mapping[str, Sequence[tuple[str, float, float, float, bool]]], title: str, path: str) -> None:
    """A forest plot: one panel per metric, one row per comparison, a point at the mean difference and a line over
    its confidence interval; a vertical line at 0 (no difference).

    Args:
        panels: panel title -> rows ``(label, mean, low, high, filled)``; NaN bounds draw no line, a filled marker
            says the difference is distinguishable.
        title: figure title.
        path: PNG file to write.
    """
    rows = max((len(entries) for entries in panels.values()), default=1)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), min(max(2.5, 0.28 * rows + 1.5), 60.0)),
                             squeeze=False)
    for ax, (panel, entries) in zip(axes[0], panels.items()):
        y = np.arange(len(entries))[::-1]
        for position, (_, mean, low, high, filled) in zip(y, entries):
            if not math.isnan(low):
                ax.plot([low, high], [position, position], color="tab:blue", linewidth=1.5)
            ax.plot([mean], [position], marker="o", color="tab:blue", markerfacecolor="tab:blue" if filled else "white")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([entry[0] for entry in entries], fontsize="small")
        ax.set_title(panel, fontsize="medium")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
