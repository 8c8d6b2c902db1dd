"""Run records: library versions and machine facts saved with every result, and JSON result files."""
from __future__ import annotations

import platform
import sys
from importlib import metadata

import torch

_PACKAGES = ("torch", "torchvision", "open_clip_torch", "torchmetrics", "safetensors", "numpy", "zegclip")


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
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "versions": versions,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info
