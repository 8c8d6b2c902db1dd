"""Training checkpoints: safetensors for tensors, JSON for the rest, written atomically.

A checkpoint is a directory ``<run>/checkpoints/iter_0001000/`` holding

* ``model.safetensors`` - the trainable parameters (default; frozen CLIP weights are not copied into every
  checkpoint) or the full state dict (``full=True``);
* ``optimizer.safetensors`` - every tensor of the optimiser state (``state.<param>.<name>``);
* ``rng.safetensors`` - torch CPU (and CUDA) generator states;
* ``state.json`` - iteration, scheduler state, optimiser hyper-parameters and scalar state, Python/NumPy RNG.

The directory is written under a temporary name and renamed, and ``latest`` (a one-line text file) is replaced
atomically afterwards, so a run killed at any moment leaves either the old or the new checkpoint, never half.
"""
from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..io import atomic_dir, write_json_atomic, write_text_atomic  # noqa: F401  (re-exported)

LATEST = "latest"


def model_state(model: nn.Module, full: bool = False) -> dict[str, torch.Tensor]:
    """Trainable parameters (default) or the full state dict, detached and contiguous on the CPU."""
    if full:
        items = model.state_dict().items()
    else:
        items = ((n, p) for n, p in model.named_parameters() if p.requires_grad)
    return {n: t.detach().cpu().contiguous() for n, t in items}


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        scalars[str(pid)] = {}
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[str(pid)][name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_merge(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {int(pid): dict(v) for pid, v in meta["scalars"].items()}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    return tensors, {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(
    run_dir: str | os.PathLike,
    iteration: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict | None = None,
    full: bool = False,
) -> Path:
    """Write ``run_dir/checkpoints/iter_XXXXXXX`` atomically and point ``latest`` at it. Returns its path."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:07d}"
    with atomic_dir(final) as tmp:
        save_file(model_state(model, full), str(tmp / "model.safetensors"), metadata={"full": str(full)})
        meta: dict[str, Any] = {"iteration": iteration, "full": full, "extra": extra or {}}
        if optimizer is not None:
            tensors, meta["optimizer"] = _optimizer_split(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
        if scheduler is not None:
            meta["scheduler"] = scheduler.state_dict()
        rng_tensors, meta["rng"] = rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        write_json_atomic(tmp / "state.json", meta)
    write_text_atomic(root / LATEST, final.name + "\n")
    return final


def _complete(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "model.safetensors").is_file()


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` points at, or None when the run has none.

    A ``latest`` that is missing, unreadable or points at an incomplete checkpoint falls back, with a warning, to
    the newest complete ``iter_*`` checkpoint: a broken pointer must never restart a run from iteration 0.
    """
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    named = None
    if pointer.is_file():
        try:
            named = root / pointer.read_text().strip()
        except (OSError, UnicodeDecodeError):
            named = None
        if named is not None and named.name.startswith("iter_") and _complete(named):
            return named
    complete = [p for p in sorted(root.glob("iter_*")) if _complete(p)] if root.is_dir() else []
    if not complete:
        return None
    warnings.warn(f"{pointer}: {'points at ' + str(named.name) + ', which is incomplete' if named else 'missing or unreadable'}; "
                  f"using the newest complete checkpoint {complete[-1].name}", stacklevel=2)
    return complete[-1]


def load_weights(model: nn.Module, path: str | os.PathLike, strict_trainable: bool = True) -> list[str]:
    """Load ``model.safetensors`` (a file or a checkpoint directory) into ``model``.

    Every key must exist in the model with the same shape; with ``strict_trainable`` every trainable parameter
    must be present. Returns the loaded keys.
    """
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no model weights at {file}")
    try:
        state = load_file(str(file))
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read checkpoint weights {file}: {exc}".splitlines()[0]) from exc
    nonfinite = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if nonfinite is not None:
        raise ValueError(f"{file}: weight {nonfinite} has NaN or infinite values")
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ValueError(f"{file}: keys not in this model: {unknown[:5]}")
    bad = [k for k in state if state[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"{file}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, the model has {tuple(own[bad[0]].shape)}")
    if strict_trainable:
        missing = sorted(n for n, p in model.named_parameters() if p.requires_grad and n not in state)
        if missing:
            raise ValueError(f"{file}: trainable parameters missing: {missing[:5]}")
    model.load_state_dict(state, strict=False)
    return sorted(state)


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    restore_rng: bool = True,
) -> dict:
    """Restore model (and optimiser, scheduler, RNG) from a checkpoint directory; returns its state.json."""
    path = Path(path)
    state_file = path / "state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"not a checkpoint directory (no state.json): {path}")
    meta = json.loads(state_file.read_text())
    load_weights(model, path)
    if optimizer is not None and "optimizer" in meta:
        optimizer.load_state_dict(_optimizer_merge(load_file(str(path / "optimizer.safetensors")), meta["optimizer"]))
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"])
    if restore_rng:
        set_rng_state(load_file(str(path / "rng.safetensors")), meta["rng"])
    return meta
