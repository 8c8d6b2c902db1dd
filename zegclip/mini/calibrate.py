"""Calibration runs: how the mini recipe, world and mini-CLIP were chosen, logged run by run.

The selection protocol (issue 20): every setting is chosen on *controls* only - fully supervised runs, seen-class
metrics and the mini-CLIP's zero-shot accuracy - measured on the ``calib`` stream of scenes, which is disjoint from
the training scenes and from the ``val`` scenes that the tables report. Unseen-class results and agreement with the
paper are never looked at when choosing. Every run is logged, kept or not, in
``<results>/mini/calibration/<name>.json`` (what changed, the resolved config, the metrics, the loss curve, the mask
logit magnitude, timings and versions), and the book shows that log as a table.

Example::

    python -m zegclip mini calibrate --name lr-1e-2 --note "decoder lr x10" --set train.lr=1e-2
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from . import experiments as mx

CALIBRATION_SCENES = 300  # calib-stream scenes scored per calibration run


def calibration_spec(name: str, preset: str = "mini-voc", variant: str | None = "DPT+NEL+RD", setting: str = "fully",
                     seed: int = 0, model: dict | None = None, train: dict | None = None, data: dict | None = None,
                     out_root: str | Path = "runs/mini-calibration") -> dict:
    """The run-file dict of a calibration run: the mini recipe with overrides, scored on the calib stream."""
    spec = mx.mini_run_config(preset, variant, setting=setting, seed=seed, model=model, train=train, data=data,
                              out_root=out_root, name=name)
    spec["data"]["eval_split"] = "calib"
    spec["eval_limit"] = CALIBRATION_SCENES
    return spec


@torch.no_grad()
def mask_logit_stats(model, dataset, count: int = 16) -> dict:
    """Magnitude of the mask logits on ``count`` scenes: their std and the mean of each pixel's top logit."""
    model.eval()
    logits = torch.cat([model(dataset[i]["image"].unsqueeze(0)) for i in range(min(count, len(dataset)))])
    return {"std": round(logits.std().item(), 4), "mean_top": round(logits.max(1).values.mean().item(), 4),
            "mean": round(logits.mean().item(), 4)}


def _apply_overrides(spec: dict, overrides: list[str]) -> dict:
    import yaml

    from ..engine.run import set_path

    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        set_path(spec, key.strip(), yaml.safe_load(raw))
    return spec


def run_calibration(name: str, note: str, results_dir: str | Path = "results", overrides: list[str] = (),
                    force: bool = False, **spec_args: Any) -> dict:
    """Train and score one calibration run; write and return its log entry. An existing entry is returned as is
    unless ``force``."""
    from ..engine.checkpoint import write_json_atomic
    from ..engine.results import environment
    from .diagnose import attribute_accuracy
    from .miniclip import mini_clip_path, weights_identity
    from .render import GENERATOR_VERSION
    from ..engine.run import build_run_dataset, evaluate_run, run_from_dict, train_run

    out = Path(results_dir) / "mini" / "calibration" / f"{name}.json"
    if out.exists() and not force:
        return json.loads(out.read_text())
    spec = _apply_overrides(calibration_spec(name, **spec_args), list(overrides))
    run = run_from_dict(spec, where=f"calibration run {name}")
    t0 = time.perf_counter()
    trained = train_run(run)
    t_train = time.perf_counter() - t0
    result = evaluate_run(run, progress=False)
    model_dir = Path(run.output_dir)
    curve = [json.loads(line) for line in (model_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    from ..engine.checkpoint import latest_checkpoint, load_weights
    from ..engine.run import build_run_model

    model = build_run_model(run)
    load_weights(model, latest_checkpoint(model_dir))
    entry = {
        "name": name,
        "note": note,
        "overrides": list(overrides),
        "spec_args": spec_args,
        "config": run.to_dict(),
        "metrics": result["metrics"],
        "attributes": attribute_accuracy(run.data.dataset, result["confmat"]),
        "per_class": result["per_class"],
        "confmat": result["confmat"],
        "mask_logits": mask_logit_stats(model, build_run_dataset(run, "eval")),
        "curve": curve,
        "seconds": {"train": round(t_train, 1), "evaluate": result["timings"].get("seconds"),
                    "train_per_iter": round(trained["train"]["seconds"] / max(1, trained["train"]["iterations"]), 4)},
        "world": {"generator_version": GENERATOR_VERSION,
                  "mini_clip": Path(run.weights).name if run.weights else mini_clip_path().name,
                  "mini_clip_identity": weights_identity(run.weights)},
        "environment": environment(),
    }
    write_json_atomic(out, entry)
    write_log_csv(results_dir)
    return entry


def write_log_csv(results_dir: str | Path = "results") -> Path:
    """Rewrite ``<results>/mini/calibration/log.csv`` from the logged runs: one row per calibration run (what
    changed, its control numbers, its wall time), for readers who want the log without the book. Atomic."""
    from ..io import atomic_path

    frame, _ = calibration_frame(results_dir)
    entries, _ = load_calibration_log(results_dir)
    if len(frame):
        frame["train seconds"] = [e["seconds"]["train"] for e in entries]
    path = Path(results_dir) / "mini" / "calibration" / "log.csv"
    with atomic_path(path) as tmp:
        frame.round(2).to_csv(tmp, index=False)
    return path


def load_calibration_log(results_dir: str | Path = "results") -> tuple[list[dict], list[str]]:
    """Every logged calibration run, in name order (names start with a running number), and the problems found
    (unreadable files are reported, never silently dropped)."""
    folder = Path(results_dir) / "mini" / "calibration"
    entries, problems = [], []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("controls-"):  # the controls' tables (zegclip.experiments.controls.run_controls), not runs
            continue
        try:
            entry = json.loads(path.read_text())
            entry["metrics"]["mIoU"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            problems.append(f"{path.name}: unreadable ({type(exc).__name__})")
            continue
        entries.append(entry)
    return entries, problems


def calibration_frame(results_dir: str | Path = "results"):
    """The calibration log as a table (pandas DataFrame, one row per run) and the problems found."""
    import pandas as pd

    entries, problems = load_calibration_log(results_dir)
    rows = []
    for e in entries:
        cfg, m = e["config"], e["metrics"]
        model = cfg["model"]["config"]
        rows.append({
            "run": e["name"], "what changed": e["note"], "world": f"v{e['world']['generator_version']}",
            "mini-CLIP dials": _dials_text(e["world"].get("mini_clip_identity")),
            "dataset": cfg["data"]["dataset"],
            "setting": model["setting"], "encoder": model["encoder"]["mode"], "iters": cfg["train"]["iters"],
            "batch": cfg["train"]["batch_size"], "mIoU": m["mIoU"], "mIoU(S)": m["mIoU(S)"], "pAcc": m["pAcc"],
            "colour acc": e.get("attributes", {}).get("colour_acc"), "shape acc": e.get("attributes", {}).get("shape_acc"),
            "logit std": e["mask_logits"]["std"], "s/iter": e["seconds"]["train_per_iter"],
        })
    return pd.DataFrame(rows), problems


def _dials_text(identity: dict | None) -> str:
    """'locality/alignment' of a calibration run's mini-CLIP ('0/0' for runs from before the dials)."""
    dials = (identity or {}).get("dials") or {"locality": 0.0, "alignment": 0.0}
    return f"{dials['locality']:g}/{dials['alignment']:g}"


def pretrain_probe_frame(results_dir: str | Path = "results"):
    """The mini-CLIP pretraining probes (``<results>/mini/calibration/pretrain/probes.json``: how the world's surface
    pattern was chosen) as a table, one row per probe: shape accuracy of a linear probe of frozen patch tokens and
    image-level zero-shot top-1. Empty when the file is absent."""
    import pandas as pd

    path = Path(results_dir) / "mini" / "calibration" / "pretrain" / "probes.json"
    if not path.is_file():
        return pd.DataFrame()
    rows = []
    for e in json.loads(path.read_text())["entries"]:
        zs = e["zero_shot"]["mini-voc"]
        rows.append({"probe": e["name"], "what changed": e["note"], "pattern": f"v{e['generator_pattern']}",
                     "amplitude": e["pattern_amp"], "steps": e["pretrain_steps"],
                     "shape acc (features)": e["probe"]["features"]["shape_acc"],
                     "shape acc (block 1)": e["probe"]["block1"]["shape_acc"],
                     "colour acc": e["probe"]["features"]["colour_acc"],
                     "zero-shot seen": zs["seen"], "zero-shot unseen": zs["unseen"]})
    return pd.DataFrame(rows)


# The published figure that sets the alignment dial (issue 28): training-free mIoU of raw CLIP ViT-B/16 (no
# MaskCLIP-style change) on PASCAL VOC without background, 20 classes. ClearCLIP's comparison over five datasets
# without background reports CLIP 41.8 there (MaskCLIP 74.9), read from the table in its repository
# (github.com/mc-lan/ClearCLIP, assets/results.png); SCLIP's table is said to give 49.4, which we could not read.
RAW_CLIP_VOC20 = 41.8
RAW_CLIP_SOURCE = ("ClearCLIP (Lan et al., ECCV 2024), table of five datasets without background: "
                   "CLIP ViT-B/16 on VOC20, 41.8 mIoU")


def choose_alignment(results_dir: str | Path = "results", locality: float | None = None, steps: int | None = None):
    """The logged mini-CLIP (an entry of the dial log) whose training-free mIoU on mini-voc is closest to
    :data:`RAW_CLIP_VOC20`, among those with this ``locality`` and ``steps`` (all when None); None without any.
    The rule of the alignment dial: it reads no ZegCLIP result."""
    path = dials_path(results_dir)
    entries = [e for e in (json.loads(path.read_text())["entries"] if path.is_file() else [])
               if (locality is None or e["dials"]["locality"] == locality) and (steps is None or e["steps"] == steps)]
    if not entries:
        return None
    return min(entries, key=lambda e: abs(e["presets"]["mini-voc"]["training_free"]["mIoU"] - RAW_CLIP_VOC20))


def dials_path(results_dir: str | Path = "results") -> Path:
    return Path(results_dir) / "mini" / "calibration" / "pretrain" / "dials.json"


def log_dials(entry: dict, results_dir: str | Path = "results") -> Path:
    """Add (or replace, by cache key) one mini-CLIP's instruments (:func:`zegclip.mini.diagnose.diagnose_mini_clip`)
    in ``<results>/mini/calibration/pretrain/dials.json``, the log of the dial search. Atomic."""
    from ..engine.checkpoint import write_json_atomic
    from ..engine.results import environment

    path = dials_path(results_dir)
    log = json.loads(path.read_text()) if path.is_file() else {"entries": []}
    log["entries"] = [e for e in log["entries"] if e["key"] != entry["key"]] + [
        {**entry, "environment": environment(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    log["entries"].sort(key=lambda e: (e["dials"]["locality"], e["dials"]["alignment"], e["steps"]))
    write_json_atomic(path, log)
    return path


def dials_frame(results_dir: str | Path = "results"):
    """The dial search as a table, one row per mini-CLIP: both dials, training-free mIoU and linear-probe accuracy
    per preset, zero-shot top-1 (min of seen and unseen) and the pretraining time."""
    import pandas as pd

    path = dials_path(results_dir)
    rows = []
    for e in (json.loads(path.read_text())["entries"] if path.is_file() else []):
        row = {"locality": e["dials"]["locality"], "alignment": e["dials"]["alignment"], "steps": e["steps"]}
        for preset, p in e["presets"].items():
            row[f"training-free mIoU ({preset})"] = p["training_free"]["mIoU"]
            if preset == "mini-voc":
                row["distance to raw CLIP"] = round(abs(p["training_free"]["mIoU"] - RAW_CLIP_VOC20), 2)
            row[f"probe acc ({preset})"] = p["probe"]["acc"]
        for world, z in e["zero_shot"].items():
            row[f"zero-shot min ({world})"] = min(z["seen"], z["unseen"])
        row["pretrain s"] = e["pretrain_seconds"]
        rows.append(row)
    return pd.DataFrame(rows)
