"""Tables of bench results: the printed summary, Table 3 beside the paper's numbers, one-stage/two-stage ratios,
and the reading and validation of result files."""
from __future__ import annotations

import math
import os
from typing import Any

from .config import FORMAT, GPU_CHECK_FORMAT, VS_OFFICIAL_FORMAT


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
    from ..report import load_results

    results, problems = load_results(results_dir, profile, kind="bench")
    good = []
    for data in results:
        if isinstance(data, dict) and data.get("format") in (GPU_CHECK_FORMAT, VS_OFFICIAL_FORMAT):
            continue  # a GPU-check summary (its two bench runs are results of their own) or a vs-official record
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

    from ..report import paper_numbers

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

    from ..report import paper_numbers

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


def vs_official_frame(results_dir: str | os.PathLike = "results", profile: str = "mini"):
    """The ``bench --vs-official`` records of ``profile`` as one row per run and preset: machine, threads, medians
    (ms) of ours, the official forward's module transcription and the kernel floor, the ratios, whether the official
    attention module took PyTorch's native fast path, and the output difference."""
    import pandas as pd

    from ..report import load_results

    results, _ = load_results(results_dir, profile, kind="bench")
    rows = []
    for data in sorted((d for d in results if d.get("format") == VS_OFFICIAL_FORMAT), key=lambda d: d.get("created", "")):
        for p in data.get("presets", []):
            fast = p.get("official_mha_fast_path") or {}
            rows.append({
                "run": data.get("run"), "machine": data.get("device", {}).get("name"),
                "threads": data.get("torch_threads"), "preset": p["preset"],
                "ours (ms)": p["ours"]["median_ms"], "official (ms)": p["official"]["median_ms"],
                "floor (ms)": p["floor"]["median_ms"], "official / ours": round(p["ratio_official_over_ours"], 3),
                "official / floor": round(p["ratio_official_over_floor"], 3),
                "official MHA fast path": ("taken" if fast.get("taken") else f"not taken ({fast.get('why_not')})")
                if fast else "not recorded",
                "max rel diff": p["max_rel_diff"], "mode": p.get("mode", "eval, no_grad")})
    return pd.DataFrame(rows)
