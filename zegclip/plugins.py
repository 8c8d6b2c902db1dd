"""Plugins: packages that fill the core's registries (presets, default CLIP weights, datasets) when imported.

The core never imports a plugin by code; it loads the plugins the first time one of its registries is consulted
(:func:`load_plugins`): the bundled mini world (``zegclip.mini``) and any package that declares an entry point in the
group ``zegclip.plugins`` (``[project.entry-points."zegclip.plugins"] name = "package.module"``). Loading on demand,
not when ``zegclip`` is imported, keeps ``import zegclip`` and ``python -m zegclip --help`` free of torch.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

BUNDLED = ("zegclip.mini",)
ENTRY_POINT_GROUP = "zegclip.plugins"
_state = {"loaded": False}


def load_plugins() -> None:
    """Import every plugin once (idempotent; a plugin that fails to import raises its error)."""
    if _state["loaded"]:
        return
    _state["loaded"] = True
    names = list(BUNDLED) + [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.value not in BUNDLED]
    for name in names:
        importlib.import_module(name)


__all__ = ["BUNDLED", "ENTRY_POINT_GROUP", "load_plugins"]
