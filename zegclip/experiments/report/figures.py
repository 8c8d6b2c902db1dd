"""Figures for the report notebooks (seaborn/matplotlib, imported when drawn) and the sample rows of Figure 4."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .paper import paper_numbers
from .results import _entries, _match, _resolve, load_results, not_run_note
from .tables import Report


# --------------------------------------------------------------------------------------- qualitative grid
def sample_grid(profile: str = "mini", results_dir: str | Path = "results", table: str = "figure4",
                baseline: str = "DPT", ours: str = "DPT+NEL+RD", registry: Any = None,
                entries: Sequence | None = None, quick: bool = False) -> tuple[list[dict], dict, list[str], str | None]:
    """Rows of Figure 4 from the runs' saved samples: (rows, classes, problems, note); ``quick``: of the ``-quick``
    runs (see :func:`zegclip.experiments.report.table_report`).

    Each row: ``{"image", "label", "baseline", "ours"}`` absolute PNG paths (the label is the ground truth).
    ``classes``: ``{"names": [...], "seen": [...], "unseen": [...]}`` of the ZegCLIP run (empty if unknown).
    """
    if entries is None:
        entries, why = _entries(profile, table, registry, quick)
        if why:
            return [], {}, [], why
    resolved = _resolve(results_dir)
    results, problems = load_results(resolved, profile, "runs")
    found, stale = _match(entries, results)
    problems = problems + stale
    by_variant = {e.params.get("variant"): found.get(e.id) for e in entries}
    base, zeg = by_variant.get(baseline), by_variant.get(ours)
    if base is None or zeg is None:
        missing = [v for v, r in ((baseline, base), (ours, zeg)) if r is None]
        note = not_run_note(profile, table, quick) if not found else (
            f"profile `{profile}`: no result yet for variant(s) {', '.join(missing)} of {table} — "
            f"python -m zegclip reproduce --profile {profile} --only {table}")
        return [], {}, problems, note
    root = resolved / profile
    rows = []
    base_samples, zeg_samples = base.get("samples") or [], zeg.get("samples") or []
    for k, (b, z) in enumerate(zip(base_samples, zeg_samples)):
        paths = {"image": root / z["image"], "label": root / z["label"], "baseline": root / b["pred"],
                 "ours": root / z["pred"]}
        absent = [str(p) for p in paths.values() if not p.is_file()]
        if absent:
            problems.append(f"sample {k}: missing PNG {', '.join(absent)}; skipped")
            continue
        rows.append({k2: str(v) for k2, v in paths.items()})
    ids = {split: [c.get("id", i) for i, c in enumerate(zeg["per_class"]) if c["split"] == split]
           for split in ("seen", "unseen")}
    classes = {"names": list(zeg.get("class_names") or [c["class"] for c in zeg["per_class"]]),
               "seen": list(zeg.get("seen") or ids["seen"]), "unseen": list(zeg.get("unseen") or ids["unseen"])}
    note = None if rows else f"profile `{profile}`: the {table} runs saved no sample images (registry `samples`)"
    return rows, classes, problems, note


PICK_RULE = ("the first {k} saved evaluation images, in evaluation order, whose ground truth contains an unseen "
             "class (then, if fewer, the first of the others): fixed before any picture was looked at, never by "
             "how well a model does on them")


def pick_samples(rows: Sequence[dict], classes: dict, k: int = 4) -> list[dict]:
    """The rows Figure 4 shows, by :data:`PICK_RULE`: the first ``k`` of ``rows`` (evaluation order) whose
    ground-truth PNG contains an unseen class of ``classes``, then the first others to fill ``k``."""
    import numpy as np
    from PIL import Image

    unseen = list(classes.get("unseen", []))
    with_unseen, others = [], []
    for row in rows:
        ids = np.asarray(Image.open(row["label"]))
        (with_unseen if unseen and np.isin(ids, unseen).any() else others).append(row)
    return (with_unseen + others)[:k]


# ------------------------------------------------------------------------------------------------ figures
def _style():
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def _bars(ax, labels, mine, err, paper, mine_label: str, paper_label: str, colours) -> None:
    """Reproduced bars (error bars only where a sample std exists) beside hatched paper bars; "not run" marks."""
    import numpy as np

    x = np.arange(len(labels))
    mine, err, paper = (np.asarray(v, dtype=float) for v in (mine, err, paper))
    ax.bar(x - 0.2, np.nan_to_num(mine), 0.4, color=colours[0], label=mine_label)
    has = np.isfinite(mine) & np.isfinite(err)
    if has.any():
        ax.errorbar(x[has] - 0.2, mine[has], yerr=err[has], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.bar(x + 0.2, paper, 0.4, color=colours[1], alpha=0.7, hatch="//", label=paper_label)
    for xi, v in zip(x, mine):
        if not np.isfinite(v):
            ax.text(xi - 0.2, 1, "not run", rotation=90, ha="center", va="bottom", fontsize=8)
    rotate = len(labels) > 4
    ax.set_xticks(x, labels, rotation=35 if rotate else 0, ha="right" if rotate else "center")


def plot_ablation(rep: Report, metric: str = "hIoU"):
    """Figure 1: the five steps of the paper's Figure 1 (left) and all 12 variants (right), reproduced mean with
    sample-std error bars beside the paper's Table 5 (VOC) bars. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    sns = _style()
    steps = paper_numbers("figure1")["steps"]
    colours = sns.color_palette("deep", 2)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [5, 12]})
    data = rep.numeric.set_index("variant")
    panels = [([s["variant"] for s in steps], [s["label"] for s in steps], "Figure 1 steps"),
              (list(data.index), list(data.index), "all Table 5 variants")]
    for ax, (variants, labels, title) in zip(axes, panels):
        _bars(ax, labels, [data[metric].get(v, np.nan) for v in variants],
              [data[f"{metric} std"].get(v, np.nan) for v in variants],
              [data[f"paper {metric}"].get(v, np.nan) for v in variants],
              f"reproduced ({rep.profile}, mean ± std)", "paper (Table 5, VOC)", colours)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(title)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_vs_paper(rep: Report, metric: str = "hIoU", title: str | None = None):
    """Grouped bars per table row: reproduced mean (sample-std error bars) beside the paper's number. Returns the
    matplotlib Figure."""
    import matplotlib.pyplot as plt

    sns = _style()
    colours = sns.color_palette("deep", 2)
    data = rep.numeric
    labels = [" / ".join(str(r[b]) for b in rep.by) for _, r in data.iterrows()]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.65 * len(labels) + 2), 3.8))
    _bars(ax, labels, data[metric], data[f"{metric} std"], data[f"paper {metric}"],
          f"reproduced ({rep.profile}, mean ± std)", "paper", colours)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title or f"{rep.table}: {metric}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_curves(curves: pd.DataFrame, hue: str = "variant", col: str = "dataset"):
    """The training loss of :func:`zegclip.experiments.report.training_curves` against the iteration: one panel per
    ``col`` value, one line per ``hue`` value (the mean over seeds; no band: a dozen overlapping bands hide the
    lines, and :func:`zegclip.experiments.report.loss_summary` gives the spread), log-scaled loss axis (the losses of
    different rows differ in scale). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    sns = _style()
    panels = list(dict.fromkeys(curves[col])) if col in curves and len(curves) else [None]
    hues = list(dict.fromkeys(curves[hue])) if len(curves) else []
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    palette = dict(zip(hues, sns.color_palette("tab20", max(1, len(hues)))))
    for ax, panel in zip(axes[0], panels):
        sub = curves if panel is None else curves[curves[col] == panel]
        if len(sub):
            sns.lineplot(data=sub, x="iter", y="loss", hue=hue, hue_order=[h for h in hues if h in set(sub[hue])],
                         palette=palette, errorbar=None, ax=ax, lw=1.2)
            ax.set_yscale("log")
            ax.legend(fontsize=7, ncol=2, title=hue)
        ax.set_title(f"{panel}: training loss" if panel is not None else "training loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (log scale)")
    fig.tight_layout()
    return fig


def plot_per_class(frame: pd.DataFrame, settings: Sequence[str] = ("inductive", "transductive")):
    """Figure 5: per-class IoU of the unseen classes, one panel per dataset, bars per setting. Returns the Figure."""
    import matplotlib.pyplot as plt

    sns = _style()
    frame = frame[frame["setting"].isin(settings)]
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.5 * max(1, len(datasets)), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sub = frame[frame["dataset"] == ds]
        order = [s for s in settings if s in set(sub["setting"])]
        sns.barplot(data=sub, x="class", y="IoU", hue="setting", hue_order=order, ax=ax, errorbar=None)
        ax.set_title(f"{ds}: unseen classes")
        ax.set_ylabel("IoU (%)")
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def plot_samples(rows: Sequence[dict], classes: dict, max_rows: int = 4, baseline: str = "DPT",
                 ours: str = "DPT+NEL+RD"):
    """Figure 4: image, baseline, ZegCLIP, ground truth per row, unseen classes outlined in red and listed in red
    in the legend (class colours from the PNG palette). The pixels that the ground truth ignores (255: the
    background of the VOC-like worlds) are white in every label panel, the predictions' included, as in the
    paper's figure: a prediction there is never scored. Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from PIL import Image

    _style()
    rows = list(rows)[:max_rows]
    titles = ["(a) image", f"(b) baseline ({baseline})", f"(c) ZegCLIP ({ours})", "(d) ground truth"]
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows) + 0.8), squeeze=False)
    names, unseen = classes.get("names", []), set(classes.get("unseen", []))
    present: dict[int, tuple] = {}
    for i, row in enumerate(rows):
        ignored = np.asarray(Image.open(row["label"])) == 255  # what the ground truth does not label
        for j, key in enumerate(("image", "baseline", "ours", "label")):
            img = Image.open(row[key])
            ax = axes[i][j]
            if img.mode == "P":
                ids = np.asarray(img)
                blank = (ids == 255) | (ignored if ignored.shape == ids.shape else False)
                pal = np.asarray(img.getpalette() or [0] * 768, dtype=float).reshape(-1, 3) / 255.0
                for c in np.unique(ids[~blank]):
                    if c < len(pal):
                        present.setdefault(int(c), tuple(pal[c]))
                rgb = np.asarray(img.convert("RGB")).copy()
                rgb[blank] = 255  # ignored: white, whatever the palette or the prediction says
                ax.imshow(rgb, interpolation="nearest")
                mask = np.isin(ids, list(unseen)) & ~blank
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors="red", linewidths=1.0)
            else:
                ax.imshow(img.convert("RGB"), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
    handles = [Patch(facecolor=col, edgecolor="black",
                     label=(names[c] if c < len(names) else str(c)) + (" (unseen)" if c in unseen else ""))
               for c, col in sorted(present.items())]
    if handles:
        legend = fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
        for text, (c, _) in zip(legend.get_texts(), sorted(present.items())):
            if c in unseen:
                text.set_color("red")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(handles) // 6), 1, 1))
    return fig
