"""Tell the results pages which profile produced the notebooks that this build renders.

The report notebooks in ``book/generated/`` were executed by papermill, which records the parameters it injected
(``profile``, ``results_dir``) in each notebook's metadata. This extension reads them when the build starts and
exposes a MyST substitution ``{{ results_profile }}`` (for example ``mini``, or ``mini, paper`` for a mixed build,
or a plain warning when the notebooks carry no papermill record), so the book states the profile from the files
themselves rather than from a hard-coded sentence.
"""
from __future__ import annotations

import json
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config

GENERATED = Path("book") / "generated"


def notebook_profiles(generated: Path) -> dict[str, str | None]:
    """``{notebook stem: profile}`` from papermill's metadata (None when a notebook has no record of it)."""
    found: dict[str, str | None] = {}
    for path in sorted(generated.glob("*.ipynb")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError):
            found[path.stem] = None
            continue
        params = (meta.get("papermill") or {}).get("parameters") or {}
        found[path.stem] = params.get("profile")
    return found


def describe(profiles: dict[str, str | None]) -> str:
    names = sorted({p for p in profiles.values() if p})
    missing = sorted(stem for stem, p in profiles.items() if not p)
    if not profiles:
        return "none (no executed notebooks were found in book/generated/)"
    text = ", ".join(f"`{n}`" for n in names) if names else "unknown"
    if missing:
        text += f" (not recorded by papermill for: {', '.join(missing)})"
    return text


def add_substitution(app: Sphinx, config: Config) -> None:
    profiles = notebook_profiles(Path(app.srcdir) / GENERATED)
    subs = dict(getattr(config, "myst_substitutions", None) or {})
    subs["results_profile"] = describe(profiles)
    config.myst_substitutions = subs


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", add_substitution)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
