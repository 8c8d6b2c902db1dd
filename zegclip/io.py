"""Output files: the package's one atomic writer, strict JSON, and the one-trainer-per-run-directory lock.

Every file the package writes goes through :func:`atomic_path` (or the helpers on top of it): the data are written
to a temporary name in the destination folder, flushed and fsynced, then renamed over the destination. A process
killed at any moment leaves the old file or the new one, never half of one. Temporary names are
``.<name>.<pid>.tmp`` so that a later run can recognise and remove what a killed writer left
(:func:`remove_stale_temps`). Files get the usual ``0666 & ~umask`` mode (0644 under the common umask 022) and
folders ``0777 & ~umask``: ``tempfile.mkstemp`` would have made every output private (0600).

JSON is strict: NaN and infinities are not JSON, so they are written as ``null`` and reported with a warning that
names the fields (:func:`strict_json`).

Example::

    >>> import tempfile, json, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_json_atomic(d / "r.json", {"mIoU": 41.5, "hIoU": float("nan")})  # doctest: +SKIP
    >>> json.loads((d / "r.json").read_text())  # doctest: +SKIP
    {'mIoU': 41.5, 'hIoU': None}
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["atomic_path", "atomic_dir", "write_text_atomic", "write_bytes_atomic", "write_json_atomic",
           "strict_json", "remove_stale_temps", "RunLock", "RunBusyError", "check_writable"]

TEMP_SUFFIX = ".tmp"


def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}{TEMP_SUFFIX}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, the file written there is
    fsynced, given the umask's mode and renamed to ``path``. On an error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; when the block succeeds it replaces ``path`` (an existing
    folder of that name is removed first). On an error the temporary folder is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()  # mode 0777 & ~umask
    try:
        yield tmp
        mode = 0o666 & ~_umask()
        for f in tmp.iterdir():
            if f.is_file():
                os.chmod(f, mode)  # some writers (safetensors) create private files
                _fsync(f)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_id_list(path: str | os.PathLike) -> list[str]:
    """The ids of a split list (VOC ``ImageSets`` style): the first token of each non-blank line.

    A missing file is a FileNotFoundError and an empty one a ValueError, both naming the file.

    Example::

        read_id_list("VOC2012/ImageSets/Segmentation/val.txt")[:2]   # ['2007_000033', '2007_000042']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"split list {path} is empty")
    return ids


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> None:
    """Write a split list, one id per line, atomically (the format :func:`read_id_list` reads)."""
    write_text_atomic(path, "".join(f"{i}\n" for i in ids))


def _finite(obj: Any, where: str, bad: list[str]) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        bad.append(where or "(top level)")
        return None
    if isinstance(obj, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, f"{where}[{i}]", bad) for i, v in enumerate(obj)]
    return obj


def strict_json(data: Any, indent: int | None = 2) -> tuple[str, list[str]]:
    """(JSON text, the dotted names of the non-finite values written as null). Non-JSON objects (paths, numpy
    scalars) are written with ``str``; NaN and infinities never reach the text."""
    data = json.loads(json.dumps(data, default=_plain))  # numpy/torch scalars to Python numbers first
    bad: list[str] = []
    clean = _finite(data, "", bad)
    return json.dumps(clean, indent=indent, allow_nan=False, default=str), bad


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (ValueError, RuntimeError):
            pass
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    return str(obj)


def write_json_atomic(path: str | os.PathLike, data: Any, expected: tuple[str, ...] = ()) -> list[str]:
    """Write ``data`` as strict JSON, atomically; returns the fields written as null because they were NaN or
    infinite, and warns about those not under one of the ``expected`` prefixes (e.g. ``"per_class"``, where an
    absent class legitimately has no IoU)."""
    text, bad = strict_json(data)
    loud = [b for b in bad if not b.startswith(expected)] if expected else bad
    if loud:
        shown = ", ".join(loud[:5]) + (f" and {len(loud) - 5} more" if len(loud) > 5 else "")
        warnings.warn(f"{path}: non-finite value(s) written as null: {shown}", stacklevel=2)
    write_text_atomic(path, text + "\n")
    return bad


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders (``.*.tmp``, and checkpoint folders of the older ``mkdtemp`` naming
    ``checkpoints/.iter_*``) that killed writers left anywhere in ``folder``. Only call it while holding the
    folder's :class:`RunLock` (no live writer can own them then). Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(set(folder.glob("**/.*" + TEMP_SUFFIX)) | set(folder.glob("**/checkpoints/.iter_*")))
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


class RunBusyError(OSError):
    """Another live process holds the run directory's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``<folder>/.lock`` holding ``pid host``, created exclusively: a second trainer of the same run directory
    fails with :class:`RunBusyError`; a lock left by a dead process (same host) is taken over with a warning.

    Use as a context manager; the lock is removed on exit."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self.held = False

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = self.path.read_text(errors="replace").split() if self.path.exists() else []
                pid = int(owner[0]) if owner and owner[0].isdigit() else None
                host = owner[1] if len(owner) > 1 else socket.gethostname()
                if pid is not None and (host != socket.gethostname() or _alive(pid)):
                    raise RunBusyError(f"{self.folder} is in use by another trainer (pid {pid} on {host}); wait for "
                                       f"it to finish, or remove {self.path} if that process is gone") from None
                warnings.warn(f"{self.path}: taking over the lock of a process that is gone (pid {pid})", stacklevel=2)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise RunBusyError(f"cannot take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_writable(path: str | os.PathLike) -> None:
    """Raise a one-line ``PermissionError``/``OSError`` naming ``path`` unless a file can be created in it (a folder)
    or at it (a file path): called before long computations, so that they do not end in a failed write."""
    path = Path(path)
    folder = path if path.is_dir() or not path.suffix else path.parent
    probe_root = folder
    while not probe_root.exists():
        probe_root = probe_root.parent
    if not probe_root.is_dir():
        raise NotADirectoryError(f"cannot write to {folder}: {probe_root} is not a folder")
    if not os.access(probe_root, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {folder}: permission denied")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _temp_name(folder / ".write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"cannot write to {folder}: {exc.strerror or exc}") from None
