"""A run = model config + data + training schedule, resolved and saved; train and evaluate it.

Run files are YAML or JSON::

    name: voc-inductive
    model: {preset: voc}                      # a preset plus config-field overrides
    data: {dataset: voc, root: data/VOCdevkit/VOC2012}
    train: {iters: 20000, batch_size: 16}
    weights: /path/to/ViT-B-16.pt             # or random_init: true
    output_dir: runs/voc-inductive

``resolve_run`` fills every default, so ``<output_dir>/config.json`` reproduces the run exactly
(``python -m zegclip train --config <output_dir>/config.json``). ``train_run`` trains; ``evaluate_run`` scores a
trained (or official) model and writes one result JSON with config, metrics, per-class table, timings,
versions and seed - the single source the notebooks read.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .checkpoint import write_json_atomic
from ..model.config import ZegCLIPConfig
from ..model.presets import get_config
from .train import TrainConfig
from ..typed import ConfigError

DATASET_SPLITS = {"voc": "voc", "coco": "coco", "context59": "context59", "context60": "context60"}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "voc"  # voc | coco | context59 | context60 | folder | a registered (mini) dataset
    root: str | None = None
    train_split: str = "train"
    eval_split: str = "val"
    crop_size: int = 512
    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    test_short_side: int = 512
    photometric: bool = True  # mmseg PhotoMetricDistortion (off in the mini world, where colour is the class)
    options: Mapping[str, Any] = field(default_factory=dict)  # extra keyword arguments of the dataset builder

    def __post_init__(self):
        if self.crop_size < 1 or self.test_short_side < 1 or min(self.scale) < 1:
            raise ValueError(f"crop_size, scale and test_short_side must be >= 1, got {self.crop_size}, "
                             f"{list(self.scale)}, {self.test_short_side}")
        if not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise ValueError(f"ratio_range must be [low, high] with 0 < low <= high, got {list(self.ratio_range)}")
        if not 0 < self.cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must lie in (0, 1], got {self.cat_max_ratio}")


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    model: Mapping[str, Any] = field(default_factory=lambda: {"preset": "voc"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    weights: str | None = None
    random_init: bool = False
    text_embeddings: str | None = None
    output_dir: str = "runs/run"
    eval_limit: int | None = None

    def __post_init__(self):
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"eval_limit must be >= 1 or null, got {self.eval_limit}")

    def model_config(self) -> ZegCLIPConfig:
        spec = dict(self.model)
        if "config" in spec:  # a fully resolved config
            return ZegCLIPConfig.from_dict(spec["config"])
        preset = spec.pop("preset", "voc")
        return get_config(preset, **spec)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["model"] = {"config": self.model_config().to_dict()}
        return out


def _build(cls, data: Mapping[str, Any], where: str):
    from ..typed import build

    return build(cls, data, where)


def run_from_dict(data: Mapping[str, Any], where: str = "run config") -> RunConfig:
    data = dict(data)
    if "data" in data:
        data["data"] = _build(DataConfig, data["data"], f"{where}: data")
    if "train" in data:
        data["train"] = _build(TrainConfig, data["train"], f"{where}: train")
    run = _build(RunConfig, data, where)
    try:
        run.model_config()  # validate early
    except ValueError as exc:
        raise ConfigError(f"{where}: model: {str(exc).splitlines()[0]}") from exc
    return run


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts (for ``--set`` overrides)."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {k} is not a section")
    node[keys[-1]] = value


def available_recipes() -> list[str]:
    """Names of the packaged run files (the paper's official configurations)."""
    import importlib.resources

    return sorted(p.name[:-5] for p in importlib.resources.files("zegclip.engine.recipes").iterdir() if p.name.endswith(".yaml"))


def load_run(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML/JSON run file (or a packaged recipe by name) and apply ``key.path=value`` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file() and str(path) in available_recipes():
            import importlib.resources

            path = Path(str(importlib.resources.files("zegclip.engine.recipes") / f"{path}.yaml"))
        if not path.is_file():
            raise FileNotFoundError(f"run config not found: {path} (packaged recipes: {', '.join(available_recipes())})")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"cannot parse run config {path}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"run config {path} must hold a mapping")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        set_path(data, key.strip(), yaml.safe_load(raw))
    return run_from_dict(data, where=str(path or "run config"))


# ----------------------------------------------------------------------------------------------- building
def build_run_model(run: RunConfig):
    from ..model.factory import build_model

    return build_model(run.model_config(), weights=run.weights, random_init=run.random_init,
                       text_embeddings=run.text_embeddings)


def build_run_dataset(run: RunConfig, which: str):
    """The training (``which="train"``, with augmentation) or evaluation dataset of a run."""
    from ..data import datasets, transforms

    d = run.data
    if d.root is None and d.dataset in datasets.DATASET_NAMES:
        raise ValueError(f"data.root is not set: where is the {d.dataset} dataset? (e.g. --set data.root=/data/VOCdevkit)")
    norm = run.model_config().normalization
    if which == "train":
        from .selftrain import PAD_INDEX

        pad = PAD_INDEX if run.train.self_training == "all" else None  # padding must not be pseudo-labelled
        tf = transforms.train_transforms(crop_size=d.crop_size, scale=d.scale, ratio_range=d.ratio_range,
                                         cat_max_ratio=d.cat_max_ratio, normalization=norm, label_pad_value=pad,
                                         photometric=d.photometric)
        split = d.train_split
    else:
        tf = transforms.test_transforms(short_side=d.test_short_side, normalization=norm)
        split = d.eval_split
    return datasets.build_dataset(d.dataset, d.root, split, transforms=tf, **dict(d.options))


# Fields that may differ from the saved config.json when a run is resumed: they do not change the weights trained
# so far. ``train.iters`` extends (or shortens) the schedule; the change is recorded in ``resumes.jsonl``.
RESUME_SAFE = ("name", "output_dir", "eval_limit", "train.iters", "train.stop_at", "train.checkpoint_every",
               "train.progress", "train.log_every", "train.num_workers", "train.keep_checkpoints")


def config_changes(old: Any, new: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (old, new)}`` for every leaf that differs between two plain-JSON configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, tuple[Any, Any]] = {}
        for k in sorted(set(old) | set(new), key=str):
            out.update(config_changes(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {} if old == new else {prefix: (old, new)}


def _plain(run: RunConfig) -> dict:
    return json.loads(json.dumps(run.to_dict(), default=str))


def check_resume(run: RunConfig) -> dict[str, tuple[Any, Any]]:
    """The safe changes of ``run`` against its saved ``config.json``; any other difference is a
    :class:`ConfigError` listing every one (a resumed run would otherwise claim settings it did not train with)."""
    saved_path = Path(run.output_dir) / "config.json"
    if not saved_path.is_file():
        return {}
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--resume: cannot read {saved_path}: {exc}") from exc
    changes = config_changes(saved, _plain(run))
    unsafe = {k: v for k, v in changes.items() if k not in RESUME_SAFE}
    if unsafe:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in unsafe.items())
        raise ConfigError(f"--resume: the requested config differs from {saved_path} in {listed}. Only "
                          f"{', '.join(RESUME_SAFE)} may change on resume; use a new output_dir for the rest")
    return changes


def train_run(run: RunConfig, resume: bool = False, evaluate_after: bool = False) -> dict:
    """Train ``run`` into its output directory (held with a lock file, so a second trainer fails clearly);
    with ``resume``, continue from the latest checkpoint after checking the config against the saved one."""
    import time

    from ..io import RunLock
    from .results import environment
    from .train import fit

    out = Path(run.output_dir)
    changes = check_resume(run) if resume else {}
    dataset = build_run_dataset(run, "train")  # fail fast on data problems, before building the model
    model = build_run_model(run)
    primary = int(os.environ.get("RANK", "0")) == 0
    with RunLock(out) if primary else contextlib.nullcontext():
        if primary:
            write_json_atomic(out / "config.json", run.to_dict())
            if changes:
                entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "changed": {k: {"from": a, "to": b} for k, (a, b) in changes.items()}}
                with open(out / "resumes.jsonl", "a") as f:
                    f.write(json.dumps(entry, default=str) + "\n")
        record = {"run": run.name, "config": run.to_dict(), "environment": environment(),
                  "resume_changes": {k: list(v) for k, v in changes.items()}}
        summary = fit(model, dataset, run.train, out, resume=resume, record=record)
    result = {"train": summary}
    if evaluate_after:
        result["evaluation"] = evaluate_run(run, checkpoint=out / "checkpoints", model=model)
    return result


def evaluate_run(run: RunConfig, checkpoint: str | Path | None = None, model=None, official: str | None = None,
                 result_path: str | Path | None = None, progress: bool = True) -> dict:
    """Evaluate a run's model (its latest checkpoint, a given checkpoint, or an official .pth) and write JSON."""
    from .checkpoint import latest_checkpoint, load_weights
    from .evaluate import evaluate
    from .results import environment, expected_nulls

    from ..io import check_writable

    cfg = run.model_config()
    path = Path(result_path) if result_path else Path(run.output_dir) / "result.json"
    check_writable(path)  # fail before the evaluation, not after it
    dataset = build_run_dataset(run, "eval")
    if official is not None:
        from ..model.official import load_official_checkpoint

        model = load_official_checkpoint(official, dataset=cfg.name, text_embeddings=run.text_embeddings,
                                         setting=cfg.setting)
        source = str(official)
    else:
        ckpt = Path(checkpoint) if checkpoint is not None else Path(run.output_dir)
        if not (ckpt / "state.json").is_file() and not ckpt.is_file():
            root = ckpt.parent if ckpt.name == "checkpoints" else ckpt
            found = latest_checkpoint(root)
            if found is None:
                raise FileNotFoundError(f"no checkpoint in {root / 'checkpoints'}")
            ckpt = found
        if model is None:
            model = build_run_model(run)
        load_weights(model, ckpt)
        source = str(ckpt)
    # fully supervised: every class is trained (and calibrated) as seen, but mIoU(S)/mIoU(U) are still reported
    # over the dataset's zero-shot split, as the paper's "fully supervised" rows are
    from ..model.factory import resolve_split

    groups = resolve_split(dataclasses.replace(cfg, setting="inductive")) if cfg.setting == "fully" else None
    metrics = evaluate(model, dataset, progress=progress, limit=run.eval_limit,
                       seen=list(groups.seen) if groups else None, unseen=list(groups.unseen) if groups else None)
    per_class = metrics.pop("per_class", None)
    result = {
        "run": run.name,
        "checkpoint": source,
        "config": run.to_dict(),
        "seed": run.train.seed,
        "metrics": {k: v for k, v in metrics.items() if k not in ("images", "seconds", "seconds_per_image", "confmat")},
        "per_class": per_class,
        "confmat": metrics.get("confmat"),
        "timings": {k: metrics[k] for k in ("images", "seconds", "seconds_per_image") if k in metrics},
        "environment": environment(),
    }
    write_json_atomic(path, result, expected=expected_nulls(result))  # absent classes have no IoU
    return result

