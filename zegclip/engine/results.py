"""Run records: library versions and machine facts saved with every result, and the one rule that says whether a
result file is valid (shared by ``reproduce`` and the reports)."""
from __future__ import annotations

import math
import os
import platform
import sys
from importlib import metadata

import torch

_PACKAGES = ("torch", "torchvision", "open_clip_torch", "torchmetrics", "safetensors", "numpy", "zegclip")


def _cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere), for the runs index."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment() -> dict:
    """Versions and device facts for reproducibility records."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "versions": versions,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


# ------------------------------------------------------------------------------------------- validity
METRICS = ("pAcc", "mIoU", "mAcc", "mIoU(S)", "mIoU(U)", "hIoU", "mAcc(S)", "mAcc(U)")
REQUIRED = {"runs": ("run", "seed", "metrics", "per_class"), "bench": ("params",)}


def required_metrics(result: dict) -> tuple[str, ...]:
    """The metrics that must be finite numbers in a run result: pAcc, mIoU and mAcc always; the seen (unseen)
    metrics when the evaluation has seen (unseen) classes; hIoU when it has both. A cross-dataset evaluation whose
    classes are all of one split legitimately has no mIoU(U) or hIoU (written as null)."""
    splits = {c.get("split") for c in result.get("per_class") or [] if isinstance(c, dict)}
    out = ["pAcc", "mIoU", "mAcc"]
    if "seen" in splits:
        out += ["mIoU(S)", "mAcc(S)"]
    if "unseen" in splits:
        out += ["mIoU(U)", "mAcc(U)"]
    if {"seen", "unseen"} <= splits:
        out.append("hIoU")
    return tuple(out)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def result_problem(data, kind: str = "runs", stem: str | None = None) -> str | None:
    """Why ``data`` (a parsed result JSON of ``kind``: runs, bench, ...) is not a valid result, or None.

    The one rule that ``reproduce`` (rerun what is invalid) and the reports (list it as a problem, leave it out of
    every mean) share: the required keys exist; a run's id matches its file name; every metric is a number or
    null, and the required ones (:func:`required_metrics`) are finite; ``per_class`` is a list of class records.
    """
    if not isinstance(data, dict):
        return f"not a zegclip result (a JSON {type(data).__name__}, expected an object)"
    missing = [k for k in REQUIRED.get(kind, ()) if k not in data]
    if missing:
        return f"not a zegclip {kind} result (missing key(s): {', '.join(missing)})"
    if kind != "runs":
        return None if isinstance(data.get("params"), dict) else "`params` is not an object"
    if stem is not None and data["run"] != stem:
        return f"run id {data['run']!r} does not match the file name"
    rows = data["per_class"]
    if not isinstance(rows, list) or any(not isinstance(r, dict) or not {"class", "split", "IoU"} <= set(r)
                                         for r in rows):
        return "`per_class` is not a list of {class, split, IoU, ...} objects"
    metrics = data["metrics"]
    if not isinstance(metrics, dict):
        return "`metrics` is not an object"
    absent = [m for m in METRICS if m not in metrics]
    if absent:
        return f"`metrics` lacks {', '.join(absent)}"
    # null (and NaN, as older files wrote it) is allowed where the metric has no classes to average
    bad = [m for m in METRICS if metrics[m] is not None and (not isinstance(metrics[m], (int, float))
                                                              or isinstance(metrics[m], bool))]
    bad += [m for m in required_metrics(data) if m not in bad and not _finite(metrics[m])]
    if bad:
        return f"`metrics` has non-finite or non-numeric {', '.join(f'{m}={metrics[m]!r}' for m in bad)}"
    return None


def expected_nulls(result: dict) -> tuple[str, ...]:
    """Fields of a run result where null (NaN) is normal: per-class values of absent classes, and the metrics that
    :func:`required_metrics` does not require. A non-finite value anywhere else is reported when it is written."""
    required = required_metrics(result)
    return ("per_class", "confmat", *(f"metrics.{m}" for m in METRICS if m not in required))
