"""Instruments for calibrating the mini world: the patch oracle (the ceiling set by the patch grid) and linear
probes of patch features (what a frozen encoder makes available to the decoder).

Why these two. ZegCLIP's mask logit for class c at patch n is ``q_c . (W_k h_n + b_k)``: *linear* in the patch
feature ``h_n`` once the query is fixed. So a linear classifier on frozen patch features bounds what the
Baseline-Fix decoder can separate, and the patch oracle bounds what any model that predicts one label per patch
and upsamples it can reach. Both are scored with the same dataset-level confusion matrix as the models.

Example::

    >>> from zegclip.mini.diagnose import patch_oracle
    >>> round(patch_oracle("mini-voc", scenes=20)["mIoU"], 1) > 80
    True
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.metrics import SegmentationMetrics
from .cells import patch_labels
from .grammar import get_world
from .render import render_scene

__all__ = ["patch_labels", "patch_oracle", "probe_features", "linear_probe", "training_free", "query_scale"]


def _scenes(world, stream: int, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    imgs, labs = [], []
    for i in range(start, start + count):
        img, lab, _ = render_scene(world, stream, i)
        imgs.append(torch.from_numpy(img).permute(2, 0, 1))
        labs.append(torch.from_numpy(lab.astype(np.int64)))
    return torch.stack(imgs), torch.stack(labs)


def patch_oracle(world: str = "mini-voc", scenes: int = 300, stream: int = 1, patch: int = 8) -> dict:
    """Metrics of the patch-level oracle on scenes ``0..scenes-1`` of ``stream`` (the evaluation stream is 1).

    Each ``patch`` x ``patch`` cell gets the majority ground-truth label of its labelled pixels (the background
    is ignored by the metric, so this is the best single label for the cell), upsampled by nearest neighbour to
    pixels, and is scored like a model (pAcc, mIoU, mIoU(S), mIoU(U), hIoU). Not a strict upper bound for a
    model whose logits are upsampled bilinearly, but the resolution that an ``8 x 8`` grid allows.
    """
    w = get_world(world)
    metric = SegmentationMetrics(w.num_classes, seen=list(w.split.seen), unseen=list(w.split.unseen))
    for start in range(0, scenes, 100):
        _, lab = _scenes(w, stream, start, min(100, scenes - start))
        cells = patch_labels(lab, patch, w.num_classes, w.ignore_index, background=False)
        pred = cells.repeat_interleave(patch, 1).repeat_interleave(patch, 2)
        pred = torch.where(pred == w.ignore_index, torch.zeros_like(pred), pred)
        metric.update(pred, lab)
    out = metric.compute()
    out.pop("per_class", None)
    return {"world": w.name, "scenes": scenes, "stream": stream, "patch": patch, **out}


@torch.no_grad()
def probe_features(model, world, stream: int, count: int, where: str = "features", batch: int = 100):
    """Patch features of ``count`` scenes and their majority labels.

    ``where``: ``"features"`` (the L2-normalised patch embeddings H that the decoder reads), ``"block<i>"`` (the
    patch tokens after ViT block i, before ln_post) or ``"pixels"`` (the raw normalised patch pixels, a baseline).
    Returns (X (M, d) float32, y (M,) int64) over patches whose majority label is an object/stuff class.
    """
    w = get_world(world)
    patch = model.backbone.patch_size[0]
    xs, ys = [], []
    model.eval()
    for start in range(0, count, batch):
        imgs, labs = _scenes(w, stream, start, min(batch, count - start))
        images = model.normalize(imgs)
        cells = patch_labels(labs, patch, w.num_classes, w.ignore_index)
        if where == "pixels":
            feats = F.unfold(images, patch, stride=patch).transpose(1, 2)  # (B, N, 3 p^2)
        elif where == "features":
            f, _ = model.backbone(images)
            feats = f.flatten(2).transpose(1, 2)
        elif where.startswith("block"):
            trace: dict = {}
            model.backbone(images, trace=trace)
            n = cells.shape[1] * cells.shape[2]
            feats = trace["block_outputs"][int(where[5:])][:, -n:]
        else:
            raise ValueError(f"where must be 'features', 'pixels' or 'block<i>', got {where!r}")
        y = cells.flatten(1)
        keep = y != w.ignore_index
        xs.append(feats[keep].float())
        ys.append(y[keep])
    return torch.cat(xs), torch.cat(ys)


def linear_probe(model, world: str = "mini-voc", where: str = "features", train_scenes: int = 1000,
                 test_scenes: int = 300, steps: int = 300, seed: int = 0) -> dict:
    """Accuracy of a linear (multinomial logistic) classifier of a patch's class from its feature.

    Trained on scenes of the training stream 0, tested on the evaluation stream 1; features standardised with the
    training statistics; full-batch Adam (lr 0.05, ``steps`` steps, weight decay 1e-4). Reported over object and
    stuff patches: ``acc`` (class), and for thing classes ``colour_acc`` / ``shape_acc`` (the predicted class has
    the right colour / shape), which separate "colour learned" from "shape learned".
    """
    w = get_world(world)
    x_tr, y_tr = probe_features(model, w, 0, train_scenes, where)
    x_te, y_te = probe_features(model, w, 1, test_scenes, where)
    mean, std = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lin = torch.nn.Linear(x_tr.shape[1], w.num_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05, weight_decay=1e-4)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(lin(x_tr), y_tr).backward()
            opt.step()
    with torch.no_grad():
        pred = lin(x_te).argmax(1)
        train_acc = (lin(x_tr).argmax(1) == y_tr).float().mean().item()
    attrs = [w.attributes(c) for c in range(w.num_classes)]
    things = torch.tensor([w.kind(c) == "thing" for c in range(w.num_classes)])
    is_thing = things[y_te]
    colour_ok = torch.tensor([attrs[p][0] == attrs[t][0] for p, t in zip(pred.tolist(), y_te.tolist())])
    shape_ok = torch.tensor([attrs[p][1] == attrs[t][1] for p, t in zip(pred.tolist(), y_te.tolist())])
    pct = lambda m: round(100.0 * m.float().mean().item(), 2) if m.numel() else float("nan")  # noqa: E731
    return {
        "world": w.name, "where": where, "dim": int(x_tr.shape[1]), "train_patches": int(len(y_tr)),
        "test_patches": int(len(y_te)), "train_acc": round(100 * train_acc, 2), "acc": pct(pred == y_te),
        "colour_acc": pct(colour_ok[is_thing]), "shape_acc": pct(shape_ok[is_thing]),
    }


@torch.no_grad()
def query_scale(preset: str = "mini-voc", formats: tuple[str, ...] = ("t", "t*g", "[t*g,t]", "t-g", "t+g"),
                scenes: int = 8, seed: int = 0, random_clip: bool = False) -> dict[str, dict[str, float]]:
    """How large, and how different across classes, each query format's class queries are *at initialisation*.

    Per format: a model of ``preset`` built as training starts it (``torch.manual_seed(seed)``; the packaged
    mini-CLIP unless ``random_clip``), run in eval mode on the first ``scenes`` evaluation scenes. Returns, each a
    mean over scenes and classes: ``descriptor norm`` (the L2 norm of the un-projected query input, (B, C, k*d)),
    ``query norm`` (after the learnable projection) and ``class spread`` (the norm of the per-dimension std of the
    queries across classes: how far apart the decoder's classes start).

    Why: t and g are L2-normalised, so ``t*g`` has norm ``|t*g| <= 1`` and about ``1/sqrt(d)`` when their mass is
    spread over the d dimensions; its queries then start as the projection's bias plus a small class term, nearly
    equal for every class. A format whose queries start alike must be learned apart by the common learning rate.
    """
    from ..model.factory import build_model
    from .dataset import MiniSegmentation

    out = {}
    dataset = None
    for fmt in formats:
        torch.manual_seed(seed)
        model = build_model(preset, query_format=fmt, random_init=random_clip).eval()
        dataset = dataset or MiniSegmentation(model.cfg.split, "val")
        sums = {"descriptor norm": 0.0, "query norm": 0.0, "class spread": 0.0}
        with torch.no_grad():
            for i in range(scenes):
                t = model.intermediates(model.normalize(dataset[i]["image"].unsqueeze(0)))
                sums["descriptor norm"] += t["descriptor"].norm(dim=-1).mean().item()
                sums["query norm"] += t["queries"].norm(dim=-1).mean().item()
                sums["class spread"] += t["queries"].std(dim=1).norm(dim=-1).mean().item()
        out[fmt] = {k: round(v / scenes, 4) for k, v in sums.items()}
    return out


def training_free(model, world=None, scenes: int = 300, stream: int | None = None, batch: int = 100) -> dict:
    """Training-free segmentation by the frozen CLIP: every patch token against every class's text embedding.

    No decoder, no prompts, no training: the cosine of each L2-normalised projected patch token (``features`` of
    the backbone, built with ``encoder={"mode": "fix"}``) with each class embedding of the model (its preset's
    templates), resized bilinearly to pixels, argmax over **all** classes, scored like a model on scenes
    ``0..scenes-1`` of ``stream`` (default the calib stream of seed 0, where the mini world's settings are chosen).
    What raw CLIP's patch tokens give without any adaptation: the alignment dial of the mini-CLIP is set by it.
    Returns pAcc, mIoU, mIoU(S), mIoU(U), hIoU and the per-class IoU.
    """
    from .dataset import MiniSegmentation

    w = get_world(world or model.cfg.split)
    stream = MiniSegmentation.CALIB_STREAM if stream is None else stream  # calib stream of seed 0
    metric = SegmentationMetrics(w.num_classes, seen=list(w.split.seen), unseen=list(w.split.unseen))
    model.eval()
    text = model.class_embeddings.float()
    for start in range(0, scenes, batch):
        imgs, labs = _scenes(w, stream, start, min(batch, scenes - start))
        feats, _ = model.backbone(model.normalize(imgs))  # (B, D, h, w), unit norm along D
        logits = torch.einsum("bdhw,cd->bchw", feats.float(), F.normalize(text, dim=-1))
        logits = F.interpolate(logits, size=labs.shape[-2:], mode="bilinear", align_corners=False)
        metric.update(logits.argmax(1), labs)
    out = metric.compute()
    return {"world": w.name, "scenes": scenes, "stream": stream,
            **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()}}


def diagnose(preset: str = "mini-voc", probes: tuple[str, ...] | None = None, progress: bool = False,
             train_scenes: int = 1000, test_scenes: int = 300, random_clip: bool = False) -> dict:
    """The instruments of the mini world for one preset, on the packaged mini-CLIP: the patch oracle on the
    evaluation scenes, linear probes of the frozen patch features (``features`` = what the decoder reads, each
    ViT block's patch tokens, and raw pixels as a baseline), the same probes on a random-init mini-CLIP (the floor)
    and the mini-CLIP's image-level zero-shot accuracy."""
    from tqdm.auto import tqdm

    from ..model.factory import build_model
    from .miniclip import ensure_mini_clip

    if random_clip:  # tests: a random-init mini-CLIP stands in for the pretrained one (no zero-shot record)
        path, record = Path("random-init"), {"seconds_total": 0.0, "zero_shot": {}}
        model = build_model(preset, random_init=True, encoder={"mode": "fix"})
    else:
        path, record = ensure_mini_clip(progress=progress)
        model = build_model(preset, encoder={"mode": "fix"})
    world = model.cfg.split
    blocks = len(model.backbone.vit.transformer.resblocks)
    probes = probes or ("pixels", *(f"block{i}" for i in range(blocks)), "features")
    from ..engine.results import environment
    from .render import GENERATOR_VERSION

    out = {"preset": preset, "mini_clip": {"weights": path.name, "generator_version": GENERATOR_VERSION,
                                           "pretrain_seconds": record["seconds_total"]},
           "oracle": patch_oracle(world, scenes=test_scenes), "zero_shot": record["zero_shot"], "probes": {},
           "training_free": training_free(model, scenes=test_scenes),
           "environment": environment()}
    sizes = dict(train_scenes=train_scenes, test_scenes=test_scenes)
    for where in tqdm(probes, desc="linear probes", disable=not progress):
        out["probes"][where] = linear_probe(model, world, where, **sizes)
    # The floor: the same probes on a randomly initialised mini-CLIP (what the architecture gives without
    # pretraining). Pretraining earns only what lies above it.
    floor = build_model(preset, random_init=True, encoder={"mode": "fix"})
    out["floor"] = {where: linear_probe(floor, world, where, **sizes) for where in ("block1", "features")}
    return out


def diagnose_mini_clip(cfg=None, presets: tuple[str, ...] = ("mini-voc", "mini-coco"), train_scenes: int = 1000,
                       test_scenes: int = 300, progress: bool = False) -> dict:
    """The instruments of one mini-CLIP (a :class:`~zegclip.mini.miniclip.PretrainConfig`, pretrained and cached when
    absent), for choosing its dials: per preset the training-free mIoU (:func:`training_free`, calib stream) and
    the linear probe of the frozen ``features`` (:func:`linear_probe`), and the image-level zero-shot top-1 of its
    pretraining record. Nothing here reads a ZegCLIP result."""
    from ..model.factory import build_model
    from .miniclip import DIALS, PretrainConfig, ensure_mini_clip

    cfg = cfg or PretrainConfig()
    path, record = ensure_mini_clip(cfg, progress=progress)
    out = {"key": cfg.key(), "weights": path.name, "dials": {d: getattr(cfg, d) for d in DIALS},
           "steps": cfg.steps, "pretrain_seconds": record["seconds_total"], "torch_threads": record["torch_threads"],
           "zero_shot": {w: {k: z[k] for k in ("all", "seen", "unseen")} for w, z in record["zero_shot"].items()},
           "presets": {}}
    for preset in presets:
        model = build_model(preset, weights=str(path), encoder={"mode": "fix"})
        free = training_free(model, scenes=test_scenes)
        probe = linear_probe(model, preset, "features", train_scenes=train_scenes, test_scenes=test_scenes)
        out["presets"][preset] = {"training_free": {k: free[k] for k in ("mIoU", "mIoU(S)", "mIoU(U)", "pAcc")},
                                  "probe": {k: probe[k] for k in ("acc", "colour_acc", "shape_acc")}}
    return out


def attribute_accuracy(world, confmat) -> dict:
    """Pixel accuracy of the class, of its colour (tint) and of its shape (texture), from a confusion matrix
    (rows: ground truth). "Colour learned, shape not" shows as colour accuracy near 100 with shape accuracy far
    below it."""
    w = get_world(world)
    cm = torch.as_tensor(confmat, dtype=torch.float64)
    attrs = [w.attributes(c) for c in range(w.num_classes)]
    total = cm.sum().clamp_min(1)

    def share(k: int) -> float:  # pixels whose predicted class has the true class's attribute k
        agree = torch.tensor([[a[k] == b[k] for b in attrs] for a in attrs], dtype=torch.float64)
        return round(100 * float((cm * agree).sum() / total), 2)

    return {"acc": round(100 * float(cm.diagonal().sum() / total), 2), "colour_acc": share(0), "shape_acc": share(1)}


def diagnosis_frame(results_dir: str | Path = "results"):
    """The diagnosis records ``<results>/mini/diagnosis/<preset>.json`` as (a probe table with one row per preset
    and feature site, one summary line per record: its mini-CLIP, patch oracle and zero-shot top-1)."""
    import pandas as pd

    rows, lines = [], []
    for path in sorted((Path(results_dir) / "mini" / "diagnosis").glob("*.json")):
        d = json.loads(path.read_text())
        for where, pr in d["probes"].items():
            rows.append({"preset": d["preset"], "features": where, "class acc": pr["acc"],
                         "colour acc": pr["colour_acc"], "shape acc": pr["shape_acc"], "train acc": pr["train_acc"]})
        for where, pr in (d.get("floor") or {}).items():  # random-init mini-CLIP: the floor
            rows.append({"preset": d["preset"], "features": f"{where} (random init)", "class acc": pr["acc"],
                         "colour acc": pr["colour_acc"], "shape acc": pr["shape_acc"], "train acc": pr["train_acc"]})
        o, clip = d["oracle"], d["mini_clip"]
        free = f"training-free mIoU {d['training_free']['mIoU']:.1f}; " if "training_free" in d else ""
        lines.append(f"**{d['preset']}** (mini-CLIP `{clip['weights']}`, generator v{clip['generator_version']}): "
                     f"patch oracle mIoU **{o['mIoU']:.1f}**, pAcc {o['pAcc']:.1f}; {free}zero-shot top-1 "
                     + ", ".join(f"{w} seen {z['seen']:.1f} / unseen {z['unseen']:.1f}" for w, z in d["zero_shot"].items()))
    return pd.DataFrame(rows), lines
