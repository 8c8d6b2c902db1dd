"""``python -m zegclip bench --vs-official``: the package's forward against the official one, side by side.

For each preset (``voc``: T = 10 prompts, 20 classes; ``coco``: T = 100, 171 classes) it builds the model with
random weights (cost does not depend on weights; the bench's own builder, :func:`.measure.build_subject`) and
runs, on the same weights and the same crop (batch 1, ``size`` x ``size``, eval, ``no_grad``):

* ours - ``model(images)``, the package's forward (mask logits);
* official - :func:`.reference.reference_logits` with ``attention="module"``: the official forward in its layout,
  the ViT's blocks called as the official ``ResidualAttentionBlock`` modules (``nn.MultiheadAttention(768, 12)``,
  ``batch_first=False``, ``need_weights=False``), explicit decoder attention, all decoder layers in full. Every
  call runs in eval mode under ``torch.inference_mode()``, as the official test loop does, and the record states
  whether the official attention module took PyTorch's native fast path (:func:`.reference.mha_fast_path`; with
  the official ``batch_first=False`` it does not).

A third call, ``floor``, bounds what any exact float32 implementation can reach on the machine: it runs only the
backbone's unavoidable kernels on tensors of the model's shapes and with its weights - the patch-embedding
convolution and, per block, the packed q/k/v projection of all 1 + T + N tokens, fused attention (SDPA) of the
1 + N kept queries over all tokens, the output projection and the two MLP linears of the 1 + N kept rows - and
nothing else (no layer norms, activations, residuals, copies, decoder or resize). ``official / floor`` is
therefore an upper bound of the speed-up over the official forward that exact float32 arithmetic allows with
these kernels (torch's BLAS and SDPA) on this machine.

First the two outputs are compared (``max_rel_diff`` = max |ours - official| / max |official|), then after
``warmup`` untimed calls of each the three are timed **in turn** (ours-official-floor, then floor-official-ours,
...), so
that a change of machine load hits both alike; the medians of ``repeats`` calls give the ratio
``official / ours`` (> 1: ours is faster). ``threads`` (default 2) is set for the run and restored. The load
average before and after each preset is recorded beside the times: on a busy machine timings are provisional.

With ``train=True`` (CLI: ``--phases forward,train``), each preset also times one training step (AdamW, official
loss, batch ``train_batch``, default 2; :func:`.measure.make_train_step`) with the package's fused blocks
(``fused``) against the same model calling open_clip's blocks as they are (``blocks``: the path before issue 15,
``PromptedVisionEncoder.fused_attention = False``), alternately, same medians. The official code has no separate
training forward to transcribe (its blocks are open_clip's), so this is the training comparison.

The record goes to ``<results_dir>/<profile>/bench/<run_id>.json`` (format ``zegclip-vs-official/1``; not a
Table 3 row, so :func:`.tables.load_bench_results` passes over it).
"""
from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone
from typing import Any, Callable

import torch

from .config import VS_OFFICIAL_FORMAT, resolve, result_path
from .efficiency import synchronize
from .measure import _images, _loadavg, build_subject, device_name, make_train_step, write_record
from .reference import mha_fast_path, official_blocks, reference_logits

PRESETS = ("voc", "coco")


def _timed(fn: Callable[[], Any], device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def _in_turn(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: str) -> dict[str, Any]:
    """``warmup`` untimed rounds, then ``repeats`` timed rounds of ``calls`` in turn (reversed order every other
    round): per call its median, minimum and every time (ms), plus the load average before and after."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    load_before = _loadavg()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for r in range(repeats):
        for key in (tuple(calls) if r % 2 == 0 else tuple(reversed(calls))):
            times[key].append(_timed(calls[key], device))
    load_after = _loadavg()
    return {"load_average": {"before": load_before, "after": load_after},
            **{k: {"median_ms": round(statistics.median(v), 3), "min_ms": round(min(v), 3),
                   "times_ms": [round(t, 3) for t in v]} for k, v in times.items()}}


def kernel_floor(model, images: torch.Tensor) -> Callable[[], None]:
    """A closure running only the backbone's unavoidable float32 kernels for ``images`` (see the module doc)."""
    import torch.nn.functional as F

    bb = model.backbone
    vit = bb.vit
    conv = vit.conv1
    b = images.shape[0]
    grid = (images.shape[-2] // bb.patch_size[0]) * (images.shape[-1] // bb.patch_size[1])
    keep, total = 1 + grid, 1 + grid + bb.num_prompts
    gen = torch.Generator().manual_seed(0)
    blocks = list(vit.transformer.resblocks)
    width, heads = bb.width, blocks[0].attn.num_heads
    x = torch.randn(b, total, width, generator=gen).to(images.device)
    q = torch.randn(b, heads, keep, width // heads, generator=gen).to(images.device)
    kv = torch.randn(b, heads, total, width // heads, generator=gen).to(images.device)
    a = torch.randn(b, keep, width, generator=gen).to(images.device)

    def run() -> None:
        F.conv2d(images, conv.weight, conv.bias, stride=conv.stride)
        for blk in blocks:
            F.linear(x, blk.attn.in_proj_weight, blk.attn.in_proj_bias)
            F.scaled_dot_product_attention(q, kv, kv)
            F.linear(a, blk.attn.out_proj.weight, blk.attn.out_proj.bias)
            h = F.linear(a, blk.mlp.c_fc.weight, blk.mlp.c_fc.bias)
            F.linear(h, blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)

    return run


def compare_preset(name: str, cfg, repeats: int, warmup: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Equality, then alternate timing of ours vs the official reference for one preset (a JSON-ready dict)."""
    subject = build_subject(name, cfg)
    model = subject.model.to(cfg.device).eval()
    images = torch.randn(1, 3, cfg.size, cfg.size, generator=torch.Generator().manual_seed(0)).to(cfg.device)
    blocks = official_blocks(model)
    calls = {"ours": lambda: model(images), "official": lambda: reference_logits(model, images, "module", blocks),
             "floor": kernel_floor(model, images)}
    with torch.inference_mode():
        ours, official = calls["ours"](), calls["official"]()
        diff = float((ours - official).abs().max() / official.abs().max())
        tokens = 1 + model.backbone.num_prompts + (cfg.size // model.backbone.patch_size[0]) ** 2
        fast_path = mha_fast_path(blocks[0], torch.randn(tokens, 1, blocks[0].ln_1.normalized_shape[0]))
        timed = _in_turn(calls, repeats, warmup, cfg.device)
    medians = {k: timed[k]["median_ms"] for k in calls}
    record = {
        "preset": name, "label": subject.label, "classes": subject.classes, "tokens": subject.tokens,
        "size": cfg.size, "output_shape": list(ours.shape), "max_rel_diff": diff, "official_mha_fast_path": fast_path,
        "mode": "eval, torch.inference_mode()", **timed,
        "ratio_official_over_ours": medians["official"] / medians["ours"],
        "ratio_official_over_floor": medians["official"] / medians["floor"],
    }
    load = timed["load_average"]
    log(f"  {subject.label}: ours {medians['ours']:9.1f} ms, official {medians['official']:9.1f} ms, "
        f"official/ours {record['ratio_official_over_ours']:.3f}x, max rel diff {diff:.2e}; kernel floor "
        f"{medians['floor']:.1f} ms (official/floor {record['ratio_official_over_floor']:.3f}x: the bound); "
        f"official nn.MultiheadAttention fast path: "
        f"{'taken' if fast_path['taken'] else 'not taken (' + fast_path['why_not'] + ')'}; "
        f"load {load['before']} -> {load['after']}")
    return record


def compare_train_step(name: str, cfg, repeats: int, warmup: int,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """One training step with fused blocks vs open_clip's block calls, alternately timed (a JSON-ready dict)."""
    subject = build_subject(name, cfg)
    model = subject.model.to(cfg.device)
    step = make_train_step(model, _images(cfg.train_batch, (cfg.size, cfg.size), cfg, seed=1), cfg)
    encoder = model.backbone

    def run(fused: bool) -> Callable[[], None]:
        def call() -> None:
            encoder.fused_attention = fused
            try:
                step()
            finally:
                del encoder.fused_attention  # back to the class default
        return call

    calls = {"fused": run(True), "blocks": run(False)}
    timed = _in_turn(calls, repeats, warmup, cfg.device)
    medians = {k: timed[k]["median_ms"] for k in calls}
    record = {"preset": name, "label": subject.label, "batch": cfg.train_batch, "size": cfg.size, **timed,
              "ratio_blocks_over_fused": medians["blocks"] / medians["fused"]}
    load = timed["load_average"]
    log(f"  {subject.label}, training step at batch {cfg.train_batch}: fused {medians['fused']:9.1f} ms, open_clip "
        f"blocks {medians['blocks']:9.1f} ms, blocks/fused {record['ratio_blocks_over_fused']:.3f}x; "
        f"load {load['before']} -> {load['after']}")
    return record


def vs_official(presets: str | tuple[str, ...] = PRESETS, *, size: int | None = None, threads: int = 2,
                repeats: int = 5, warmup: int = 1, quick: bool = False, device: str = "cpu", train: bool = False,
                train_batch: int | None = None,
                results_dir: str = "results", profile: str = "mini", run_id: str | None = None,
                log: Callable[[str], None] = print, write: bool = True) -> dict[str, Any]:
    """Run the comparison for ``presets`` (see the module docstring); write and return the record."""
    from ...engine.results import environment

    names = tuple(p.strip().lower() for p in (presets.split(",") if isinstance(presets, str) else presets) if p.strip())
    bad = [p for p in names if p not in PRESETS]
    if not names or bad:
        raise ValueError(f"--vs-official compares the presets {list(PRESETS)}; got {list(names) or 'none'}")
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, threads >= 1; got {repeats}, {warmup}, {threads}")
    cfg = resolve({"methods": ",".join(names), "quick": quick, "size": size, "device": device,
                   "phases": "forward,train" if train else "forward", "train_batch": train_batch})
    run_id = run_id or f"vs-official-{torch.device(cfg.device).type}{'-quick' if quick else ''}"
    path = result_path(results_dir, profile, run_id)  # validates before any work
    params = {"presets": ",".join(names), "size": cfg.size, "threads": threads, "repeats": repeats, "warmup": warmup,
              "quick": quick, "train": train, "train_batch": cfg.train_batch, "device": device, "results_dir": str(results_dir), "profile": profile, "run_id": run_id}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        load_before = _loadavg()
        log(f"zegclip vs official on {device_name(cfg.device)} ({cfg.device}, float32, {torch.get_num_threads()} "
            f"threads{', quick tiny model' if quick else ''}), {cfg.size}² crop, median of {repeats} after {warmup} "
            f"warm-up; load average {load_before}")
        results = [compare_preset(name, cfg, repeats, warmup, log) for name in names]
        train_results = [compare_train_step(name, cfg, repeats, warmup, log) for name in names] if train else []
        record = {
            "format": VS_OFFICIAL_FORMAT, "run": run_id, "profile": profile, "params": params,
            "device": {"type": torch.device(cfg.device).type, "name": device_name(cfg.device)},
            "dtype": "float32", "torch_threads": torch.get_num_threads(),
            "load_average": {"before": load_before, "after": _loadavg()},
            "environment": environment(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 3), "presets": results, "train_step": train_results,
        }
    finally:
        torch.set_num_threads(previous)
    return write_record(path, record, write, log)
