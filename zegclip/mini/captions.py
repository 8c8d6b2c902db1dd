"""Captions of mini-world scenes: the text side of the image-caption pairs the mini-CLIP is pretrained on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .grammar import World, get_world

__all__ = ["caption"]


_TEMPLATES = ("a photo of {}", "a picture of {}", "an image of {}", "{}", "a scene with {}", "there is {}")


def _join(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def caption(world: World | str, present: Sequence[int], rng: np.random.Generator | int | None = None) -> str:
    """A caption mentioning every class in ``present`` exactly once, in random order, with a random phrasing,
    e.g. ``"a photo of a red circle and a blue star"`` or ``"a red circle, a blue star on dark dots"``."""
    world = get_world(world)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    ids = list(dict.fromkeys(world._check_id(c) for c in present))
    if not ids:
        raise ValueError("caption needs at least one present class")
    order = [ids[i] for i in rng.permutation(len(ids))]

    def phrase(cid: int) -> str:
        name = world.classes[cid]
        if world.kind(cid) == "stuff":
            return name
        return ("an " if name[0] in "aeiou" else "a ") + name

    template = _TEMPLATES[int(rng.integers(0, len(_TEMPLATES)))]
    things = [c for c in order if world.kind(c) == "thing"]
    stuff = [c for c in order if world.kind(c) == "stuff"]
    if things and stuff and rng.random() < 0.4:
        body = _join([phrase(c) for c in things]) + " on " + _join([phrase(c) for c in stuff])
    else:
        body = _join([phrase(c) for c in order])
    return template.format(body)
