"""Benchmark settings: the notebook's / CLI's parameters, their defaults, and their resolution to a
:class:`BenchConfig` (every automatic value decided, every bad value a one-line ValueError)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


FORMAT = "zegclip-bench/1"
GPU_CHECK_FORMAT = "zegclip-gpu-check/1"  # the summary of `bench --gpu-report` (not a Table 3 row)
VS_OFFICIAL_FORMAT = "zegclip-vs-official/1"  # `bench --vs-official`: ours vs the official forward (not a Table 3 row)
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
    import torch  # here, not at import: the CLI reads this module's defaults to build its parser

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


def result_path(results_dir: str | os.PathLike, profile: str, run_id: str) -> Path:
    if not _RUN_ID.match(str(run_id)):
        raise ValueError(f"run_id must be letters, digits, '.', '_' or '-', got {run_id!r}")
    if not _RUN_ID.match(str(profile)):
        raise ValueError(f"profile must be letters, digits, '.', '_' or '-', got {profile!r}")
    return Path(results_dir) / profile / "bench" / f"{run_id}.json"
