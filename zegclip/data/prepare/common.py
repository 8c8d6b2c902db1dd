"""Helpers shared by the converters: atomic PNG writes, a progress-bar map over worker processes, PNG value scans,
MATLAB struct unwrapping and link-or-copy."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...io import atomic_path


def _write_png(array: np.ndarray, path: Path) -> None:
    """Write a single-channel uint8 PNG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L").save(tmp, format="PNG")


def _run(fn: Callable[[Any], Any], tasks: Sequence[Any], desc: str, progress: bool, num_workers: int) -> list[Any]:
    """Map ``fn`` over ``tasks`` with a progress bar, in worker processes when ``num_workers > 1``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc=desc, unit="file", disable=not progress)
    results = []
    try:
        if num_workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=num_workers) as pool:
                for r in pool.map(fn, tasks, chunksize=max(1, min(64, len(tasks) // (4 * num_workers) or 1))):
                    results.append(r)
                    bar.update(1)
        else:
            for t in tasks:
                results.append(fn(t))
                bar.update(1)
    finally:
        bar.close()
    return results


def _distinct_values(arr: np.ndarray) -> tuple[int, ...]:
    if arr.dtype == np.uint8:  # bincount is much faster than np.unique on label maps
        return tuple(int(v) for v in np.flatnonzero(np.bincount(arr.reshape(-1), minlength=256)))
    return tuple(int(v) for v in np.unique(arr))


def _values_of_png(path: str) -> tuple[str, tuple[int, ...] | None, str | None]:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
        return path, _distinct_values(arr), None
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return path, None, f"cannot read {path}: {e}"


def _verify_pngs(paths: Sequence[Path], allowed: set[int], what: str, progress: bool, num_workers: int) -> tuple[list[int], list[str]]:
    """Read every PNG; return (sorted union of values, problems)."""
    results = _run(_values_of_png, [str(p) for p in paths], f"verifying {what}", progress, num_workers)
    union: set[int] = set()
    problems = []
    for path, values, err in results:
        if err is not None:
            problems.append(err)
            continue
        union.update(values)
        bad = sorted(set(values) - allowed)
        if bad:
            problems.append(f"{path}: label values outside the expected range: {bad[:20]}")
    return sorted(union), problems


def _unwrap(x: Any) -> Any:
    """Unwrap the nested object/struct arrays that scipy.io.loadmat returns for MATLAB structs and cells."""
    while isinstance(x, np.ndarray) and (x.dtype == object or x.dtype.names is not None) and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _mat_field(mat: Mapping[str, Any], *keys: str) -> np.ndarray:
    node: Any = mat
    for key in keys:
        node = _unwrap(node)
        if isinstance(node, np.void) or (isinstance(node, np.ndarray) and node.dtype.names is not None):
            node = node[key]
        elif isinstance(node, Mapping):
            node = node[key]
        else:
            node = getattr(node, key)
    node = _unwrap(node)
    return np.asarray(node)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    except OSError:
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
