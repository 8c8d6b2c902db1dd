"""The mini world's training recipe: runs through the same run machinery as the real presets.

Every run is a :class:`zegclip.engine.run.RunConfig` (mini preset + overrides + the mini data pipeline), trained on the CPU
and evaluated on held-out scenes. ``zegclip.experiments.runs`` turns registry entries into these run files and writes each
result JSON (config, metrics, per-class IoU, confusion matrix, timings, versions, seed) to
``results/mini/runs/<run id>.json`` - the format every table reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model.presets import variant_overrides
from .render import GENERATOR_VERSION

# Mini training: the official recipe (AdamW, linear warm-up, poly decay, focal x100 + dice) on 64-px scenes at
# batch 8. Iterations per preset (issue 28, chosen on the calib stream by the positive control; see the calibration
# log): 3,000 on mini-voc (about 0.08 s an iteration on one core, 4 minutes), 6,000 on mini-coco (36 classes, about
# 0.11 s, 11 minutes). Colour is a class attribute here, so no photometric distortion.
MINI_TRAIN = {"iters": 3000, "batch_size": 8, "lr": 1e-3, "warmup_iters": 30, "num_workers": 0, "log_every": 50,
              "progress": False}
MINI_ITERS = {"mini-voc": 3000, "mini-coco": 6000}
# No scale augmentation: scenes are trained at the test scale (ratio 1-1). Objects in 64-px scenes are already small
# and the patch grid is 8x8: the official 0.5-2x (for ~500-px photos) makes them sub-patch, and even 1-2x took the
# fully supervised mini-voc run from 91 to 68 mIoU at 3,000 iterations (issue 28).
MINI_DATA = {"crop_size": 64, "scale": [256, 64], "ratio_range": [1.0, 1.0], "test_short_side": 64, "photometric": False}


def pretrain_config(alignment: float | None = None):
    """The mini-CLIP a run uses: the packaged :class:`~zegclip.mini.miniclip.PretrainConfig`, or the same with
    another ``alignment`` dial (the alignment study; locality, steps and everything else unchanged)."""
    import dataclasses

    from .miniclip import PretrainConfig

    cfg = PretrainConfig()
    return cfg if alignment is None else dataclasses.replace(cfg, alignment=float(alignment))


def mini_iters(preset: str) -> int:
    """Training iterations of the mini recipe for a preset (the mini-voc schedule for any other)."""
    return MINI_ITERS.get(preset, MINI_TRAIN["iters"])
TRAIN_SCENES, EVAL_SCENES = 4000, 300


def _default_name(preset: str, variant: str | None, setting: str, seed: int, extra: str = "") -> str:
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
    train_spec = {**MINI_TRAIN, "iters": mini_iters(preset), "seed": seed, **(train or {})}
    if iters is not None:
        train_spec["iters"] = iters
    if setting == "transductive":
        train_spec.setdefault("self_training", "dagger")
    train_spec.setdefault("checkpoint_every", train_spec["iters"])
    name = name or _default_name(preset, variant, setting, seed)
    # The generator version is part of the resolved config, so a result measured in another version of the world
    # never counts as finished (reproduce reruns it) and a run file of another version fails loudly.
    options = {"size": TRAIN_SCENES, "seed": 0, **((data or {}).get("options") or {}), "generator": GENERATOR_VERSION}
    return {
        "name": name,
        "model": model_spec,
        "data": {"dataset": dataset or preset, **MINI_DATA, **(data or {}), "options": options},
        "train": train_spec,
        "output_dir": str(Path(out_root) / name),
        "eval_limit": EVAL_SCENES,
    }
