"""Tiny stand-ins for the real benchmarks, in their *official download* layouts, drawn from mini-world scenes.

Nothing here is real data: the images and label maps are mini-world scenes (:func:`zegclip.mini.render.render_scene`),
each mini class painted with the id of one class of the target dataset, so image and label agree. They exist so
that ``python -m zegclip prepare`` and the ``paper`` profile (``python -m zegclip reproduce --profile paper --quick``)
can run end to end on a CPU. ``python -m zegclip mini fake-datasets OUT`` writes (``H x W`` = ``72 x 96`` by
default; ``n`` images per split, default 4)::

    OUT/VOCdevkit/VOC2012/                        VOCtrainval_11-May-2012.tar
        JPEGImages/<id>.jpg                       every VOC and SBD image (as the real VOC2012 has them all)
        SegmentationClass/<id>.png                palette PNG (VOC colour map), raw 0 background, 1..20, 255 void
                                                  on a 1-pixel band along every label edge
        ImageSets/Segmentation/{train,val}.txt    n ids each
    OUT/benchmark_RELEASE/dataset/                SBD benchmark.tgz
        cls/<id>.mat                              MATLAB struct GTcls: Segmentation (H, W) uint8 0..20,
                                                  Boundaries (20, 1) cell of sparse (H, W), CategoriesPresent
        img/<id>.jpg  train.txt  val.txt          train: 1 VOC train id + 2 new; val: 1 VOC val id + 1 new
    OUT/coco_stuff164k/                           COCO 2017 images + stuffthingmaps_trainval2017.zip
        images/{train2017,val2017}/<12 digits>.jpg
        annotations/{train2017,val2017}/<12 digits>.png   grey PNG, raw COCO-Stuff ids 0..181, 255 unlabeled
    OUT/VOCdevkit/VOC2010/                        VOCtrainval_03-May-2010.tar (the PASCAL Context images)
        JPEGImages/<id>.jpg  ImageSets/Main/{train,val}.txt
    OUT/trainval/<id>.mat                         PASCAL Context trainval.tar.gz: LabelMap (H, W) uint16, 459-class ids
    OUT/trainval_merged.json                      Detail API: images[{file_name, image_id, phase, height, width}]

and then, in place (``OUT`` becomes a ``data_root`` of the paper profile)::

    python -m zegclip prepare voc OUT/VOCdevkit/VOC2012 --sbd OUT/benchmark_RELEASE
    python -m zegclip prepare coco OUT/coco_stuff164k
    python -m zegclip prepare context OUT/trainval --voc2010 OUT/VOCdevkit/VOC2010 --json OUT/trainval_merged.json

Classes: VOC from ``mini-voc`` scenes, COCO-Stuff and Context from ``mini-coco`` scenes (they have stuff). Mini seen
classes become seen classes of the target split and mini unseen ones unseen ones (for COCO-Stuff also things to
things and stuff to stuff), in order (:func:`class_map`); the mini background becomes VOC background (0),
COCO-Stuff "unlabeled" (255) and, for Context, the 459-class id 1, a class outside the 59 (prepare maps it to 0).
Every image shows at least one seen and one unseen class, so that an evaluation on two of them has mIoU(S),
mIoU(U) and hIoU.
"""
from __future__ import annotations

import dataclasses
import io
import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from ..data.classes import ClassSplit, load_class_split
from ..io import atomic_path, write_bytes_atomic, write_id_list, write_text_atomic
from .grammar import World, get_world
from .render import render_scene

__all__ = ["write_fake_datasets", "class_map", "prepare_commands", "FAKE_SHAPE"]

FAKE_SHAPE = (72, 96)  # (H, W) of every image: landscape, as most VOC/COCO photos are
_CONTEXT_OTHER = 1  # a 459-class id outside the 59 classes: the mini background in Context label maps
# scene streams (render_scene's seed) of each dataset, so that no two datasets share images
_STREAMS = {"voc": 9001, "coco": 9002, "context": 9003}


def class_map(world: World | str, target: ClassSplit | str) -> np.ndarray:
    """(num mini classes,) int64: the target class index (in ``target``'s class order) of every mini class.

    Seen mini classes take the target's seen classes in order, unseen ones its unseen classes; for COCO-Stuff
    things (ids 0..79) go to things and stuff to stuff; Context-60's ``background`` (index 0) is never taken.
    """
    world = get_world(world)
    target = load_class_split(target) if isinstance(target, str) else target
    unseen = set(target.unseen)
    skip = {0} if target.classes[0] == "background" else set()
    pools: dict[tuple[bool, str | None], list[int]] = {}
    kinds = target.name == "coco"  # COCO-Stuff: 80 things, then 91 stuff classes
    for i in range(target.num_classes):
        if i not in skip:
            pools.setdefault((i in unseen, ("thing" if i < 80 else "stuff") if kinds else None), []).append(i)
    out = np.zeros(world.num_classes, dtype=np.int64)
    for cid in range(world.num_classes):
        key = (cid in set(world.split.unseen), world.kind(cid) if kinds else None)
        if not pools.get(key):
            raise ValueError(f"{target.name} has too few {'unseen' if key[0] else 'seen'} classes for {world.name}")
        out[cid] = pools[key].pop(0)
    return out


def _scenes(world: World, stream: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini scenes cropped to :data:`FAKE_SHAPE`: (image (H, W, 3) uint8, label (H, W) uint8, 255 = background),
    only those that show a seen and an unseen class, so that every evaluation of a few images has mIoU(S),
    mIoU(U) and hIoU (a result without them is not a valid result)."""
    h, w = FAKE_SHAPE
    unseen = set(world.split.unseen)
    for index in itertools.count():
        image, label, _ = render_scene(world, stream, index)
        present = {int(c) for c in np.unique(label[:h, :w])} - {world.ignore_index}
        if present & unseen and present - unseen:
            yield image[:h, :w], label[:h, :w]


def _lut(world: World, values: np.ndarray, background: int, dtype=np.uint8) -> np.ndarray:
    lut = np.full(256, background, dtype=np.int64)
    lut[: world.num_classes] = values
    return lut.astype(dtype)


def _jpeg(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=95)


def _png(path: Path, array: np.ndarray, mode: str, palette: list[int] | None = None) -> None:
    img = Image.fromarray(np.ascontiguousarray(array), mode=mode)
    if palette is not None:
        img.putpalette(palette)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _savemat(path: Path, data: dict[str, Any]) -> None:
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, data)
    write_bytes_atomic(path, buffer.getvalue())


def _edges(label: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of another value (VOC marks such a band 255, "void")."""
    edge = np.zeros(label.shape, dtype=bool)
    diff_y = label[1:] != label[:-1]
    diff_x = label[:, 1:] != label[:, :-1]
    edge[1:] |= diff_y
    edge[:-1] |= diff_y
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    return edge


def _write_voc(out: Path, n: int, world: World) -> dict[str, list[str]]:
    from scipy import sparse

    from ..data.palettes import voc_palette

    lut = _lut(world, class_map(world, "voc") + 1, 0)  # raw VOC: 0 background, k + 1 for class k
    palette = voc_palette(256).reshape(-1).tolist()
    voc_train = [f"2007_{i:06d}" for i in range(100, 100 + n)]
    voc_val = [f"2007_{i:06d}" for i in range(200, 200 + n)]
    sbd_train = [voc_train[0], "2008_000100", "2008_000101"]
    sbd_val = [voc_val[0], "2008_000200"]
    voc = out / "VOCdevkit" / "VOC2012"
    sbd = out / "benchmark_RELEASE" / "dataset"
    for ident, (image, label) in zip(dict.fromkeys(voc_train + voc_val + sbd_train + sbd_val),
                                     _scenes(world, _STREAMS["voc"])):
        raw = lut[label]
        _jpeg(voc / "JPEGImages" / f"{ident}.jpg", image)
        if ident in voc_train or ident in voc_val:
            void = raw.copy()
            void[_edges(raw)] = 255
            _png(voc / "SegmentationClass" / f"{ident}.png", void, "P", palette)
        if ident in sbd_train or ident in sbd_val:
            _jpeg(sbd / "img" / f"{ident}.jpg", image)
            present = np.array([[c] for c in range(1, 21) if (raw == c).any()], dtype=np.uint8).reshape(-1, 1)
            bounds = np.empty((20, 1), dtype=object)
            for c in range(20):
                bounds[c, 0] = sparse.csc_matrix(_edges(raw == c + 1) & (raw == c + 1))
            _savemat(sbd / "cls" / f"{ident}.mat",
                     {"GTcls": {"Segmentation": raw, "Boundaries": bounds, "CategoriesPresent": present}})
    write_id_list(voc / "ImageSets" / "Segmentation" / "train.txt", voc_train)
    write_id_list(voc / "ImageSets" / "Segmentation" / "val.txt", voc_val)
    write_id_list(sbd / "train.txt", sbd_train)
    write_id_list(sbd / "val.txt", sbd_val)
    return {"voc train": voc_train, "voc val": voc_val, "sbd train": sbd_train, "sbd val": sbd_val}


def _write_coco(out: Path, n: int, world: World) -> dict[str, list[str]]:
    from ..data.prepare import COCO_STUFF_USED_IDS

    lut = _lut(world, np.asarray(COCO_STUFF_USED_IDS)[class_map(world, "coco")], 255)
    root = out / "coco_stuff164k"
    ids: dict[str, list[str]] = {}
    scenes = _scenes(world, _STREAMS["coco"])
    for split in ("train2017", "val2017"):
        ids[split] = []
        for k in range(n):
            ident = f"{139 + 1000 * k + (0 if split.startswith('train') else 500_000):012d}"
            image, label = next(scenes)
            _jpeg(root / "images" / split / f"{ident}.jpg", image)
            _png(root / "annotations" / split / f"{ident}.png", lut[label], "L")
            ids[split].append(ident)
    return ids


def _write_context(out: Path, n: int, world: World) -> dict[str, list[str]]:
    from ..data.prepare import CONTEXT_459_IDS

    names = load_class_split("context60").classes
    lut = _lut(world, np.asarray([CONTEXT_459_IDS[names[i]] for i in class_map(world, "context60")]),
               _CONTEXT_OTHER, np.uint16)
    voc2010 = out / "VOCdevkit" / "VOC2010"
    splits = {"train": [f"2008_{i:06d}" for i in range(300, 300 + n)],
              "val": [f"2008_{i:06d}" for i in range(400, 400 + n)]}
    images = []
    scenes = _scenes(world, _STREAMS["context"])
    for k, (phase, ident) in enumerate((p, i) for p, ids in splits.items() for i in ids):
        image, label = next(scenes)
        _jpeg(voc2010 / "JPEGImages" / f"{ident}.jpg", image)
        _savemat(out / "trainval" / f"{ident}.mat", {"LabelMap": lut[label]})
        images.append({"file_name": f"{ident}.jpg", "image_id": k + 1, "phase": phase,
                       "height": int(image.shape[0]), "width": int(image.shape[1])})
    for split, ids in splits.items():
        write_id_list(voc2010 / "ImageSets" / "Main" / f"{split}.txt", ids)
    categories = [{"category_id": CONTEXT_459_IDS[name], "name": name} for name in names[1:]]
    write_text_atomic(out / "trainval_merged.json", json.dumps({"images": images, "categories": categories}))
    return splits


def write_fake_datasets(out: str | os.PathLike, n: int = 4, datasets: tuple[str, ...] = ("voc", "coco", "context"),
                        size: int = FAKE_SHAPE[1]) -> dict[str, Any]:
    """Write the tiny VOC+SBD, COCO-Stuff and PASCAL Context downloads under ``out`` (layouts in the module
    docstring); ``n`` images per split (>= 1). Returns ``{dataset: {list name: ids}, "prepare": [argv, ...]}``.

    ``size`` is the square the scenes are rendered at (>= 96, then cropped to :data:`FAKE_SHAPE`). Every file is
    written atomically; writing again over the same folder gives the same files.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"images per split must be an integer >= 1, got {n!r}")
    if size < max(FAKE_SHAPE):
        raise ValueError(f"size must be at least {max(FAKE_SHAPE)}, got {size}")
    unknown = sorted(set(datasets) - set(_STREAMS))
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; choose from {sorted(_STREAMS)}")
    out = Path(out)
    writers = {"voc": (_write_voc, "mini-voc"), "coco": (_write_coco, "mini-coco"),
               "context": (_write_context, "mini-coco")}
    summary: dict[str, Any] = {}
    for name in datasets:
        writer, world = writers[name]
        summary[name] = writer(out, n, dataclasses.replace(get_world(world), image_size=size))
    summary["prepare"] = prepare_commands(out, datasets)
    return summary


def prepare_commands(out: str | os.PathLike, datasets: tuple[str, ...] = ("voc", "coco", "context")) -> list[list[str]]:
    """The ``python -m zegclip`` argument lists that prepare what :func:`write_fake_datasets` wrote, in place."""
    out = Path(out)
    commands = {
        "voc": ["prepare", "voc", str(out / "VOCdevkit" / "VOC2012"), "--sbd", str(out / "benchmark_RELEASE")],
        "coco": ["prepare", "coco", str(out / "coco_stuff164k")],
        "context": ["prepare", "context", str(out / "trainval"), "--voc2010", str(out / "VOCdevkit" / "VOC2010"),
                    "--json", str(out / "trainval_merged.json")],
    }
    return [commands[d] for d in datasets]
