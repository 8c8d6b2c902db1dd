"""Efficiency measurements: parameter counts, multiply-accumulates (MACs) per crop, latency and peak memory.

**The MAC counter (one protocol for every number).** MACs are counted by PyTorch's own
:class:`torch.utils.flop_counter.FlopCounterMode` on one real forward pass (batch 1, eval mode, no grad) and
reported as ``MACs = FLOPs / 2`` (the counter counts a multiply-add as 2 FLOPs; the paper's "GFLOPs", from
mmseg's ``get_flops.py``, are multiply-adds). The counter only knows matrix products and convolutions
(``mm``, ``addmm``, ``bmm``, ``convolution`` and the fused attention kernels it has formulas for); element-wise
work (softmax, LayerNorm, GELU, interpolation, sigmoid) is not counted, as in fvcore/mmcv.

Two switches are needed while counting, or attention is missed (about 45 % of a ViT-B/16 at 1035 tokens):

* the **math** scaled-dot-product-attention backend (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``):
  the CPU flash kernel has no formula in the counter, the math backend decomposes into counted ``bmm``;
* ``nn.MultiheadAttention``'s **fast path off** (``torch.backends.mha.set_fastpath_enabled(False)``): in eval
  mode under ``no_grad`` open_clip's blocks would call the fused ``_native_multi_head_attention`` op, which the
  counter does not see through (its q/k/v projections and attention go uncounted).

:func:`math_attention` sets both and restores them; :func:`count_macs` uses it. The text encoder is never
run (class embeddings are precomputed), so it is not counted - as in the paper.

**Timing.** :func:`time_call` runs a callable ``warmup`` times, then ``repeats`` times, synchronising the device
around each call, and reports the median (and every sample) in milliseconds. :class:`PeakMemory` measures the
peak memory of a block: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the peak resident set size of
the whole process (``resource.getrusage``), reset at the start of the block through ``/proc/self/clear_refs``
on Linux (when that is not possible the value is the process's lifetime peak and is marked so).
"""
from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import time
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["parameter_counts", "math_attention", "count_macs", "time_call", "PeakMemory", "synchronize"]


def parameter_counts(module: nn.Module, exclude: tuple[str, ...] = ("text_encoder",)) -> dict[str, int]:
    """Trainable and total parameters of ``module``; submodules named in ``exclude`` are left out of both.

    The default leaves out ZegCLIP's CLIP text tower: it is never run at inference (embeddings are precomputed)
    and it is frozen. Shared parameters are counted once.
    """
    seen: set[int] = set()
    trainable = total = 0
    for name, param in module.named_parameters():
        if name.split(".", 1)[0] in exclude or id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return {"trainable_params": trainable, "total_params": total}


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Math SDPA backend and no ``nn.MultiheadAttention`` fast path inside the block (restored afterwards)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@contextlib.contextmanager
def _no_requires_grad(module: nn.Module | None) -> Iterator[None]:
    """Parameters of ``module`` temporarily not requiring grad (restored afterwards).

    Needed while counting: a view of a parameter taken under ``no_grad`` (e.g. one block's deep prompts) still
    reports ``requires_grad`` without a grad_fn, and FlopCounterMode's module tracker fails on such an input.
    """
    params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def count_macs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """MACs of one call ``fn(*args, **kwargs)`` under :func:`math_attention` and ``no_grad``.

    ``fn`` is a module or a bound method of one (its parameters are frozen during the count, then restored).
    Returns ``{"macs": int, "flops": int, "by_op": {op name: MACs}}``; ``macs == flops // 2`` exactly (every
    counted op performs whole multiply-adds).
    """
    module = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
    module = module if isinstance(module, nn.Module) else None
    counter = FlopCounterMode(display=False)
    with _no_requires_grad(module), math_attention(), torch.no_grad(), counter:
        fn(*args, **kwargs)
    flops = int(counter.get_total_flops())
    by_op = {str(op): int(v) // 2 for op, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"macs": flops // 2, "flops": flops, "by_op": dict(sorted(by_op.items()))}


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device | str, repeats: int, warmup: int) -> dict[str, Any]:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls after ``warmup`` untimed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "times_ms": [round(t, 3) for t in times],
            "repeats": repeats, "warmup": warmup}


def _reset_cpu_peak() -> bool:
    """Reset the process's peak RSS (Linux ``clear_refs`` 5); False where the platform does not allow it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager: ``bytes`` = peak memory inside the block, ``kind`` says what was measured.

    ``kind`` is ``"cuda_max_memory_allocated"`` on a GPU (tensors only), ``"cpu_peak_rss"`` on a CPU (the whole
    process: weights, activations, Python) or ``"cpu_peak_rss_lifetime"`` when the peak could not be reset.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.bytes: int | None = None
        self.kind = ""

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_memory_allocated"
        else:
            self.kind = "cpu_peak_rss" if _reset_cpu_peak() else "cpu_peak_rss_lifetime"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            # ru_maxrss is in KiB on Linux, bytes on macOS
            scale = 1 if sys.platform == "darwin" else 1024
            self.bytes = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
