"""``python -m zegclip bench --gpu-report`` (``make gpu-check``): the GPU path proven end to end in a few minutes.

It measures, on one device:

* ViT-B/16 ZegCLIP (VOC preset, random weights) at 512², bf16 autocast where the GPU supports it:
  inference latency at batch 1 (FPS), throughput at batch 16, and one training step at batch 16, each with its
  peak memory, once eagerly and once under ``torch.compile``. Each is a normal bench result
  (``results/<profile>/bench/gpu-check-eager.json`` and ``gpu-check-compiled.json``), so Table 3 shows them;
* one mini-world run (mini-voc, inductive ZegCLIP, the mini recipe) trained and evaluated on the device, with its
  wall time and mIoU. Its checkpoints and result go to ``runs/gpu-check/`` (beside ``results/``), never among the
  CPU-measured mini results: a GPU run is not bit-identical to a CPU one.

A summary, ``results/<profile>/bench/gpu-check.json`` (format ``zegclip-gpu-check/1``), names the device and links
the parts. ``quick`` runs the same steps with the tiny bench model at 64 px and a 4-iteration mini run, so the path
is tested on a CPU in seconds (``--device cpu --quick``); its files get a ``-quick`` suffix.

Budget: on one H100 the eager and compiled benches take about 1-3 minutes together (compilation dominates) and the
mini run 1-2 minutes once the mini-CLIP is cached; a fresh machine first pretrains the mini-CLIP on its CPU cores.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from .config import DEFAULT_PARAMS, GPU_CHECK_FORMAT, result_path
from .measure import device_name, run_bench



def gpu_check(profile: str = "mini", results_dir: str | Path = "results", device: str = "auto", quick: bool = False,
              mini_iters: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the GPU check (see the module docstring); write and return the summary record."""
    from ...engine.checkpoint import write_json_atomic
    from ...engine.results import environment
    from ..runs import execute_run, runs_root_for

    t0 = time.perf_counter()
    suffix = "-quick" if quick else ""
    base = {**DEFAULT_PARAMS, "profile": profile, "results_dir": str(results_dir), "device": device, "quick": quick,
            "methods": "voc", "phases": "forward,throughput,train", "batch": 2 if quick else 16,
            "train_batch": 2 if quick else 16, "repeats": 2 if quick else 10, "warmup": 1 if quick else 3}
    summary_path = result_path(results_dir, profile, f"gpu-check{suffix}")  # validates profile before any work
    benches = {}
    for mode, compiled in (("eager", False), ("compiled", True)):
        log(f"gpu-check: ZegCLIP VOC bench, {mode}")
        record = run_bench({**base, "compile": compiled, "run_id": f"gpu-check-{mode}{suffix}"}, log=log)
        voc = record["methods"][0]
        benches[mode] = {"file": record.pop("_path"), "phases": voc["phases"], "seconds": record["seconds"]}
    dev = record["config"]["device"]
    log(f"gpu-check: one mini-world run on {dev}")
    iters = mini_iters or (4 if quick else None)
    params = {"profile": profile, "dataset": "mini-voc", "setting": "inductive", "variant": "DPT+NEL+RD", "seed": 0,
              "iters": iters, "quick": quick}
    out = runs_root_for(results_dir) / "gpu-check"
    t1 = time.perf_counter()
    result = execute_run(params, results_dir=out, runs_root=out / "checkpoints", run_id_=f"gpu-check-mini-voc{suffix}",
                         force=True)
    seconds = round(time.perf_counter() - t1, 3)
    trained = json.loads((Path(result["checkpoint"]).parent.parent / "train_summary.json").read_text())["summary"]
    mini = {"file": str(out / profile / "runs" / f"gpu-check-mini-voc{suffix}.json"), "seconds": seconds,
            "iters": result["config"]["train"]["iters"], "train_device": trained.get("device"), "amp": trained.get("amp"),
            **{k: result["metrics"].get(k) for k in ("mIoU", "mIoU(S)", "mIoU(U)", "hIoU")}}
    summary = {
        "format": GPU_CHECK_FORMAT, "profile": profile, "quick": quick,
        "params": {"profile": profile, "results_dir": str(results_dir), "device": device, "quick": quick,
                   "mini_iters": mini_iters},
        "device": {"type": torch.device(dev).type, "name": device_name(dev)},
        "dtype": record["dtype"], "bench": benches, "mini_run": mini, "environment": environment(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json_atomic(summary_path, summary)
    summary["_path"] = str(summary_path)
    log(format_summary(summary))
    log(f"wrote {summary_path}")
    return summary


def format_summary(summary: dict) -> str:
    """The printed lines of a GPU-check summary."""
    lines = [f"gpu-check on {summary['device']['name']} ({summary['dtype']}), {summary['seconds']:.0f} s in all"]
    for mode, bench in summary["bench"].items():
        phases = bench["phases"]

        def cell(phase: str) -> str:
            p = phases.get(phase) or {}
            if "error" in p:
                return f"{phase}: {p['error']}"
            if "images_per_s" not in p:
                return f"{phase}: -"
            mib = (p.get("peak_memory_bytes") or 0) / 2**20
            return f"{phase} (batch {p['batch']}): {p['images_per_s']:.1f} images/s, peak {mib:,.0f} MiB"

        lines.append(f"  {mode:<9} " + "; ".join(cell(ph) for ph in ("forward", "throughput", "train")))
    m = summary["mini_run"]
    def num(v) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines.append(f"  mini run  {m['iters']} iterations on {m['train_device']} (amp {m['amp']}): {m['seconds']:.0f} s, "
                 f"mIoU {num(m['mIoU'])}, hIoU {num(m['hIoU'])}")
    return "\n".join(lines)
