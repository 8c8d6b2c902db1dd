"""One registry run: its run file (mini or paper profile; self-training and cross-dataset variants), training and
evaluation into ``results/<profile>/runs/<id>.json`` with its sample PNGs, and whether a finished result still holds.

``notebooks/run.ipynb`` calls :func:`execute_run`; checkpoints go to ``runs/`` beside the results root.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import time
from pathlib import Path
from typing import Any

from ..engine.checkpoint import write_json_atomic
from .registry import RUN_DEFAULTS, Entry, normalise_params, run_id


def mini_spec(params: dict, out_root: str | Path) -> dict:
    """The run-file dict of a mini-world run with these notebook parameters."""
    from ..model.presets import variant_overrides
    from ..mini import experiments as mx

    p = normalise_params(params)
    model: dict[str, Any] = {}
    if p["query_format"] is not None:
        model["query_format"] = p["query_format"]
    if p["loss"] is not None:
        model["loss"] = {**variant_overrides(p["variant"])["loss"], "kind": p["loss"]}
    train: dict[str, Any] = {}
    data: dict[str, Any] = {}
    iters = p["iters"] or mx.mini_iters(p["dataset"])
    if p["quick"]:
        iters = min(iters, 4)
        data["options"] = {"size": 16, "seed": 0}
    spec = mx.mini_run_config(p["dataset"], p["variant"], setting=p["setting"], seed=p["seed"], iters=iters,
                              model=model, train=train, data=data, out_root=out_root, name=_dir_name(p))
    # the half-way checkpoint of an inductive run initialises self-training (as the official ST schedule)
    spec["train"]["checkpoint_every"] = max(1, iters // 2)
    if p["alignment"] is not None and not p["quick"]:  # the alignment study: another mini-CLIP's cached weights
        from ..mini.miniclip import mini_clip_path

        spec["weights"] = str(mini_clip_path(mx.pretrain_config(p["alignment"])))
    if p["quick"]:
        spec["random_init"] = True
        spec["eval_limit"] = 4
    return spec


def paper_spec(params: dict, out_root: str | Path) -> dict:
    """The run-file dict of a real-data run: the packaged recipe of (dataset, setting) plus the parameters."""
    from ..model.presets import variant_overrides
    from ..engine.run import load_run

    p = normalise_params(params)
    recipe = {"inductive": "inductive", "transductive": "st", "fully": "fully"}[p["setting"]]
    run = load_run(f"{p['dataset']}-{recipe}")
    spec = json.loads(json.dumps(_run_file(run), default=list))
    model = dict(spec["model"])
    model.update(variant_overrides(p["variant"]))
    if p["query_format"] is not None:
        model["query_format"] = p["query_format"]
    if p["loss"] is not None:
        model["loss"] = {**model["loss"], "kind": p["loss"]}
    model["seed"] = p["seed"]
    spec["model"] = model
    spec["train"]["seed"] = p["seed"]
    if p["iters"]:
        spec["train"]["iters"] = p["iters"]
    if p["data_root"]:
        spec["data"]["root"] = str(Path(p["data_root"]) / _DATA_DIRS.get(p["dataset"], ""))
    if p["weights"]:
        spec["weights"] = p["weights"]
    if p["quick"]:
        _quick_paper(spec, p)
    name = _dir_name(p)
    spec["name"], spec["output_dir"] = name, str(Path(out_root) / name)
    spec["train"]["checkpoint_every"] = max(1, spec["train"]["iters"] // 2) if p["setting"] == "inductive" else None
    return spec


# The paper profile's --quick (a CPU smoke test of the real-data path, e.g. on the tiny datasets of
# zegclip.mini.layouts): the packaged recipe's model - ViT-B/16 architecture, prompts, decoder, loss - with random
# CLIP weights, shrunk only where the cost lives: 64-px crops and test images (slide windows 64/48, masks resized to
# the crop as the official 512 is for 512 crops), batch 2, 2 iterations, 2 evaluation images, no loader processes,
# and one text template: the 15-template ensemble of coco/context would run 2,565 + 900 prompts through the random
# 12-layer text tower, about 10 minutes on 2 cores, for embeddings that mean nothing.
QUICK_PAPER = {"iters": 2, "batch_size": 2, "eval_limit": 2, "crop_size": 64, "scale": [256, 64],
               "test_short_side": 64, "slide_crop": 64, "slide_stride": 48, "mask_size": 64, "templates": "single"}


def _quick_paper(spec: dict, p: dict) -> None:
    q = QUICK_PAPER
    spec["random_init"], spec["weights"], spec["eval_limit"] = True, None, q["eval_limit"]
    spec["train"].update(iters=min(p["iters"] or q["iters"], q["iters"]), batch_size=q["batch_size"], accumulation=1,
                         num_workers=0, log_every=1, progress=False)
    spec["data"].update(crop_size=q["crop_size"], scale=q["scale"], test_short_side=q["test_short_side"])
    spec["model"].update({k: q[k] for k in ("slide_crop", "slide_stride", "mask_size", "templates")})


def _dir_name(p: dict) -> str:
    return run_id(p) + ("-quick" if p["quick"] else "")


_DATA_DIRS = {"voc": "VOCdevkit", "coco": "coco_stuff164k", "context": "VOCdevkit/VOC2010"}


def _run_file(run) -> dict:
    """A RunConfig back as a run-file dict whose model is ``{preset, overrides}`` (not the resolved config)."""
    import dataclasses

    out = dataclasses.asdict(run)
    out["model"] = dict(run.model)
    return out


def run_spec(params: dict, runs_root: str | Path = "runs") -> dict:
    """The run-file dict for notebook parameters (mini or paper profile); transductive runs get ``init_from``."""
    p = normalise_params(params)
    out_root = Path(runs_root) / p["profile"]
    if p["eval_dataset"] or p["negative_control"]:  # evaluation-only variants: the training run itself
        p = {**p, "eval_dataset": None, "negative_control": False}
    spec = mini_spec(p, out_root) if p["profile"] == "mini" else paper_spec(p, out_root)
    if p["setting"] == "transductive":
        first = {**p, "setting": "inductive", "self_training": None}
        ind = mini_spec(first, out_root) if p["profile"] == "mini" else paper_spec(first, out_root)
        half = max(1, ind["train"]["iters"] // 2)
        spec["train"]["iters"] = max(1, ind["train"]["iters"] - half)
        spec["train"]["checkpoint_every"] = spec["train"]["iters"]
        spec["train"]["self_training"] = p["self_training"] or "dagger"
        spec["train"]["init_from"] = str(Path(ind["output_dir"]) / "checkpoints" / f"iter_{half:07d}")
    return spec


def training_dirs(params: dict, runs_root: str | Path = "runs") -> list[str]:
    """The run directories that executing these parameters may train: the run's own and, for self-training, the
    inductive run whose half-way checkpoint it starts from. Two registry entries that share one (an evaluation-only
    variant and its training run; self-training and its inductive run) must not execute at the same time: the second
    trainer of a directory fails on its lock (``reproduce --jobs 2`` lost Table 7's runs that way)."""
    spec = run_spec(params, runs_root)
    dirs = [spec["output_dir"]]
    if spec["train"].get("init_from"):
        dirs.append(str(Path(spec["train"]["init_from"]).parent.parent))
    return sorted(set(dirs))


def eval_spec(params: dict, train_spec: dict) -> dict:
    """Cross-dataset evaluation (Table 7): the target dataset's classes, all counted as seen, the trained prompts."""
    p = normalise_params(params)
    target = p["eval_dataset"]
    preset = {"mini-voc-b": "mini-voc"}.get(target, target)
    spec = copy.deepcopy(train_spec)
    model = {k: v for k, v in spec["model"].items() if k not in ("preset", "setting")}
    from ..model.presets import get_config

    source = get_config(train_spec["model"]["preset"])
    # the source's prompt count (checkpoint shapes), the target's classes
    model.update({"preset": preset, "setting": "fully",
                  "encoder": {**model.get("encoder", {}), "num_prompts": source.encoder.num_prompts}})
    model["unseen"] = []  # every target class counts as seen (official coco-to-voc: unseen = [], mIoU(U) is NaN)
    spec["model"] = model
    # the target's dataset name: the "context" preset reads Context-60 (a data.dataset "context" does not exist, so
    # Table 7's coco -> context failed before evaluating; the packaged coco-to-context recipe reads context60 too)
    spec["data"] = {**spec["data"], "dataset": {"context": "context60"}.get(target, target)}
    if p["profile"] == "paper":
        spec["data"]["root"] = str(Path(p["data_root"] or "data") / _DATA_DIRS.get(target, ""))
    spec["name"] = run_id(p)
    return spec


def execute_run(params: dict, results_dir: str | Path = "results", runs_root: str | Path | None = None,
                run_id_: str | None = None, force: bool = False) -> dict:
    """Train (unless already trained) and evaluate one registry run; write its result JSON and sample PNGs.

    Checkpoints go to ``<runs_root>/<profile>/<run id>/`` (default: ``runs/`` beside ``results_dir``). A run
    directory left by a different configuration is started afresh, never resumed.
    """
    from ..engine.run import evaluate_run, run_from_dict

    t0 = time.perf_counter()
    p = normalise_params(params)
    ident = run_id_ or run_id(p)
    runs_root = Path(runs_root) if runs_root is not None else runs_root_for(results_dir)
    spec = run_spec(p, runs_root)
    if p["quick"] and not ident.endswith("-quick"):  # never mixes with real runs
        ident += "-quick"
    if p["alignment"] is not None and not p["quick"]:  # the study's mini-CLIP: pretrained once, then cached
        from ..mini.experiments import pretrain_config
        from ..mini.miniclip import ensure_mini_clip

        ensure_mini_clip(pretrain_config(p["alignment"]))
    train = run_from_dict(spec)
    if p["setting"] == "transductive":
        _ensure_half(p, runs_root, Path(spec["train"]["init_from"]))
    final = _train(train, force)
    evaluated = run_from_dict(eval_spec(p, spec)) if p["eval_dataset"] else train
    path = Path(results_dir) / p["profile"] / "runs" / f"{ident}.json"
    tmp = path.with_suffix(".eval.json")
    model, unseen = None, []
    if p["negative_control"]:  # control 4: the unseen classes' text replaced by random unit vectors
        from ..engine.evaluate import randomise_text_embeddings
        from ..engine.run import build_run_model

        model = build_run_model(evaluated)
        unseen = sorted(set(range(model.num_classes)) - set(model.seen_idx.tolist()))
        randomise_text_embeddings(model, unseen, seed=p["seed"])
    result = evaluate_run(evaluated, checkpoint=final, result_path=tmp, progress=False, model=model)
    tmp.unlink(missing_ok=True)
    if p["negative_control"]:
        from ..engine.evaluate import chance_miou

        result["chance_mIoU(U)"] = chance_miou(result["confmat"], unseen)
    result["run"] = ident
    result["params"] = {k: p[k] for k in RUN_DEFAULTS}
    result["train_config"] = train.to_dict() if p["eval_dataset"] else None
    from ..model.factory import resolve_split

    cfg = evaluated.model_config()
    split = resolve_split(dataclasses.replace(cfg, setting="inductive") if cfg.setting == "fully" else cfg)
    result["class_names"] = list(split.classes)
    result["seen"], result["unseen"] = list(split.seen), list(split.unseen)
    if p["samples"]:
        result["samples"] = save_samples(evaluated, final, Path(results_dir) / p["profile"], ident, p["samples"],
                                         data_key=evaluated.data.dataset + ("-quick" if p["quick"] else ""))
    if p["profile"] == "mini" and not p["quick"]:  # which mini-CLIP: a result of other weights is not done
        from ..mini.miniclip import weights_identity

        result["mini_clip"] = weights_identity(train.weights)
    result["training"] = training_record(Path(train.output_dir))
    seconds, iterations = result["training"].get("seconds"), result["training"].get("iterations")
    result["seconds_per_iteration"] = round(seconds / iterations, 4) if seconds and iterations else None
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    result["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    from ..engine.results import expected_nulls

    result = _json_ready(result)
    write_json_atomic(path, result, expected=expected_nulls(result))
    return result


def training_record(run_dir: Path) -> dict:
    """What a run page shows of the training: its loss/lr log (``log.jsonl``, one record per ``log_every``
    iterations) and ``train_summary.json``'s seconds, iterations and device. Empty fields when absent (a run trained
    before these were kept, or an evaluation-only entry)."""
    log_path, summary_path = run_dir / "log.jsonl", run_dir / "train_summary.json"
    log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()] if log_path.is_file() else []
    summary = json.loads(summary_path.read_text()).get("summary", {}) if summary_path.is_file() else {}
    return {"log": log, **{k: summary.get(k) for k in ("seconds", "iterations", "resumed_from", "device", "amp")}}


def runs_root_for(results_dir: str | Path) -> Path:
    """Checkpoints live in ``runs/`` beside the results root (``results/`` -> ``runs/``)."""
    return Path(results_dir).parent / "runs"


def _train(run, force: bool = False) -> Path:
    """Train ``run`` to its last iteration (or ``stop_at``) unless done; returns that checkpoint's directory."""
    import shutil

    from ..engine.run import train_run

    out = Path(run.output_dir)
    end = run.train.stop_at or run.train.iters
    final = out / "checkpoints" / f"iter_{end:07d}"
    saved = out / "config.json"
    same = saved.is_file() and _resumable(json.loads(saved.read_text())) == _resumable(run.to_dict())
    if not same or force:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    if force or not same or not (final / "state.json").is_file():
        train_run(run, resume=same and not force)
    return final


def _resumable(config: dict) -> dict:
    """A run config without the fields that do not change the trained weights (so a run's first part resumes)."""
    config = json.loads(json.dumps(config, default=str))
    for key in ("stop_at", "checkpoint_every", "progress", "log_every", "num_workers", "keep_checkpoints"):
        config.get("train", {}).pop(key, None)
    return config


def _ensure_half(p: dict, runs_root, half: Path) -> None:
    """Self-training starts from the inductive run's half-way checkpoint: train that first part if missing."""
    from ..engine.run import run_from_dict

    if (half / "state.json").is_file():
        return
    spec = run_spec({**p, "setting": "inductive", "self_training": None}, runs_root)
    spec["train"]["stop_at"] = int(half.name.split("_")[1])
    _train(run_from_dict(spec))


def _json_ready(obj):
    """JSON-ready: tensors/numpy scalars become Python numbers (NaN stays NaN: Python's json writes it)."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj


def save_samples(run, checkpoint, profile_dir: Path, ident: str, count: int, data_key: str | None = None) -> list[dict]:
    """Predictions on the first ``count`` evaluation images as palette PNGs; images and labels once per dataset,
    in ``samples/<data_key>/`` (default: the dataset's name; quick runs use ``<dataset>-quick``: their test images
    are resized otherwise, and must not replace those that real runs' predictions are shown over)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..engine.checkpoint import load_weights
    from ..data.palettes import png_palette
    from ..data.transforms import normalization_stats
    from ..engine.run import build_run_dataset, build_run_model

    model = build_run_model(run)
    load_weights(model, checkpoint)
    model.eval()
    dataset = build_run_dataset(run, "eval")
    mean, std = normalization_stats(run.model_config().normalization)
    data_dir = profile_dir / "samples" / (data_key or run.data.dataset)
    pred_dir = profile_dir / "samples" / ident
    data_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    palette = png_palette()
    out = []
    for k in range(min(count, len(dataset))):
        sample = dataset[k]
        with torch.no_grad():
            scores = model.scores(sample["image"].unsqueeze(0))
        label = sample["label"]
        if scores.shape[-2:] != label.shape[-2:]:
            scores = torch.nn.functional.interpolate(scores, size=label.shape[-2:], mode="bilinear", align_corners=False)
        pred = scores.argmax(1)[0].to(torch.uint8).numpy()
        image = sample["image"] * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        image = (image.clamp(0, 255) if max(mean) > 1 else (image * 255).clamp(0, 255)).round().byte()
        if image.shape[-2:] != label.shape[-2:]:
            image = torch.nn.functional.interpolate(image[None].float(), size=label.shape[-2:], mode="bilinear")[0].round().byte()
        names = {"image": data_dir / f"image_{k}.png", "label": data_dir / f"label_{k}.png",
                 "pred": pred_dir / f"pred_{k}.png"}
        _save_png(Image.fromarray(image.permute(1, 2, 0).numpy()), names["image"])
        for key, arr in (("label", label.numpy().astype(np.uint8)), ("pred", pred)):
            img = Image.fromarray(arr, mode="P")
            img.putpalette(palette)
            _save_png(img, names[key])
        out.append({k2: str(v.relative_to(profile_dir)) for k2, v in names.items()})
    return out


def _save_png(image, path: Path) -> None:
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def is_done(entry: Entry, results_dir: str | Path) -> bool:
    """Whether ``entry``'s result exists for the same parameters (and, for runs, the same resolved config)."""
    return why_not_done(entry, results_dir) is None


def why_not_done(entry: Entry, results_dir: str | Path) -> str | None:
    """Why ``entry`` has to run (again), in a few words, or None when its result is done: no result, an unreadable
    or invalid one, other parameters, another resolved config, or (mini runs) another mini-CLIP."""
    path = entry.result_path(results_dir)
    if not path.is_file():
        return "no result"
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return "unreadable result"
    if not isinstance(old, dict):
        return "unreadable result"
    from ..engine.results import result_problem

    if entry.notebook == "run":
        problem = result_problem(old, "runs", entry.id)
        if problem is not None:
            return f"invalid result ({problem})"  # the reports would leave it out: run it again
    if entry.notebook == "run" and entry.params["profile"] == "mini" and not entry.params["quick"]:
        from ..mini.experiments import pretrain_config
        from ..mini.miniclip import result_key

        want = pretrain_config(entry.params.get("alignment")).key()
        if result_key(old) != want:
            return f"measured with mini-CLIP {result_key(old)}, this run's is {want}"
    if entry.notebook != "run":
        same = old.get("params", {}) == {**old.get("params", {}), **entry.params}
        return None if same else "other parameters"
    have = {**RUN_DEFAULTS, **(old.get("params") or {})}
    # saved sample PNGs change no number: a result that saved at least as many as asked for will do
    if {k: v for k, v in have.items() if k != "samples"} != {k: entry.params[k] for k in RUN_DEFAULTS if k != "samples"}:
        return "other parameters"
    if (have.get("samples") or 0) < (entry.params.get("samples") or 0):
        return f"saved {have.get('samples') or 0} sample images, {entry.params['samples']} wanted"
    from ..engine.run import run_from_dict

    spec = run_spec(entry.params, runs_root_for(results_dir))
    if entry.params["eval_dataset"]:
        spec = eval_spec(entry.params, spec)
    config = _placeless(json.loads(json.dumps(run_from_dict(spec).to_dict(), default=str)))
    have = _placeless(old.get("config") or {})
    if have == config:
        return None
    changed = sorted(_changed(have, config))
    return "another configuration (" + ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "") + ")"


def _placeless(config: dict) -> dict:
    """A resolved run config without where it ran: ``output_dir`` and ``train.init_from`` keep only their part below
    the runs root (``<profile>/<run>/...``), so that the same run resolved from another working directory (results
    ``../results`` from ``notebooks/``) or checkout is the same run."""
    def tail(path, keep):
        return None if path is None else "/".join(Path(str(path)).parts[-keep:])

    out = dict(config)
    if out.get("weights"):  # a weights file is named by its file name (the mini-CLIP's: its cache key)
        out["weights"] = Path(str(out["weights"])).name
    if "output_dir" in out:
        out["output_dir"] = tail(out["output_dir"], 2)
    if isinstance(out.get("train"), dict) and out["train"].get("init_from"):
        out["train"] = {**out["train"], "init_from": tail(out["train"]["init_from"], 4)}
    return out


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


__all__ = ["mini_spec", "paper_spec", "run_spec", "eval_spec", "execute_run", "runs_root_for", "save_samples",
           "is_done", "why_not_done", "training_dirs", "training_record", "QUICK_PAPER"]
