"""Serve MathJax 3 from the built site instead of a CDN (the book must work with no network).

MathJax comes from the ``sphinx-mathjax-offline`` wheel on PyPI (MathJax 3.2.2, in the ``book`` extra of
pyproject.toml); nothing is vendored in this repository. After a successful HTML build this extension copies
the MathJax tree into ``<outdir>/_static/mathjax/``, leaving out the combined components the book does not
load, and checks that ``mathjax_path`` (set in _config.yml, relative to ``_static/``) points at a copied file.
"""
from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

DISTRIBUTION = "sphinx-mathjax-offline"
TREE = "sphinx-mathjax-offline/static/mathjax"
TARGET = "mathjax"  # under _static/


def mathjax_source() -> Path:
    """The directory holding MathJax 3 in the installed ``sphinx-mathjax-offline`` distribution."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise ExtensionError(
            f"the book serves MathJax locally from the '{DISTRIBUTION}' package, which is not installed: "
            "run `pip install -e '.[book]'` (or `make book`, which installs it)") from exc
    root = Path(dist.locate_file(TREE))
    if not (root / "tex-chtml.js").is_file():
        raise ExtensionError(f"'{DISTRIBUTION}' is installed but has no MathJax tree at {root}")
    return root


def _entry_point(app: Sphinx) -> str:
    """The file under _static/mathjax/ that mathjax_path names (it must be a relative path)."""
    path = str(app.config.mathjax_path or "")
    if "://" in path or path.startswith("/"):
        raise ExtensionError(f"mathjax_path must be relative to _static/ (offline book), got {path!r}")
    if not path.startswith(TARGET + "/"):
        raise ExtensionError(f"mathjax_path must start with '{TARGET}/', got {path!r}")
    return path[len(TARGET) + 1:].split("?")[0]


def check_config(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    source = mathjax_source()
    entry = _entry_point(app)
    if not (source / entry).is_file():
        raise ExtensionError(f"mathjax_path names {entry!r}, which {DISTRIBUTION} does not ship")


def copy_mathjax(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    entry = _entry_point(app)
    target = Path(app.outdir) / "_static" / TARGET

    def ignore(directory: str, names: list[str]) -> list[str]:
        # At the top level keep only the component that mathjax_path loads; the sub-folders (fonts, lazily
        # loaded TeX extensions, accessibility and menu code) are all kept.
        if Path(directory) == source:
            return [n for n in names if n.endswith(".js") and n != entry]
        return []

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=ignore)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", check_config)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
