"""Measurement: the benchmarked models (subjects), the timed phases of one method, and the run that writes the
result JSON."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from .config import DEFAULT_PARAMS, FORMAT, BenchConfig, quick_overrides, resolve, result_path
from .efficiency import PeakMemory, count_macs, parameter_counts, time_call


@dataclass
class Subject:
    """One benchmarked method: the model, how to run one image, and facts for the table."""

    name: str
    label: str
    stage: str  # "one-stage" | "two-stage"
    dataset: str
    model: torch.nn.Module
    classes: int
    tokens: int | None
    notes: str = ""


def build_subject(name: str, cfg: BenchConfig) -> Subject:
    """The model of method ``name`` with random weights (on the CPU, in eval mode; the caller moves it)."""
    from ...model.factory import build_model, resolve_split
    from .twostage import build_two_stage

    overrides = quick_overrides(cfg.size) if cfg.quick else {"clip": {"image_size": cfg.size}}
    dataset = name.split("-")[-1]
    if name in ("voc", "coco"):
        from ...model.presets import get_config

        mcfg = get_config(name, **overrides)
        classes = resolve_split(mcfg).num_classes
        dim = mcfg.clip.model_config()["embed_dim"]
        text = torch.nn.functional.normalize(torch.randn(classes, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
        model = build_model(mcfg, random_init=True, text_embeddings=text)
        T = model.backbone.num_prompts
        grid = (cfg.size // model.backbone.patch_size[0]) ** 2
        label = f"ZegCLIP {name.upper()} (T={T}, {classes} classes)"
        return Subject(name, label, "one-stage", dataset, model, classes, 1 + T + grid)
    model = build_two_stage(dataset, proposals=cfg.proposals, crop_size=cfg.crop, **overrides)
    grid = (cfg.size // model.proposer.patch_size[0]) ** 2
    label = f"two-stage {dataset.upper()} (N={cfg.proposals} proposals, {cfg.crop}² crops)"
    notes = (f"stage 1: ViT ({model.cfg.proposal_encoder}) + mask decoder with {cfg.proposals} learned queries; "
             f"stage 2: frozen CLIP image encoder on {cfg.proposals} crops of {cfg.crop}x{cfg.crop}")
    return Subject(name, label, "two-stage", dataset, model, model.num_classes, 1 + grid, notes)


def _autocast(cfg: BenchConfig):
    dev = torch.device(cfg.device)
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")


def _images(batch: int, hw: tuple[int, int], cfg: BenchConfig, seed: int = 0) -> torch.Tensor:
    x = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(seed)).to(cfg.device)
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def make_train_step(model: torch.nn.Module, images: torch.Tensor, cfg: BenchConfig,
                    forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[[], None]:
    """One ZegCLIP optimiser step as the training loop does it (``zegclip.engine.train.fit``), as a closure.

    Official optimiser (AdamW over the trainable parameters only, :func:`zegclip.engine.train.param_groups`), official
    loss, inductive targets built once from random full-space labels (B, H, W). Returns the closure; each call
    returns nothing and leaves the gradients cleared.
    """
    from ...model.losses import build_loss
    from ...engine.train import Labeler, TrainConfig, param_groups

    forward = model if forward is None else forward  # not `or`: a compiled module has no truth value (len())
    tcfg = TrainConfig()
    model.train()
    labels = torch.randint(0, model.num_classes, (images.shape[0], *images.shape[-2:]),
                           generator=torch.Generator().manual_seed(1)).to(images.device)
    target = Labeler(model, tcfg)(labels)
    criterion = build_loss(model.cfg.loss)
    optimizer = torch.optim.AdamW(param_groups(model, tcfg), lr=tcfg.lr, weight_decay=tcfg.weight_decay)

    def step() -> None:
        with _autocast(cfg):
            logits = forward(images)
        loss = criterion(logits.float(), target)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _phase(fn: Callable[[], Any], images_per_call: int, cfg: BenchConfig) -> dict[str, Any]:
    with PeakMemory(cfg.device) as mem:
        timing = time_call(fn, cfg.device, cfg.repeats, cfg.warmup)
    ms = timing["median_ms"]
    return {"batch": images_per_call, **timing, "ms_per_image": ms / images_per_call,
            "images_per_s": images_per_call * 1000.0 / ms, "peak_memory_bytes": mem.bytes, "peak_memory_kind": mem.kind}


def bench_method(name: str, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement of one method (a JSON-ready dict)."""
    t0 = time.perf_counter()
    subject = build_subject(name, cfg)
    model = subject.model.to(cfg.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    counts = parameter_counts(model)
    crop1 = _images(1, (cfg.size, cfg.size), cfg)
    model.eval()
    if subject.stage == "two-stage":
        breakdown = model.mac_breakdown(crop1)
        macs, by_op = breakdown["macs"], None
    else:
        counted = count_macs(model, crop1)
        macs, by_op, breakdown = counted["macs"], counted["by_op"], None
    log(f"  {subject.label}: {counts['trainable_params']:,} trainable / {counts['total_params']:,} parameters, "
        f"{macs / 1e9:.4g} GMAC per {cfg.size}² crop")
    record: dict[str, Any] = {
        "method": name, "label": subject.label, "stage": subject.stage, "dataset": subject.dataset,
        "classes": subject.classes, "tokens": subject.tokens, "notes": subject.notes, **counts,
        "macs": macs, "gmac": macs / 1e9, "macs_by_op": by_op, "macs_breakdown": breakdown, "phases": {},
    }
    forward = torch.compile(model) if cfg.compile else model

    def infer(x: torch.Tensor) -> Callable[[], Any]:
        def call():
            with torch.no_grad(), _autocast(cfg):
                return forward(x)
        return call

    def run_phase(phase: str) -> dict[str, Any]:
        if phase == "forward":
            return _phase(infer(crop1), 1, cfg)
        if phase == "throughput":
            return _phase(infer(_images(cfg.batch, (cfg.size, cfg.size), cfg)), cfg.batch, cfg)
        if phase == "image":
            image = _images(1, cfg.image_size, cfg)
            if subject.stage == "one-stage":
                def call():
                    with torch.no_grad(), _autocast(cfg):  # as predict and evaluate call it (scores itself records a
                        return model.scores(image)  # graph with autograd on); slide windows, eager, not compiled
                windows = _windows(model, cfg.image_size)
            else:
                call, windows = infer(image), 1
            return {**_phase(call, 1, cfg), "windows": windows, "image_size": list(cfg.image_size)}
        step = make_train_step(model, _images(cfg.train_batch, (cfg.size, cfg.size), cfg, seed=1), cfg, forward)
        return _phase(step, cfg.train_batch, cfg)

    for phase in cfg.phases:
        if phase == "train" and subject.stage != "one-stage":
            record["phases"][phase] = {"skipped": "a two-stage method trains its stages separately"}
            continue
        model.eval()
        try:
            result = run_phase(phase)
        except torch.OutOfMemoryError as exc:  # recorded, and the other phases still run
            result = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            log(f"    {phase:<10} {result['error']}")
        else:
            log(f"    {phase:<10} batch {result['batch']:>3}: {result['median_ms']:10.1f} ms/call  "
                f"{result['images_per_s']:8.2f} images/s  peak {_mib(result['peak_memory_bytes'])}")
        record["phases"][phase] = result
    model.eval()
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def _windows(model, hw: tuple[int, int]) -> int:
    from ...model.segmentor import num_windows

    return num_windows(hw[0], model.cfg.slide_crop, model.cfg.slide_stride) * num_windows(
        hw[1], model.cfg.slide_crop, model.cfg.slide_stride)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def device_name(device: str) -> str:
    """A human name of the device: the GPU's name, or the CPU model (``/proc/cpuinfo``) with its core count."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} logical CPUs visible)"


def run_bench(params: dict[str, Any] | None = None, log: Callable[[str], None] = print, write: bool = True) -> dict:
    """Run the benchmark for ``params`` (keys of :data:`DEFAULT_PARAMS`), write the JSON, return the record."""
    from ...engine.results import environment

    given = dict(params or {})
    cfg = resolve(given)
    full_params = {**DEFAULT_PARAMS, **given}
    path = result_path(full_params["results_dir"], full_params["profile"], full_params["run_id"])
    previous_threads = torch.get_num_threads()
    if given.get("threads"):
        torch.set_num_threads(cfg.threads)
    try:
        t0 = time.perf_counter()
        load_before = _loadavg()
        log(f"zegclip bench on {device_name(cfg.device)} ({cfg.device}, {cfg.dtype}, {torch.get_num_threads()} "
            f"threads{', quick tiny model' if cfg.quick else ''}); load average {load_before}")
        methods = []
        for name in cfg.methods:
            methods.append(bench_method(name, cfg, log))  # the method's model is freed on return
            if torch.device(cfg.device).type == "cuda":
                torch.cuda.empty_cache()
        record = {
            "format": FORMAT, "run": full_params["run_id"], "profile": full_params["profile"],
            "params": full_params, "config": asdict(cfg),
            "device": {"type": torch.device(cfg.device).type, "name": device_name(cfg.device)},
            "dtype": cfg.dtype, "torch_threads": torch.get_num_threads(),
            "matmul_precision": torch.get_float32_matmul_precision(),
            "load_average": {"before": load_before, "after": _loadavg()},
            "environment": environment(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 3), "methods": methods,
        }
    finally:
        torch.set_num_threads(previous_threads)
    return write_record(path, record, write, log)


def write_record(path: Path, record: dict, write: bool, log: Callable[[str], None]) -> dict:
    """Write a bench record atomically to ``path`` (when ``write``), note the path in it, say so; return it."""
    from ...engine.checkpoint import write_json_atomic

    if write:
        write_json_atomic(path, record)
        record["_path"] = str(path)
        log(f"wrote {path}")
    return record


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
