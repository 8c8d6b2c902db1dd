"""Batch reproduction: the experiment registry, one run per registry entry, papermill execution, report notebooks.

Data flows one way::

    notebooks/registry.yaml --expand--> entries --papermill notebooks/run.ipynb--> results/<profile>/runs/<id>.json
    results/ --papermill notebooks/table*.ipynb, figure*.ipynb--> book/generated/*.ipynb --jupyter-book--> _build/html

``python -m zegclip reproduce --profile mini`` does both phases. A run is skipped when its result JSON exists and
holds the same parameters and the same resolved configuration; a failed run is recorded (its executed notebook
kept under ``results/<profile>/failed/``) and the others go on; rerunning finishes what is missing.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..engine.checkpoint import write_json_atomic

PROFILES = ("mini", "paper")

# Parameters of notebooks/run.ipynb (its `parameters` cell holds the same names and defaults; a test checks it).
RUN_DEFAULTS: dict[str, Any] = {
    "profile": "mini",
    "dataset": "mini-voc",  # training preset/dataset: mini-voc, mini-coco, voc, coco, context
    "setting": "inductive",  # inductive | transductive (self-training, official †) | fully
    "self_training": None,  # transductive only: None/"dagger" (official †: unseen-GT pixels) or "all" (every unlabelled pixel)
    "variant": "DPT+NEL+RD",  # a Table 5 variant; DPT+NEL+RD is ZegCLIP
    "query_format": None,  # one of the 12 formats of Table 4 (None: the variant's own)
    "loss": None,  # el | plain | plus (None: the variant's own)
    "seed": 0,
    "iters": None,  # None: the profile's schedule
    "eval_dataset": None,  # cross-dataset evaluation (Table 7): evaluate the trained model on this dataset
    "negative_control": False,  # evaluate with the unseen classes' text embeddings replaced by random unit vectors
    "data_root": None,  # paper profile: folder holding VOCdevkit/, coco_stuff164k/, VOCdevkit/VOC2010 (Context)
    "weights": None,  # paper profile: CLIP ViT-B/16 weights file (or $ZEGCLIP_CLIP_WEIGHTS)
    "samples": 0,  # evaluation images whose prediction is saved as PNG (Figure 4)
    "quick": False,  # a few iterations with a random mini-CLIP: for tests
}
# The type of every run parameter (registry values are converted and checked against these, as run files are).
RUN_TYPES: dict[str, Any] = {
    "profile": str, "dataset": str, "setting": str, "self_training": str | None, "variant": str,
    "query_format": str | None, "loss": str | None, "seed": int, "iters": int | None, "eval_dataset": str | None,
    "negative_control": bool, "data_root": str | None, "weights": str | None, "samples": int, "quick": bool,
}
REPORTS = ("calibration", "table2", "table3", "table4", "table5", "table6", "table7", "figure1", "figure4", "figure5")
LEARN = ("walkthrough",)


# ------------------------------------------------------------------------------------------------ project
def project_root(start: str | Path | None = None) -> Path:
    """The zegclip project that the experiments belong to: the folder holding ``notebooks/registry.yaml``.

    ``start`` when given, else ``$ZEGCLIP_PROJECT``, else the working directory or the nearest of its parents that
    holds a registry. Never the installed package's own location: a ``pip install``-ed zegclip must not write
    notebooks into site-packages.
    """
    env = os.environ.get("ZEGCLIP_PROJECT")
    if start is not None or env:
        candidates = [Path(start if start is not None else env)]
    else:
        candidates = [Path.cwd(), *Path.cwd().parents]
    for c in candidates:
        if (c / "notebooks" / "registry.yaml").is_file():
            return c.resolve()
    raise FileNotFoundError(f"not inside a zegclip project: no notebooks/registry.yaml in {candidates[0]}"
                            f"{' or its parents' if len(candidates) > 1 else ''} (run from the checkout, or set "
                            "ZEGCLIP_PROJECT)")


def notebooks_dir(project: str | Path | None = None) -> Path:
    """``<project>/notebooks``: the registry, the run notebook and the report notebooks."""
    return project_root(project) / "notebooks"


def generated_dir(project: str | Path | None = None) -> Path:
    """``<project>/book/generated``: where the executed report notebooks go (the book reads them there)."""
    return project_root(project) / "book" / "generated"


# ------------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Entry:
    """One distinct run of the registry: a notebook and its complete parameters."""

    id: str
    notebook: str
    params: dict = field(hash=False)
    tables: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "runs" if self.notebook == "run" else self.notebook

    def result_path(self, results_dir: str | Path = "results") -> Path:
        return Path(results_dir) / self.params["profile"] / self.kind / f"{self.id}.json"


def load_registry(path: str | Path | None = None) -> dict:
    """Read and validate the registry YAML (default ``notebooks/registry.yaml``)."""
    path = Path(path) if path else notebooks_dir() / "registry.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"experiment registry not found: {path}")
    try:
        reg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(reg, dict) or not isinstance(reg.get("profiles"), dict) or not isinstance(reg.get("groups"), dict):
        raise ValueError(f"{path}: a registry needs `profiles` and `groups` mappings")
    for profile, groups in reg["groups"].items():
        if profile not in reg["profiles"]:
            raise ValueError(f"{path}: groups for unknown profile {profile!r}")
        for i, group in enumerate(groups or []):
            where = f"{path}: groups.{profile}[{i}]"
            unknown = sorted(set(group) - {"tables", "matrix", "params", "notebook"})
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}")
            tables = group.get("tables") or []
            bad = [t for t in tables if t not in REPORTS]
            if bad or not tables:
                raise ValueError(f"{where}: tables {bad or tables} not among {list(REPORTS)}")
            names = set((group.get("matrix") or {})) | set((group.get("params") or {}))
            known = _known_params(group.get("notebook", "run"))
            if known is not None and names - set(known):
                raise ValueError(f"{where}: unknown parameter(s) {sorted(names - set(known))}; known: {sorted(known)}")
            for key, values in (group.get("matrix") or {}).items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{where}: matrix.{key} must be a non-empty list")
    reg["_path"] = str(path)
    return reg


def _known_params(notebook: str) -> Iterable[str] | None:
    if notebook == "run":
        return RUN_DEFAULTS
    path = notebooks_dir() / f"{notebook}.ipynb"
    if not path.is_file():
        raise ValueError(f"registry names notebook {notebook!r}, but {path} does not exist")
    return [k for k in notebook_parameters(path) if k != "results_dir"]  # run_id: the entry's id


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default values of a notebook's `parameters` cell (papermill's reading of it)."""
    import papermill

    params = papermill.inspect_notebook(str(path))
    out = {}
    for name, spec in params.items():
        try:
            out[name] = eval(spec["default"], {}, {})  # literals written by us; papermill gives their source text
        except Exception:  # noqa: BLE001 - a non-literal default: keep its source text
            out[name] = spec["default"]
    return out


def _slug(text: str) -> str:
    table = {"*": "x", "+": "p", "-": "m", ",": "_", "|": "a", "[": "", "]": "", " ": "", "⊙": "x"}
    return "".join(table.get(ch, ch) for ch in str(text)).lower()


def normalise_params(params: dict) -> dict:
    """Parameters in canonical form, so that equal runs get equal ids.

    The variant name carries what it fixes: RD means "a query format other than ``t``", NEL means the ``plus`` loss.
    So ``DPT+NEL+RD`` with format ``t`` is ``DPT+NEL``, and a variant's own format/loss becomes ``None``.
    """
    from ..model.presets import variant_overrides
    from ..model.queries import DEFAULT_QUERY_FORMAT, canonical_format

    p = {**RUN_DEFAULTS, **params}
    unknown = sorted(set(p) - set(RUN_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown run parameter(s) {unknown}; known: {sorted(RUN_DEFAULTS)}")
    from ..typed import ConfigError, convert

    p = {k: convert(v, RUN_TYPES[k], f"run parameter {k}") for k, v in p.items()}
    for key, low in (("seed", 0), ("iters", 1), ("samples", 0)):
        if p[key] is not None and p[key] < low:
            raise ConfigError(f"run parameter {key}: {p[key]} is below the minimum {low}")
    if p["setting"] not in ("inductive", "transductive", "fully"):
        raise ValueError(f"unknown setting {p['setting']!r}; use inductive, transductive or fully")
    if p["loss"] is not None and p["loss"] not in ("el", "plain", "plus"):
        raise ValueError(f"unknown loss {p['loss']!r}; use el, plain or plus")
    if p["self_training"] not in (None, "dagger", "all"):
        raise ValueError(f"unknown self_training {p['self_training']!r}; use dagger (official) or all")
    if p["self_training"] is not None and p["setting"] != "transductive":
        raise ValueError(f"self_training={p['self_training']!r} needs setting=transductive, not {p['setting']!r}")
    p["self_training"] = None if p["self_training"] == "dagger" else p["self_training"]
    own = variant_overrides(p["variant"])  # validates the name
    encoder = own["encoder"]["mode"]
    fmt = canonical_format(p["query_format"]) if p["query_format"] is not None else own["query_format"]
    loss = p["loss"] or own["loss"]["kind"]
    name = {"fix": "Fix", "ft": "FT", "dpt": "DPT"}[encoder] + ("+NEL" if loss == "plus" else "") + \
        ("+RD" if fmt != "t" else "")
    p["variant"] = name
    p["query_format"] = None if fmt in ("t", DEFAULT_QUERY_FORMAT) else fmt
    p["loss"] = None if loss in ("plus", "el") else loss
    if p["loss"] == "plain" and "+NEL" not in name:  # plain sigmoid loss: record it on the NEL spelling
        p["variant"] = name.replace(("+RD" if "+RD" in name else "@"), "+NEL+RD") if "+RD" in name else name + "+NEL"
    return p


def run_id(params: dict) -> str:
    """A readable id from the parameters that change a run's result, e.g. ``mini-voc-dpt-nel-rd-inductive-s0``."""
    p = normalise_params(params)
    parts = [p["dataset"], p["variant"].lower().replace("+", "-"), p["setting"]]
    if p["self_training"]:
        parts.append("st-" + p["self_training"])
    if p["query_format"] is not None:
        parts.append("q" + _slug(p["query_format"]))
    if p["loss"] is not None:
        parts.append(p["loss"])
    if p["iters"] is not None:
        parts.append(f"i{p['iters']}")
    if p["eval_dataset"]:
        parts.append("to-" + p["eval_dataset"])
    if p["negative_control"]:
        parts.append("random-unseen-text")
    parts.append(f"s{p['seed']}")
    return "-".join(parts)


def expand(profile: str, only: Iterable[str] | None = None, registry: dict | str | Path | None = None) -> list[Entry]:
    """The distinct runs of ``profile`` (optionally only those read by the tables in ``only``), in registry order."""
    reg = registry if isinstance(registry, dict) else load_registry(registry)
    if profile not in reg["profiles"]:
        raise ValueError(f"unknown profile {profile!r}; registry profiles: {sorted(reg['profiles'])}")
    only = set(only or ())
    bad = only - set(REPORTS)
    if bad:
        raise ValueError(f"unknown table/figure {sorted(bad)}; known: {list(REPORTS)}")
    defaults = dict(reg["profiles"][profile].get("defaults") or {})
    entries: dict[str, Entry] = {}
    for group in reg["groups"].get(profile) or []:  # all groups first: a run's params merge over every table
        tables = tuple(group["tables"])
        notebook = group.get("notebook", "run")
        matrix = group.get("matrix") or {}
        keys = list(matrix)
        for combo in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
            params = {"profile": profile, **(defaults if notebook == "run" else {}), **(group.get("params") or {}),
                      **dict(zip(keys, combo))}
            if notebook == "run":
                params = normalise_params(params)
                ident = run_id(params)
            else:
                params = {"profile": profile, **params}
                ident = params.pop("run_id", None) or notebook + "-" + "-".join(
                    _slug(f"{k}{v}") for k, v in sorted(params.items()) if k != "profile")
            if ident in entries:  # listed by several groups: one run serves them all
                old = entries[ident]
                merged = dict(old.params)
                if "samples" in merged:
                    merged["samples"] = max(merged["samples"], params.get("samples", 0))
                entries[ident] = Entry(ident, notebook, merged, tuple(dict.fromkeys(old.tables + tables)))
            else:
                entries[ident] = Entry(ident, notebook, params, tables)
    return [e for e in entries.values() if not only or only & set(e.tables)]


def runs_for(profile: str, table: str, registry: dict | str | Path | None = None) -> list[Entry]:
    """The registry entries that the table/figure ``table`` reads."""
    return [e for e in expand(profile, [table], registry) if table in e.tables]


# ------------------------------------------------------------------------------------------- one run
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
    iters = p["iters"] or mx.MINI_TRAIN["iters"]
    if p["quick"]:
        iters = min(iters, 4)
        data["options"] = {"size": 16, "seed": 0}
    spec = mx.mini_run_config(p["dataset"], p["variant"], setting=p["setting"], seed=p["seed"], iters=iters,
                              model=model, train=train, data=data, out_root=out_root, name=_dir_name(p))
    # the half-way checkpoint of an inductive run initialises self-training (as the official ST schedule)
    spec["train"]["checkpoint_every"] = max(1, iters // 2)
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
    name = _dir_name(p)
    spec["name"], spec["output_dir"] = name, str(Path(out_root) / name)
    spec["train"]["checkpoint_every"] = max(1, spec["train"]["iters"] // 2) if p["setting"] == "inductive" else None
    return spec


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
    spec["data"] = {**spec["data"], "dataset": target}
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

    p = normalise_params(params)
    ident = run_id_ or run_id(p)
    runs_root = Path(runs_root) if runs_root is not None else runs_root_for(results_dir)
    spec = run_spec(p, runs_root)
    if p["quick"] and not ident.endswith("-quick"):  # never mixes with real runs
        ident += "-quick"
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
        result["samples"] = save_samples(evaluated, final, Path(results_dir) / p["profile"], ident, p["samples"])
    from ..engine.results import expected_nulls

    result = _json_ready(result)
    write_json_atomic(path, result, expected=expected_nulls(result))
    return result


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


def save_samples(run, checkpoint, profile_dir: Path, ident: str, count: int) -> list[dict]:
    """Predictions on the first ``count`` evaluation images as palette PNGs; images and labels once per dataset."""
    import numpy as np
    import torch
    from PIL import Image

    from ..engine.checkpoint import load_weights
    from ..data.transforms import normalization_stats
    from ..engine.run import build_run_dataset, build_run_model

    model = build_run_model(run)
    load_weights(model, checkpoint)
    model.eval()
    dataset = build_run_dataset(run, "eval")
    mean, std = normalization_stats(run.model_config().normalization)
    data_dir = profile_dir / "samples" / run.data.dataset
    pred_dir = profile_dir / "samples" / ident
    data_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    palette = _palette()
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


def _palette() -> list[int]:
    """A fixed 256-entry palette: class c gets a distinct colour, 255 (ignore) is white."""
    import colorsys

    pal = []
    for c in range(256):
        if c == 255:
            pal += [255, 255, 255]
            continue
        h = (c * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.65 + 0.35 * ((c // 7) % 2), 0.95 - 0.3 * ((c // 3) % 2))
        pal += [int(r * 255), int(g * 255), int(b * 255)]
    return pal


# ----------------------------------------------------------------------------------------- batch execution
def is_done(entry: Entry, results_dir: str | Path) -> bool:
    """Whether ``entry``'s result exists for the same parameters (and, for runs, the same resolved config)."""
    path = entry.result_path(results_dir)
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return False
    if not isinstance(old, dict):
        return False
    from ..engine.results import result_problem

    if entry.notebook == "run" and result_problem(old, "runs", entry.id) is not None:
        return False  # the reports would leave it out: run it again
    if entry.notebook != "run":
        return old.get("params", {}) == {**old.get("params", {}), **entry.params}
    if {**RUN_DEFAULTS, **(old.get("params") or {})} != {k: entry.params[k] for k in RUN_DEFAULTS}:
        return False
    from ..engine.run import run_from_dict

    spec = run_spec(entry.params, runs_root_for(results_dir))
    if entry.params["eval_dataset"]:
        spec = eval_spec(entry.params, spec)
    config = json.loads(json.dumps(run_from_dict(spec).to_dict(), default=str))
    return old.get("config") == config


def _ipc_kernel_manager():
    """A jupyter_client kernel manager whose kernels talk over IPC (Unix sockets in the Jupyter runtime folder,
    beside the connection file) instead of TCP ports. ipykernel warns at every start that a TCP kernel without
    CurveZMQ keys sends everything in plain text; a local batch job needs no network socket, so the cause goes."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    return IPCKernelManager


def execute_notebook(source: Path, output: Path, parameters: dict, cwd: Path | None = None) -> None:
    """Run a notebook with papermill (kernel: this Python, over IPC), writing the executed copy to ``output``."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=_kernel_name(),
                                   progress_bar=False, cwd=str(cwd or Path.cwd()), log_output=False,
                                   kernel_manager_class=_ipc_kernel_manager())
    finally:
        if output.is_file():
            _hide_injected(output)


def _hide_injected(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so that the book does not render it."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            changed = True
    if changed:
        from ..io import atomic_path

        with atomic_path(path) as tmp:
            nbformat.write(nb, str(tmp))


def _kernel_name() -> str:
    """A kernelspec that runs this interpreter (installed once per environment, user-level)."""
    name = "zegclip-python"
    spec_dir = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
    kernel_json = spec_dir / "kernel.json"
    want = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (zegclip)", "language": "python"}
    if not kernel_json.is_file() or json.loads(kernel_json.read_text()) != want:
        spec_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(kernel_json, want)
    return name


def reproduce(profile: str = "mini", only: Iterable[str] | None = None, jobs: int = 1, results_dir: str | Path = "results",
              runs_only: bool = False, reports_only: bool = False, force: bool = False, quick: bool = False,
              generated: str | Path | None = None, registry: str | Path | None = None) -> dict:
    """Execute the registry's runs for ``profile`` (skipping finished ones), then its report notebooks."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    entries = expand(profile, only, registry)
    results_dir = Path(results_dir)
    summary: dict[str, Any] = {"profile": profile, "ran": [], "skipped": [], "failed": {}, "reports": {}}
    if not reports_only:
        todo = []
        for e in entries:
            if quick:  # tiny runs under their own ids: never mixed with real results
                e = Entry(e.id + "-quick", e.notebook, {**e.params, "quick": True}, e.tables)
            if not force and is_done(e, results_dir):
                summary["skipped"].append(e.id)
            else:
                todo.append(e)
        if todo and profile == "mini" and not quick:
            from ..mini.miniclip import ensure_mini_clip

            ensure_mini_clip()  # once, in this process with every core, before the runs start
        # runs side by side share the cores (their kernels inherit this); only while runs execute, so that the
        # report notebooks and the walkthrough get every core again
        threads_before = os.environ.get("OMP_NUM_THREADS")
        if jobs > 1 and todo and threads_before is None:
            os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // jobs))
        bar = tqdm(total=len(todo), desc=f"reproduce {profile}", unit="run", dynamic_ncols=True)

        def one(e: Entry):
            t0 = time.perf_counter()
            err = _run_entry(e, results_dir, force)
            return e, err, time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for e, err, seconds in pool.map(one, todo):
                if err:
                    summary["failed"][e.id] = err
                    tqdm.write(f"FAILED {e.id}: {err}")
                else:
                    summary["ran"].append(e.id)
                bar.set_postfix(last=f"{e.id} {seconds:.0f}s")
                bar.update(1)
        bar.close()
        if threads_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    if not runs_only:
        generated = Path(generated) if generated is not None else generated_dir()
        tables = [t for t in REPORTS if not only or t in set(only)]
        learn = [] if only else list(LEARN)
        if learn and profile == "mini" and not quick:
            from ..mini.miniclip import ensure_mini_clip

            # the walkthrough builds a mini model: pretrain here (all cores, a progress bar in the terminal) rather
            # than silently inside its kernel, where `--jobs` may have left one thread
            ensure_mini_clip()
        for name in tables + learn:
            source = notebooks_dir() / f"{name}.ipynb"
            if not source.is_file():
                summary["reports"][name] = "missing"
                print(f"notebook {name:<12}      -  missing", flush=True)
                continue
            params = {"profile": profile, "results_dir": str(results_dir)} if name in REPORTS else {"profile": profile}
            if name in LEARN and quick:
                params["quick"] = True
            t0 = time.perf_counter()
            try:
                execute_notebook(source, Path(generated) / f"{name}.ipynb", params)
                summary["reports"][name] = "ok"
            except Exception as exc:  # noqa: BLE001 - recorded, the others go on
                summary["reports"][name] = f"failed: {_one_line(exc)}"
                summary["failed"][name] = summary["reports"][name]
            print(f"notebook {name:<12} {time.perf_counter() - t0:5.0f}s  {summary['reports'][name]}", flush=True)
    write_json_atomic(results_dir / profile / "reproduce.json", {**summary, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return summary


def _run_entry(entry: Entry, results_dir: Path, force: bool) -> str | None:
    """Execute one registry entry's notebook; on failure keep the executed notebook and return the error line."""
    profile_dir = results_dir / entry.params["profile"]
    failed_nb = profile_dir / "failed" / f"{entry.id}.ipynb"
    out = runs_root_for(results_dir) / entry.params["profile"] / "notebooks" / f"{entry.id}.ipynb"
    params = {**entry.params, "results_dir": str(results_dir), "run_id": entry.id}
    if entry.notebook == "run":
        params["force"] = force
    try:
        execute_notebook(notebooks_dir() / f"{entry.notebook}.ipynb", out, params)
    except Exception as exc:  # noqa: BLE001 - papermill raises PapermillExecutionError and kernel errors
        failed_nb.parent.mkdir(parents=True, exist_ok=True)
        if out.is_file():
            os.replace(out, failed_nb)
        return _one_line(exc)
    if failed_nb.is_file():
        failed_nb.unlink()
    if not entry.result_path(results_dir).is_file():
        return f"notebook finished but wrote no {entry.result_path(results_dir)}"
    return None


def _one_line(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


def status(profile: str, results_dir: str | Path = "results", only=None) -> list[tuple[str, bool]]:
    """(id, done) for every entry of the profile."""
    return [(e.id, is_done(e, results_dir)) for e in expand(profile, only)]


__all__ = ["Entry", "load_registry", "expand", "runs_for", "run_id", "execute_run", "reproduce", "is_done",
           "RUN_DEFAULTS", "REPORTS"]


# ------------------------------------------------------------------------------------------- the controls
