"""The zegclip project that the experiments belong to, and its folders.

The project is the folder holding ``notebooks/registry.yaml``: found from the working directory, its parents, or
``$ZEGCLIP_PROJECT``, never from ``__file__``. Every part of the companion that needs the notebooks, the book or a
project-relative path finds it here.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | Path | None = None) -> Path:
    """The zegclip project that the experiments belong to: the folder holding ``notebooks/registry.yaml``.

    ``start`` when given, else ``$ZEGCLIP_PROJECT``, else the working directory or the nearest of its parents that
    holds a registry. Never the installed package's own location: a ``pip install``-ed zegclip must not write
    notebooks into site-packages.
    """
    env = os.environ.get("ZEGCLIP_PROJECT")
    if start is not None or env:
        candidates = [Path(start if start is not None else env)]
    else:
        candidates = [Path.cwd(), *Path.cwd().parents]
    for c in candidates:
        if (c / "notebooks" / "registry.yaml").is_file():
            return c.resolve()
    raise FileNotFoundError(f"not inside a zegclip project: no notebooks/registry.yaml in {candidates[0]}"
                            f"{' or its parents' if len(candidates) > 1 else ''} (run from the checkout, or set "
                            "ZEGCLIP_PROJECT)")


def notebooks_dir(project: str | Path | None = None) -> Path:
    """``<project>/notebooks``: the registry, the run notebook and the report notebooks."""
    return project_root(project) / "notebooks"


def generated_dir(project: str | Path | None = None) -> Path:
    """``<project>/book/generated``: where the executed report notebooks go (the book reads them there)."""
    return project_root(project) / "book" / "generated"


def results_dir(given: str | Path | None = None) -> Path:
    """Where results are read and written: ``given`` (a command's ``--results-dir``) as it is, else
    ``<project>/results``, so that a command run from any subfolder of the checkout sees the same results as one
    run from its root."""
    if given is not None:
        return Path(given)
    # relative to the working directory when it lies inside the project (results/ from the root, ../results from
    # notebooks/), so that paths recorded in results stay free of the machine's folders
    root = project_root()
    try:
        Path.cwd().relative_to(root)
    except ValueError:
        return root / "results"
    return Path(os.path.relpath(root / "results"))


__all__ = ["project_root", "notebooks_dir", "generated_dir", "results_dir"]
