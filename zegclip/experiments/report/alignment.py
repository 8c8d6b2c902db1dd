"""The alignment study: ZegCLIP's transfer to unseen classes against how well the mini-CLIP's patch tokens already
match the class captions (a study that no real CLIP allows, since its alignment cannot be dialled).

The registry's ``alignment`` runs train inductive ZegCLIP (``DPT+NEL+RD``) and Baseline-Fix (``Fix``) with mini-CLIPs
that differ only in the alignment dial (:func:`zegclip.mini.experiments.pretrain_config`), 3 seeds each, plus the
positive control (fully supervised ZegCLIP) at each value. Each mini-CLIP's own instruments come from the dial log
(``<results>/mini/calibration/pretrain/dials.json``): its training-free mIoU on mini-voc (the x axis), linear probe
and zero-shot accuracy::

    rep, frame = alignment_frame("mini", "results")
    fig = plot_alignment(frame)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .results import _resolve
from .tables import Report, table_report

STUDY_VARIANTS = {"DPT+NEL+RD": "ZegCLIP (DPT+NEL+RD)", "Fix": "Baseline-Fix"}


def _dials(results_dir: str | Path) -> dict[str, dict]:
    from ...mini.calibrate import dials_path

    path = dials_path(results_dir)
    return {e["key"]: e for e in (json.loads(path.read_text())["entries"] if path.is_file() else [])}


def alignment_frame(profile: str = "mini", results_dir: str | Path = "results", quick: bool = False,
                    entries=None) -> tuple[Report, pd.DataFrame]:
    """(report, frame): the study's table report, and one row per (alignment, setting, variant) with the seeds'
    mean and sample std of mIoU(U), hIoU, mIoU(S) and mIoU, ``n``, and the mini-CLIP's instruments from the dial
    log: ``training_free`` (mini-voc mIoU), ``probe`` (%), ``zero_shot`` (min of seen/unseen top-1 over both
    worlds), ``key`` (cache key) and ``packaged`` (the mini-CLIP the other tables use). ``entries`` replaces the
    registry lookup (tests)."""
    from ...mini.experiments import pretrain_config

    rep = table_report("alignment", profile, results_dir, quick=quick, entries=entries)
    log = _dials(_resolve(results_dir))
    packaged = pretrain_config().alignment
    rows = []
    for _, r in rep.numeric.iterrows():
        alignment = packaged if r["alignment"] is None or pd.isna(r["alignment"]) else float(r["alignment"])
        cfg = pretrain_config(alignment)
        entry = log.get(cfg.key()) or {}
        voc = (entry.get("presets") or {}).get("mini-voc") or {}
        zs = entry.get("zero_shot") or {}
        rows.append({
            "alignment": alignment, "setting": r["setting"], "variant": r["variant"], "n": int(r["n"]),
            **{m: r[m] for m in ("mIoU(U)", "mIoU(U) std", "hIoU", "hIoU std", "mIoU(S)", "mIoU(S) std",
                                 "mIoU", "mIoU std")},
            "training_free": (voc.get("training_free") or {}).get("mIoU", math.nan),
            "probe": (voc.get("probe") or {}).get("acc", math.nan),
            "zero_shot": min((min(z["seen"], z["unseen"]) for z in zs.values()), default=math.nan),
            "key": cfg.key(), "packaged": alignment == packaged, "found": list(r["found"]),
        })
    return rep, pd.DataFrame(rows)


def plot_alignment(frame: pd.DataFrame, raw_clip: float | None = None):
    """mIoU(U) and hIoU of the inductive runs against the mini-CLIP's training-free mIoU, one line per variant
    (mean ± sample std over seeds), the packaged mini-CLIP circled and the published raw-CLIP figure (``raw_clip``,
    default :data:`zegclip.mini.calibrate.RAW_CLIP_VOC20`) as a dashed line. Returns the Figure."""
    import matplotlib.pyplot as plt

    from ...mini.calibrate import RAW_CLIP_VOC20
    from .figures import _style

    sns = _style()
    raw_clip = RAW_CLIP_VOC20 if raw_clip is None else raw_clip
    ind = frame[(frame["setting"] == "inductive") & (frame["n"] > 0)].sort_values("training_free")
    colours = dict(zip(STUDY_VARIANTS, sns.color_palette("deep", len(STUDY_VARIANTS))))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    for ax, metric in zip(axes, ("mIoU(U)", "hIoU")):
        for variant, label in STUDY_VARIANTS.items():
            sub = ind[ind["variant"] == variant]
            if sub.empty:
                continue
            ax.errorbar(sub["training_free"], sub[metric], yerr=sub[f"{metric} std"].fillna(0.0), marker="o",
                        capsize=3, color=colours[variant], label=label)
            chosen = sub[sub["packaged"]]
            ax.scatter(chosen["training_free"], chosen[metric], s=160, facecolors="none", edgecolors="black",
                       linewidths=1.4, zorder=5, label="packaged mini-CLIP" if variant == "DPT+NEL+RD" else None)
        ax.axvline(raw_clip, color="grey", linestyle="--", linewidth=1.0, label=f"raw CLIP, VOC-20 ({raw_clip:g})")
        ax.set_xlabel("mini-CLIP training-free mIoU on mini-voc (alignment)")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"inductive {metric} against alignment")
    axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def advantage_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """ZegCLIP minus Baseline-Fix at each alignment (inductive): the difference of the mean hIoU and mIoU(U), and
    the verdict of the noise rule (:func:`zegclip.experiments.report.claims.verdict`) for "ZegCLIP is higher"."""
    from .claims import verdict

    ind = frame[frame["setting"] == "inductive"]
    rows = []
    for alignment, group in ind.groupby("alignment", sort=True):
        by = {r["variant"]: r for _, r in group.iterrows()}
        zeg, fix = by.get("DPT+NEL+RD"), by.get("Fix")
        row = {"alignment": alignment,
               "training-free mIoU": (zeg if zeg is not None else fix)["training_free"] if by else math.nan}
        for metric in ("hIoU", "mIoU(U)"):
            if zeg is None or fix is None:
                row[f"{metric} gain"], row[f"{metric} verdict"] = math.nan, "not run"
                continue
            a = (zeg[metric], zeg[f"{metric} std"], zeg["n"])
            b = (fix[metric], fix[f"{metric} std"], fix["n"])
            row[f"{metric} gain"] = a[0] - b[0] if a[2] and b[2] else math.nan
            row[f"{metric} verdict"], _ = verdict(a, b)
        rows.append(row)
    return pd.DataFrame(rows)
