"""Runs in the mini world through the same run machinery as the real presets, and the Table 5 ablation.

Every run is a :class:`zegclip.run.RunConfig` (mini preset + overrides + the mini data pipeline), trained on the CPU
and evaluated on held-out scenes; its result JSON (config, metrics, per-class IoU, confusion matrix, timings,
versions, seed) goes to ``results/mini/runs/<run id>.json`` - the format every table reads.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from ..config import TABLE5_VARIANTS, variant_overrides

# Mini training: the official recipe (AdamW, linear warm-up, poly decay, batch 16, focal x100 + dice) on 64-px scenes
# (provisional: 2,000 iterations, ~3 min on 2 cores; sigmoid losses need that long to leave their all-negative start).
# Colour is a class attribute here, so no photometric distortion.
MINI_TRAIN = {"iters": 2000, "batch_size": 16, "lr": 1e-3, "warmup_iters": 30, "num_workers": 0, "log_every": 50,
              "progress": False}
# Objects in 64-px scenes are already small: downscaling below 1x makes them sub-patch, so the mini recipe resizes
# by 1-2x (the official 0.5-2x applies to ~500-px photos).
MINI_DATA = {"crop_size": 64, "scale": [256, 64], "ratio_range": [1.0, 2.0], "test_short_side": 64, "photometric": False}
TRAIN_SCENES, EVAL_SCENES = 4000, 300


def run_id(preset: str, variant: str | None, setting: str, seed: int, extra: str = "") -> str:
    slug = (variant or "ZegCLIP").lower().replace("+", "-")
    return f"{preset}-{slug}-{setting}{('-' + extra) if extra else ''}-s{seed}"


def mini_run_config(preset: str = "mini-voc", variant: str | None = None, setting: str = "inductive", seed: int = 0,
                    iters: int | None = None, dataset: str | None = None, model: dict | None = None,
                    train: dict | None = None, data: dict | None = None, out_root: str | Path = "runs/mini", name: str | None = None) -> dict:
    """A run-file dict for one mini-world run (``variant``: a Table 5 name such as ``"FT+NEL"``)."""
    model_spec: dict[str, Any] = {"preset": preset, "setting": setting, "seed": seed}
    if variant:
        model_spec.update(variant_overrides(variant))
    model_spec.update(model or {})
    train_spec = {**MINI_TRAIN, "seed": seed, **(train or {})}
    if iters is not None:
        train_spec["iters"] = iters
    if setting == "transductive":
        train_spec.setdefault("self_training", "dagger")
    train_spec.setdefault("checkpoint_every", train_spec["iters"])
    name = name or run_id(preset, variant, setting, seed)
    return {
        "name": name,
        "model": model_spec,
        "data": {"dataset": dataset or preset, **MINI_DATA, "options": {"size": TRAIN_SCENES, "seed": 0}, **(data or {})},
        "train": train_spec,
        "output_dir": str(Path(out_root) / name),
        "eval_limit": EVAL_SCENES,
    }


def run_mini(spec: dict, results_dir: str | Path = "results/mini/runs", force: bool = False) -> dict:
    """Train and evaluate one mini run; skips the work when its result exists for the same resolved config."""
    from ..run import evaluate_run, run_from_dict, train_run

    run = run_from_dict(spec)
    result_path = Path(results_dir) / f"{run.name}.json"
    if result_path.is_file() and not force:
        try:
            old = json.loads(result_path.read_text())
            if old.get("config") == json.loads(json.dumps(run.to_dict(), default=str)):
                return old
        except (json.JSONDecodeError, OSError):
            pass  # unreadable: redo the run
    train_run(run)
    return evaluate_run(run, result_path=result_path, progress=False)


def table5(seeds: int = 3, iters: int | None = None, preset: str = "mini-voc", results_dir="results/mini/runs",
           variants=TABLE5_VARIANTS) -> list[dict]:
    """Run the 12 variants of Table 5 x ``seeds``; returns one summary row per variant (mean and std)."""
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(total=len(variants) * seeds, desc=f"Table 5 ({preset})", unit="run", dynamic_ncols=True)
    for variant in variants:
        results = []
        for s in range(seeds):
            results.append(run_mini(mini_run_config(preset, variant, seed=s, iters=iters), results_dir))
            bar.update(1)
            bar.set_postfix(last=f"{variant} s{s} hIoU {results[-1]['metrics']['hIoU']:.1f}")
        rows.append(summarise(variant, results))
    bar.close()
    return rows


def summarise(label: str, results: list[dict], keys=("pAcc", "mIoU(S)", "mIoU(U)", "hIoU")) -> dict:
    row: dict[str, Any] = {"variant": label, "seeds": len(results)}
    for k in keys:
        values = [r["metrics"][k] for r in results if not math.isnan(r["metrics"][k])]
        row[k] = statistics.fmean(values) if values else math.nan
        row[f"{k} std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return row


def format_rows(rows: list[dict], keys=("pAcc", "mIoU(S)", "mIoU(U)", "hIoU")) -> str:
    head = "| variant | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys)
    lines = [head]
    for r in rows:
        cells = " | ".join(f"{r[k]:.1f} ± {r[k + ' std']:.1f}" for k in keys)
        lines.append(f"| {r['variant']} | {cells} |")
    return "\n".join(lines)
