"""The mini world as a segmentation dataset: :class:`MiniSegmentation`, its registration with the core's dataset
registry, and a benchmark of rendering speed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.classes import ClassSplit
from ..data.segmentation import ClassSplitMixin, make_item
from .grammar import WORLD_NAMES, World, get_world
from .render import GENERATOR_VERSION, render_scene

__all__ = ["MiniSegmentation", "register_datasets", "render_speed"]


class MiniSegmentation(ClassSplitMixin, torch.utils.data.Dataset):
    """Generated scenes of a mini world as a segmentation dataset (same item format as
    :class:`zegclip.data.segmentation.SegmentationDataset`).

    ``split="train"`` and ``"val"`` use disjoint seed streams (``2 * seed`` and ``2 * seed + 1``); default sizes
    2000 and 200. ``"val"`` holds the evaluation scenes that every table reports; ``"calib"`` (stream
    ``2 * seed + CALIB_STREAM``, default size 200) is a third, disjoint stream on which settings of the recipe, the
    world and the mini-CLIP are chosen, so that no choice is ever made on the scenes that are reported. Items are
    rendered on the fly (about a millisecond each) and are identical across runs. ``generator``, when given, must be
    :data:`GENERATOR_VERSION` (run configs record it, so that a result of another world version is never reused).
    ``dataset[i]`` is ``{"image": Tensor, "label": LongTensor (H, W), "name": "<world>-<split>-<i>"}``; without
    ``transforms`` the image is the uint8 (3, H, W) tensor, as for SegmentationDataset.
    """

    DEFAULT_SIZES = {"train": 2000, "val": 200, "calib": 200}
    CALIB_STREAM = 1_000_001

    def __init__(
        self,
        world: World | str,
        split: str = "train",
        size: int | None = None,
        seed: int = 0,
        transforms: Any = None,
        generator: int | None = None,
    ) -> None:
        if generator is not None and generator != GENERATOR_VERSION:
            raise ValueError(f"generator: the run asks for mini-world generator version {generator!r}, but this "
                             f"package generates version {GENERATOR_VERSION}; its results are not comparable")
        self.world = get_world(world)
        if split not in self.DEFAULT_SIZES:
            raise ValueError(f"split must be one of {list(self.DEFAULT_SIZES)}, got {split!r}")
        if size is None:
            size = self.DEFAULT_SIZES[split]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.subset = split
        self.size = size
        self.seed = seed
        self.stream = 2 * seed + {"train": 0, "val": 1, "calib": self.CALIB_STREAM}[split]
        self.transforms = transforms
        self.class_split = self.world.split
        self.reduce_zero_label = False
        self.problems: list[str] = []
        self.description = f"mini world {self.world.name} {split} (seed {seed}, generator v{GENERATOR_VERSION})"

    @property
    def split(self) -> ClassSplit:
        """The class split (alias of ``class_split``); the subset name is ``subset``."""
        return self.class_split

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} items, split {self.class_split.name!r}, "
                f"{self.num_classes} classes, {self.description})")

    def _index(self, index: int) -> int:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        return index

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, label (H, W) int64), untransformed."""
        image, label, _ = render_scene(self.world, self.stream, self._index(index))
        return image, label.astype(np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._index(index)
        image, label, _ = render_scene(self.world, self.stream, index)
        return make_item(image, label, self.transforms, f"{self.world.name}-{self.subset}-{index}")


def register_datasets() -> None:
    """Register every packaged world with :func:`zegclip.data.datasets.register_dataset` (idempotent), so that
    ``build_dataset("mini-voc", None, "train")`` and run files with ``data.dataset: mini-voc`` work."""
    from functools import partial

    from ..data.datasets import register_dataset

    for name in WORLD_NAMES:
        register_dataset(name, partial(MiniSegmentation, name))


def render_speed(worlds: Sequence[str] = ("mini-voc", "mini-coco"), scenes: int = 200, repeats: int = 5) -> dict:
    """Rendering speed, measured side by side: for each world, ``repeats`` timings of rendering scenes
    ``0..scenes-1`` (stream 0), interleaved world by world; returns {world: {"scenes", "repeats",
    "median_seconds", "scenes_per_second"}}. A benchmark (``python -m zegclip mini speed``), never a test assertion."""
    import statistics
    import time

    if scenes < 1 or repeats < 1:
        raise ValueError(f"scenes and repeats must be >= 1, got {scenes} and {repeats}")
    times: dict[str, list[float]] = {w: [] for w in worlds}
    for _ in range(repeats):
        for w in worlds:
            world = get_world(w)
            start = time.perf_counter()
            for i in range(scenes):
                render_scene(world, 0, i)
            times[w].append(time.perf_counter() - start)
    return {w: {"scenes": scenes, "repeats": repeats, "median_seconds": statistics.median(t),
                "scenes_per_second": scenes / statistics.median(t)} for w, t in times.items()}
