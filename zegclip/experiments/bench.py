"""``python -m zegclip bench``: the efficiency benchmark behind Table 3 (and ``notebooks/bench.ipynb``).

For each method - ZegCLIP with the VOC preset (T = 10 prompts, 20 classes at test), the COCO preset (T = 100,
171 classes) and the two-stage comparator of :mod:`zegclip.experiments.twostage` - it measures, with random weights (cost
does not depend on weights):

* parameters: trainable and total (the CLIP text tower is left out: its embeddings are precomputed);
* MACs of one crop (``size`` x ``size``, batch 1) with the one counter of :mod:`zegclip.experiments.efficiency`;
* phases (``phases``; default all four on a GPU, ``forward,train`` on a CPU, where one two-stage image takes
  minutes): ``forward`` - latency of one crop at batch 1 (ms/image, FPS); ``throughput`` - crops at
  batch ``batch`` (images/s); ``image`` - one VOC-sized image (``size`` x ``4/3 size``, 512 x 683 at the
  default): slide-window inference for ZegCLIP (2 windows, as evaluation), one whole-image pass for the
  two-stage comparator; ``train`` - one optimiser step (forward, official focal + dice loss, backward, AdamW)
  at batch ``train_batch`` (ZegCLIP only: a two-stage method trains its stages separately);
* peak memory of every phase (:class:`zegclip.experiments.efficiency.PeakMemory`).

Timing protocol: ``warmup`` untimed calls, then the median of ``repeats`` timed calls, the device synchronised
around each. ``dtype`` ``"bf16"`` runs under ``torch.autocast`` (weights stay float32), ``"fp32"`` without;
``"auto"`` is bf16 on a GPU that supports it and fp32 elsewhere. ``compile`` wraps the model in ``torch.compile``
(forward, throughput and train phases), ``channels_last`` converts the model and inputs to channels-last.

The result is one JSON file, ``<results_dir>/<profile>/bench/<run_id>.json`` (written atomically), holding
``params`` (the notebook/CLI parameters, defaults filled in), ``config`` (the resolved settings), ``device``, ``dtype``,
``torch_threads``, ``environment`` (library versions) and ``methods`` (one record per method).
"""
from __future__ import annotations

import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from .efficiency import PeakMemory, count_macs, parameter_counts, time_call

FORMAT = "zegclip-bench/1"
METHODS = ("voc", "coco", "twostage-voc", "twostage-coco")
ALIASES = {"twostage": "twostage-voc"}
PHASES = ("forward", "throughput", "image", "train")

# the notebook's / CLI's parameters and their defaults (None = automatic, see `resolve`)
DEFAULT_PARAMS: dict[str, Any] = {
    "profile": "mini",
    "results_dir": "results",
    "run_id": "bench-cpu",
    "quick": False,
    "device": "auto",
    "methods": "voc,coco,twostage-voc",
    "phases": None,  # forward,throughput,image,train on a GPU; forward,train on a CPU (the two-stage forward is slow)
    "size": None,  # crop size: 512 (64 with quick)
    "batch": None,  # throughput batch: 16 on a GPU, 2 on a CPU
    "train_batch": None,  # training-step batch: 16 on a GPU, 2 on a CPU
    "repeats": None,  # timed calls: 20 on a GPU, 3 on a CPU
    "warmup": None,  # untimed calls first: 5 on a GPU, 1 on a CPU
    "dtype": "auto",  # auto | fp32 | bf16
    "proposals": None,  # two-stage: N proposals (100; 4 with quick)
    "crop": None,  # two-stage: proposal crop size (224; 32 with quick)
    "compile": False,
    "channels_last": False,
    "threads": None,  # torch threads (None: PyTorch's default)
}

# --quick: a tiny CLIP with the structure of ViT-B/16 (patch 16, [CLS], QuickGELU) - the same code path in seconds
QUICK_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 48, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def quick_overrides(size: int = 64) -> dict:
    """ZegCLIP config overrides for the tiny benchmark model (``quick``)."""
    return {"clip": {"model": "bench-quick", "config": QUICK_CLIP, "image_size": size},
            "decoder": {"dim": 32, "heads": 4, "ffn_dim": 64}, "mask_size": None,
            "slide_crop": size, "slide_stride": size * 3 // 4}


@dataclass(frozen=True)
class BenchConfig:
    """Resolved benchmark settings (every ``None`` of the parameters replaced)."""

    methods: tuple[str, ...]
    phases: tuple[str, ...]
    device: str
    dtype: str  # "float32" or "bfloat16"
    size: int
    image_size: tuple[int, int]
    batch: int
    train_batch: int
    repeats: int
    warmup: int
    proposals: int
    crop: int
    compile: bool
    channels_last: bool
    quick: bool
    threads: int


def _split(value: Any, name: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    items = tuple(str(v).strip().lower() for v in items if str(v).strip())
    if not items:
        raise ValueError(f"{name} is empty")
    return items


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _non_negative(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def resolve(params: dict[str, Any]) -> BenchConfig:
    """The complete settings for ``params`` (unknown keys and bad values raise one-line ValueErrors)."""
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown bench parameter(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    p = {**DEFAULT_PARAMS, **params}
    methods = tuple(dict.fromkeys(ALIASES.get(m, m) for m in _split(p["methods"], "methods")))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method {bad[0]!r}; choose from {list(METHODS)} (or 'twostage')")
    device = str(p["device"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"bad device {device!r}: {exc}".splitlines()[0]) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    gpu = dev.type == "cuda"
    phases = _split(p["phases"] if p["phases"] is not None else ",".join(PHASES if gpu else ("forward", "train")),
                    "phases")
    bad = [x for x in phases if x not in PHASES]
    if bad:
        raise ValueError(f"unknown phase {bad[0]!r}; choose from {list(PHASES)}")
    dtype = str(p["dtype"]).lower()
    if dtype not in ("auto", "fp32", "bf16", "float32", "bfloat16"):
        raise ValueError(f"dtype must be 'auto', 'fp32' or 'bf16', got {p['dtype']!r}")
    if dtype == "auto":
        dtype = "bf16" if gpu and torch.cuda.is_bf16_supported() else "fp32"
    dtype = {"fp32": "float32", "bf16": "bfloat16"}.get(dtype, dtype)
    quick = bool(p["quick"])

    def pick(name: str, gpu_value: int, cpu_value: int, quick_value: int | None = None) -> int:
        value = p[name]
        if value is None:
            value = quick_value if quick and quick_value is not None else (gpu_value if gpu else cpu_value)
        return _positive(value, name)

    size = pick("size", 512, 512, 64)
    if size % 16:
        raise ValueError(f"size must be a multiple of the patch size 16, got {size}")
    warmup = _non_negative(p["warmup"], "warmup") if p["warmup"] is not None else (1 if quick or not gpu else 5)
    if p["compile"] and warmup < 1:
        raise ValueError(f"compile needs warmup >= 1 (compilation happens in the first call), got warmup={warmup}")
    threads = p["threads"]
    if threads is not None:
        threads = _positive(threads, "threads")
    return BenchConfig(
        methods=methods, phases=phases, device=str(dev), dtype=dtype, size=size,
        image_size=(size, int(round(size * 4 / 3))), batch=pick("batch", 16, 2, 2),
        train_batch=pick("train_batch", 16, 2, 2), repeats=pick("repeats", 20, 3, 2),
        warmup=warmup,
        proposals=pick("proposals", 100, 100, 4), crop=pick("crop", 224, 224, 32),
        compile=bool(p["compile"]), channels_last=bool(p["channels_last"]), quick=quick,
        threads=threads or torch.get_num_threads(),
    )


# ------------------------------------------------------------------------------------------------- subjects
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
    from ..model.factory import build_model, resolve_split
    from .twostage import build_two_stage

    overrides = quick_overrides(cfg.size) if cfg.quick else {"clip": {"image_size": cfg.size}}
    dataset = name.split("-")[-1]
    if name in ("voc", "coco"):
        from ..model.presets import get_config

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
    from ..model.losses import build_loss
    from ..engine.train import Labeler, TrainConfig, param_groups

    forward = forward or model
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
                    with _autocast(cfg):
                        return model.scores(image)  # slide windows, as evaluation (eager, not compiled)
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
    from ..model.segmentor import num_windows

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


def result_path(results_dir: str | os.PathLike, profile: str, run_id: str) -> Path:
    if not _RUN_ID.match(str(run_id)):
        raise ValueError(f"run_id must be letters, digits, '.', '_' or '-', got {run_id!r}")
    if not _RUN_ID.match(str(profile)):
        raise ValueError(f"profile must be letters, digits, '.', '_' or '-', got {profile!r}")
    return Path(results_dir) / profile / "bench" / f"{run_id}.json"


def run_bench(params: dict[str, Any] | None = None, log: Callable[[str], None] = print, write: bool = True) -> dict:
    """Run the benchmark for ``params`` (keys of :data:`DEFAULT_PARAMS`), write the JSON, return the record."""
    from ..engine.checkpoint import write_json_atomic
    from ..engine.results import environment

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


# ------------------------------------------------------------------------------------------------- tables
def _num(record: dict, phase: str, key: str) -> float:
    value = (record.get("phases") or {}).get(phase, {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def summary_frame(result: dict):
    """One row per method of a bench result: params, GMAC, latency/throughput, relative speed (pandas)."""
    import pandas as pd

    rows = []
    methods = result.get("methods") or []
    two = {m["dataset"]: m for m in methods if m.get("stage") == "two-stage"}
    for m in methods:
        ref = two.get(m["dataset"]) or next(iter(two.values()), None)
        ms = _num(m, "forward", "ms_per_image")
        ref_ms = _num(ref, "forward", "ms_per_image") if ref else math.nan
        rows.append({
            "method": m["label"], "stage": m["stage"], "dataset": m["dataset"],
            "trainable params (M)": m["trainable_params"] / 1e6, "total params (M)": m["total_params"] / 1e6,
            "GMAC / crop": m["macs"] / 1e9,
            "ms / crop (batch 1)": ms, "FPS (crops, batch 1)": 1000.0 / ms if ms == ms else math.nan,
            "images/s (batch B)": _num(m, "throughput", "images_per_s"),
            "ms / image (slide)": _num(m, "image", "ms_per_image"),
            "train images/s": _num(m, "train", "images_per_s"),
            "peak memory (MiB)": max((v.get("peak_memory_bytes") or 0 for v in (m.get("phases") or {}).values()
                                      if isinstance(v, dict)), default=0) / 2**20 or math.nan,
            "speed-up vs two-stage": ref_ms / ms if ref else math.nan,
            "vs": ref["label"] if ref else "",
        })
    return pd.DataFrame(rows)


def format_table(result: dict) -> str:
    """The printed table of one bench result."""
    frame = summary_frame(result)
    cfg = result.get("config", {})
    cols = ["method", "trainable params (M)", "GMAC / crop", "ms / crop (batch 1)", "images/s (batch B)",
            "ms / image (slide)", "train images/s", "peak memory (MiB)", "speed-up vs two-stage"]
    head = (f"device: {result['device']['name']} | {result['dtype']} | {result['torch_threads']} threads | "
            f"crop {cfg.get('size')}, batch B={cfg.get('batch')}, train batch {cfg.get('train_batch')}, "
            f"median of {cfg.get('repeats')} after {cfg.get('warmup')} warm-up")
    return head + "\n" + frame[cols].to_string(index=False, float_format=lambda v: f"{v:,.2f}")


def valid_bench(data: Any) -> str | None:
    """Why ``data`` is not a bench result of this format (None when it is)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != FORMAT:
        return f"not a zegclip bench result (format {data.get('format')!r}, expected {FORMAT!r})"
    methods = data.get("methods")
    need = ("method", "label", "stage", "dataset", "trainable_params", "total_params", "macs", "phases")
    if not isinstance(methods, list) or not methods or not all(isinstance(m, dict) and all(k in m for k in need)
                                                                for m in methods):
        return "`methods` is not a non-empty list of method records"
    if not isinstance(data.get("params"), dict) or not isinstance(data.get("device"), dict):
        return "`params` or `device` missing"
    return None


def load_bench_results(results_dir: str | os.PathLike = "results", profile: str = "mini") -> tuple[list[dict], list[str]]:
    """Valid bench results under ``results_dir/profile/bench`` (oldest first) and one line per skipped file."""
    from .report import load_results

    results, problems = load_results(results_dir, profile, kind="bench")
    good = []
    for data in results:
        why = valid_bench(data)
        if why:
            problems.append(f"{data.get('_path')}: {why}; skipped")
        else:
            good.append(data)
    good.sort(key=lambda d: str(d.get("created", "")))
    return good, problems


def table3_frame(results: list[dict]):
    """Table 3 as reproduced: one row per (run, method), with the paper's numbers beside (pandas)."""
    import pandas as pd

    from .report import paper_numbers

    paper = paper_numbers("table3")
    lookup = {(r["dataset"], r["stage"]): r for r in paper["rows"]}
    frames = []
    for result in results:
        frame = summary_frame(result)
        frame.insert(0, "device", f"{result['device']['name']} ({result['dtype']})")
        frame.insert(0, "run", result["run"])
        for metric, column in zip(paper["metrics"], ("paper #Params(M)", "paper Flops(G)", "paper FPS")):
            frame[column] = [(lookup.get((d, s)) or {"values": [math.nan] * 3})["values"][paper["metrics"].index(metric)]
                             for d, s in zip(frame["dataset"], frame["stage"])]
        frame["paper method"] = [(lookup.get((d, s)) or {}).get("row", "") for d, s in zip(frame["dataset"], frame["stage"])]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def describe_run(result: dict) -> str:
    """One markdown line: which machine, dtype, threads, settings and load produced a bench result."""
    cfg = result.get("config", {})
    load = (result.get("load_average") or {}).get("before")
    quick = " **quick mode: tiny model, not ViT-B/16**" if cfg.get("quick") else ""
    return (f"run `{result['run']}` (profile `{result.get('profile')}`, {result.get('created', '?')}): "
            f"**{result['device']['name']}** ({result['device']['type']}), {result['dtype']}, "
            f"{result.get('torch_threads')} torch threads; crop {cfg.get('size')}², throughput batch {cfg.get('batch')}, "
            f"train batch {cfg.get('train_batch')}, median of {cfg.get('repeats')} after {cfg.get('warmup')} warm-up"
            f"{'; torch.compile' if cfg.get('compile') else ''}{'; channels-last' if cfg.get('channels_last') else ''}"
            f"; load average at start {load}{quick}")


def ratios_frame(results: list[dict]):
    """One-stage vs two-stage per run and dataset: parameter, MAC and speed ratios, beside the paper's (pandas)."""
    import pandas as pd

    from .report import paper_numbers

    paper = {(r["dataset"], r["stage"]): r["values"] for r in paper_numbers("table3")["rows"]}
    rows = []
    for result in results:
        methods = result["methods"]
        two = {m["dataset"]: m for m in methods if m["stage"] == "two-stage"}
        for m in methods:
            if m["stage"] != "one-stage":
                continue
            ref = two.get(m["dataset"]) or next(iter(two.values()), None)
            if ref is None:
                continue
            p1, p2 = paper.get((m["dataset"], "one-stage")), paper.get((m["dataset"], "two-stage"))
            ms, ref_ms = _num(m, "forward", "ms_per_image"), _num(ref, "forward", "ms_per_image")
            rows.append({
                "run": result["run"], "one-stage": m["label"], "two-stage": ref["label"],
                "trainable params ratio": m["trainable_params"] / ref["trainable_params"],
                "MAC ratio": m["macs"] / ref["macs"], "speed-up (batch 1)": ref_ms / ms,
                "paper params ratio": p1[0] / p2[0] if p1 and p2 else math.nan,
                "paper FLOPs ratio": p1[1] / p2[1] if p1 and p2 else math.nan,
                "paper speed-up (FPS)": p1[2] / p2[2] if p1 and p2 else math.nan,
            })
    return pd.DataFrame(rows)


def main(argv_params: dict[str, Any]) -> int:
    """The CLI entry: run, print the table."""
    record = run_bench(argv_params)
    print(format_table(record))
    return 0


def add_arguments(p) -> None:
    """The ``python -m zegclip bench`` flags (one per parameter of :data:`DEFAULT_PARAMS`)."""
    from ..typed import at_least

    p.add_argument("--profile", default="mini", help="results/<profile>/bench/ (default mini)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--run-id", default=None, help="result file name (default bench-<cpu|cuda>[-quick])")
    p.add_argument("--quick", action="store_true", help="a tiny model at 64 px (tests; seconds on a CPU)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    p.add_argument("--methods", default=DEFAULT_PARAMS["methods"], help=f"comma-separated, from {list(METHODS)}")
    p.add_argument("--phases", default=None, help=f"comma-separated, from {list(PHASES)} "
                   "(default: all on a GPU, forward,train on a CPU)")
    p.add_argument("--size", type=at_least(16), default=None, help="square crop size (default 512; 64 with --quick)")
    p.add_argument("--batch", type=at_least(1), default=None, help="throughput batch (default 16 on a GPU, 2 on a CPU)")
    p.add_argument("--train-batch", type=at_least(1), default=None, help="training-step batch (default 16 GPU, 2 CPU)")
    p.add_argument("--repeats", type=at_least(1), default=None, help="timed calls, median reported (default 20 GPU, 3 CPU)")
    p.add_argument("--warmup", type=at_least(0), default=None, help="untimed calls first (default 5 GPU, 1 CPU)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 autocast on a GPU that supports it), fp32, bf16")
    p.add_argument("--proposals", type=at_least(1), default=None, help="two-stage proposals N (default 100)")
    p.add_argument("--crop", type=at_least(16), default=None, help="two-stage proposal crop size (default 224)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--channels-last", action="store_true", help="channels-last model and inputs")
    p.add_argument("--threads", type=at_least(1), default=None, help="torch threads (default: PyTorch's)")


def params_from_args(args) -> dict[str, Any]:
    """CLI namespace -> bench parameters (the run id defaults to bench-<device type>[-quick])."""
    params = {k: getattr(args, k) for k in DEFAULT_PARAMS}
    if params["run_id"] is None:
        device = params["device"]
        kind = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else str(device).split(":")[0]
        params["run_id"] = f"bench-{kind}{'-quick' if params['quick'] else ''}"
    return params
