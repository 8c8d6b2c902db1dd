"""The mini world's scene generator, packaged mini splits and MiniSegmentation dataset (fast: a few seconds)."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch

from zegclip.data import load_class_split
from zegclip.data.datasets import DATASET_NAMES, build_dataset, registered_datasets
from zegclip.data.transforms import train_transforms
from zegclip.mini.captions import caption
from zegclip.mini.dataset import MiniSegmentation
from zegclip.mini.grammar import COLOURS, WORLD_NAMES, World, check_compositional, get_world
from zegclip.mini.render import COLOUR_JITTER, GENERATOR_VERSION, render_scene, render_single


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees of (..., 3) RGB values (undefined -> nan for greys)."""
    rgb = rgb.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    d = np.where(mx - mn == 0, np.nan, mx - mn)
    h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    return 60.0 * h


_COLOUR_NAMES = list(COLOURS)
_COLOUR_HUES = _hue(np.array([COLOURS[c] for c in _COLOUR_NAMES]))


def _nearest_colour(pixels: np.ndarray) -> np.ndarray:
    """Index into _COLOUR_NAMES of the base colour with the nearest hue (circular distance)."""
    d = np.abs(_hue(pixels)[:, None] - _COLOUR_HUES[None, :])
    d = np.minimum(d, 360 - d)
    return d.argmin(1)


# ----------------------------------------------------------------------------------------------- splits
def test_packaged_mini_splits():
    voc = load_class_split("mini-voc")
    assert (voc.num_classes, voc.num_seen, voc.num_unseen) == (20, 15, 5)
    assert voc.classes[:5] == ("red circle", "red square", "red triangle", "red cross", "green circle")
    assert voc.classes[-1] == "purple cross"
    assert set(voc.unseen_names) == {"red circle", "green square", "blue triangle", "yellow cross", "purple circle"}
    coco = load_class_split("mini-coco")
    assert (coco.num_classes, coco.num_seen, coco.num_unseen) == (36, 32, 4)
    assert coco.classes[:5] == ("red circle", "red square", "red triangle", "red cross", "red star")
    assert coco.classes[29] == "orange star"
    stuff = ("light stripes", "light dots", "light waves", "dark stripes", "dark dots", "dark waves")
    assert coco.classes[30:] == stuff
    assert set(coco.unseen_names) == {"red star", "green cross", "orange circle", "dark dots"}
    for s in (voc, coco):
        assert s.ignore_index == 255 and s.reduce_zero_label is False and s.embedding_file is None
        assert "mini world" in s.source and "generator version 3" in s.source
        check_compositional(s)  # passes
    assert GENERATOR_VERSION == 3  # version 3: shape surface patterns identifiable inside one patch


def test_impossible_split_names_class_and_attribute():
    voc = load_class_split("mini-voc")
    reds = [voc.index(f"red {s}") for s in ("circle", "square", "triangle", "cross")]
    bad = voc.with_unseen(reds)  # no seen class is red
    with pytest.raises(ValueError, match=r"unseen class 'red \w+' has colour 'red'"):
        check_compositional(bad)
    crosses = [voc.index(f"{c} cross") for c in ("red", "green", "blue", "yellow", "purple")]
    with pytest.raises(ValueError, match=r"has shape 'cross'"):
        check_compositional(voc.with_unseen(crosses))
    coco = load_class_split("mini-coco")
    dots = [coco.index("light dots"), coco.index("dark dots")]
    with pytest.raises(ValueError, match=r"unseen class '\w+ dots' has texture 'dots'"):
        check_compositional(coco.with_unseen(dots))
    darks = [coco.index(f"dark {t}") for t in ("stripes", "dots", "waves")]
    with pytest.raises(ValueError, match=r"has tint 'dark'"):
        check_compositional(coco.with_unseen(darks))
    with pytest.raises(ValueError, match="colour"):  # a World refuses an impossible split too
        World("bad", bad)


def test_empty_and_foreign_splits_rejected():
    with pytest.raises(ValueError, match="empty"):
        check_compositional(types.SimpleNamespace(name="e", classes=(), seen=(), unseen=()))
    with pytest.raises(ValueError, match="empty"):
        check_compositional({"name": "e", "classes": ["red circle"], "seen": [], "unseen": [0]})
    with pytest.raises(ValueError, match="'aeroplane' is not a mini-world class"):
        check_compositional(load_class_split("voc"))


def test_get_world():
    assert WORLD_NAMES == registered_datasets() == ("mini-voc", "mini-coco", "mini-voc-b")
    assert not set(registered_datasets()) & set(DATASET_NAMES)  # so run.py's "data.root is not set" check skips them
    w = get_world("mini-coco")
    assert w.style == "a" and w.image_size == 64 and w.num_classes == 36
    assert w.things == tuple(range(30)) and w.stuff == tuple(range(30, 36))
    assert w.attributes(0) == ("red", "circle") and w.attributes(34) == ("dark", "dots")
    assert w.kind(0) == "thing" and w.kind(34) == "stuff"
    b = get_world("mini-voc-b")
    assert b.style == "b" and b.split == get_world("mini-voc").split
    with pytest.raises(ValueError, match="mini-voc, mini-coco, mini-voc-b"):
        get_world("mini-ade")
    with pytest.raises(ValueError, match="style"):
        World("x", w.split, style="c")


# --------------------------------------------------------------------------------------------- rendering
@pytest.mark.parametrize("name", WORLD_NAMES)
def test_determinism_and_format(name):
    w = get_world(name)
    img, lab, present = render_scene(w, 3, 7)
    img2, lab2, present2 = render_scene(name, 3, 7)
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
    assert lab.dtype == np.uint8 and lab.shape == (64, 64)
    assert img.tobytes() == img2.tobytes() and lab.tobytes() == lab2.tobytes() and present == present2
    assert present == sorted(set(np.unique(lab).tolist()) - {255})
    assert render_scene(w, 3, 8)[0].tobytes() != img.tobytes()
    assert render_scene(w, 4, 7)[0].tobytes() != img.tobytes()
    assert (lab == 255).any()  # some unlabelled background is visible
    if w.stuff:
        assert any(c in w.stuff for c in present) and any(c in w.things for c in present)
    with pytest.raises(ValueError, match="index"):
        render_scene(w, 0, -1)


def test_style_b_differs_from_style_a():
    for i in range(5):
        a, la, _ = render_scene("mini-voc", 0, i)
        b, lb, _ = render_scene("mini-voc-b", 0, i)
        assert a.tobytes() != b.tobytes() and la.tobytes() != lb.tobytes()


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_masks_rebuild_label_exactly_with_occlusion(name):
    """Painting the returned masks in drawing order onto 255 gives the label: later regions override."""
    w = get_world(name)
    overlaps = 0
    for i in range(60):
        img, lab, present, drawn = render_scene(w, 0, i, return_masks=True)
        rebuilt = np.full_like(lab, 255)
        for cid, mask in drawn:
            rebuilt[mask] = cid
        assert np.array_equal(rebuilt, lab)
        objects = [(c, m) for c, m in drawn if w.kind(c) == "thing"]
        assert w.min_objects <= len(objects) <= w.max_objects
        for k, (cid, mask) in enumerate(objects):
            later = np.zeros_like(mask)
            for _, m in objects[k + 1:]:
                later |= m
            assert (lab[mask & ~later] == cid).all()
            if (mask & later).any():
                overlaps += 1
            # occlusion is limited: every object keeps at least a third of its pixels visible
            assert (mask & ~later).sum() >= mask.sum() / 3
        assert all(m.sum() > 20 for _, m in objects)  # no degenerate (near-empty) shapes
    assert overlaps > 0


@pytest.mark.parametrize("name", ["mini-voc", "mini-coco"])
def test_flat_render_pixels_match_masks_exactly(name):
    """Without shading, each object's visible pixels are one colour within the jitter of its base colour, the
    labels are identical to the shaded render, and everything unlabelled or stuff is achromatic grey."""
    w = get_world(name)
    for i in range(40):
        img, lab, _, drawn = render_scene(w, 1, i, shading=False, return_masks=True)
        img_s, lab_s, _ = render_scene(w, 1, i)
        assert np.array_equal(lab, lab_s)
        objects = [(c, m) for c, m in drawn if w.kind(c) == "thing"]
        for k, (cid, mask) in enumerate(objects):
            visible = mask.copy()
            for _, m in objects[k + 1:]:
                visible &= ~m
            px = img[visible].astype(int)
            assert (px == px[0]).all()  # a single flat colour, exactly on the mask
            base = np.array(COLOURS[w.attributes(cid)[0]])
            assert (np.abs(px[0] - base) <= COLOUR_JITTER + 1).all()
        grey = ~np.isin(lab, w.things)
        for im in (img, img_s):
            assert (im[grey][:, 0] == im[grey][:, 1]).all() and (im[grey][:, 1] == im[grey][:, 2]).all()


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_shaded_object_pixels_keep_their_class_hue(name):
    """With shading and noise every object pixel's hue is still nearest to its class colour's hue."""
    w = get_world(name)
    for i in range(40):
        img, lab, present = render_scene(w, 2, i)
        for cid in present:
            if w.kind(cid) != "thing":
                continue
            px = img[lab == cid]
            want = _COLOUR_NAMES.index(w.attributes(cid)[0])
            assert (_nearest_colour(px) == want).all(), (i, w.classes[cid])


def test_render_single():
    w = get_world("mini-coco")
    img, lab, cid = render_single(w, 0, 5)
    assert cid in w.things and set(np.unique(lab).tolist()) == {cid, 255}
    img2, lab2, cid2 = render_single(w, 0, 5)
    assert cid2 == cid and img.tobytes() == img2.tobytes()
    img, lab, cid = render_single(w, 0, 5, class_id=7)
    assert cid == 7 and (lab == 7).sum() > 200  # large: >= 24 px across
    assert (_nearest_colour(img[lab == 7]) == _COLOUR_NAMES.index(w.attributes(7)[0])).all()
    ids = [render_single(w, 0, i)[2] for i in range(300)]
    assert set(ids) == set(w.things)  # uniform over the things
    with pytest.raises(ValueError, match="stuff"):
        render_single(w, 0, 0, class_id=31)


@pytest.mark.parametrize("name", ["mini-voc", "mini-coco"])
def test_captions_mention_exactly_the_present_classes(name):
    w = get_world(name)
    rng = np.random.default_rng(0)
    texts = set()
    for i in range(100):
        _, _, present = render_scene(w, 0, i)
        text = caption(w, present, rng)
        texts.add(text.split(" a ")[0])
        for cid, cname in enumerate(w.classes):
            assert text.count(cname) == (1 if cid in present else 0), (text, cname)
        assert "  " not in text and text == text.strip()
    assert len(texts) > 3  # several phrasings
    assert caption(w, [0, 0], 1) == caption(w, [0], 1)
    with pytest.raises(ValueError):
        caption(w, [], 0)


def test_speed_is_a_benchmark_command(capsys):
    """Rendering speed is measured by `python -m zegclip mini speed` (medians, side by side), never asserted here."""
    from zegclip.cli import main

    assert main(["mini", "speed", "--scenes", "3", "--repeats", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["mini-voc", "mini-coco"]
    assert all("median of 2 x 3 scenes" in line for line in lines)


# ---------------------------------------------------------------------------------------------- datasets
def test_mini_segmentation_items():
    ds = MiniSegmentation("mini-voc", "train", size=10)
    assert len(ds) == 10 and ds.num_classes == 20 and ds.ignore_index == 255
    assert ds.classes == load_class_split("mini-voc").classes and ds.class_split is ds.split
    item = ds[3]
    assert set(item) == {"image", "label", "name"} and item["name"] == "mini-voc-train-3"
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 64, 64)
    assert type(item["image"]) is torch.Tensor and type(item["label"]) is torch.Tensor
    assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 64)
    img, lab = ds.load(3)
    assert np.array_equal(item["image"].numpy().transpose(1, 2, 0), img) and np.array_equal(item["label"].numpy(), lab)
    assert ds[-1]["name"] == "mini-voc-train-9"
    with pytest.raises(IndexError):
        ds[10]
    assert len(MiniSegmentation("mini-coco")) == 2000 and len(MiniSegmentation("mini-coco", "val")) == 200
    with pytest.raises(ValueError, match="split"):
        MiniSegmentation("mini-voc", "test")
    with pytest.raises(ValueError, match="size"):
        MiniSegmentation("mini-voc", size=0)
    assert len(MiniSegmentation("mini-voc", size=3, generator=GENERATOR_VERSION)) == 3
    with pytest.raises(ValueError, match=f"generator.*version 2.*version {GENERATOR_VERSION}"):
        MiniSegmentation("mini-voc", size=3, generator=2)


def test_train_val_disjoint_and_seeded():
    train = MiniSegmentation("mini-voc", "train", size=50)
    val = MiniSegmentation("mini-voc", "val", size=50)
    other = MiniSegmentation("mini-voc", "train", size=50, seed=1)
    a = {train.load(i)[0].tobytes() for i in range(50)}
    assert len(a) == 50
    assert a.isdisjoint(val.load(i)[0].tobytes() for i in range(50))
    assert a.isdisjoint(other.load(i)[0].tobytes() for i in range(50))
    assert train.load(5)[0].tobytes() == MiniSegmentation("mini-voc", "train", size=50).load(5)[0].tobytes()


def test_build_dataset_mini_with_train_transforms():
    tf = train_transforms(crop_size=64, scale=(256, 64), photometric=False)
    ds = build_dataset("mini-voc", None, "train", transforms=tf)
    assert isinstance(ds, MiniSegmentation) and len(ds) == 2000
    torch.manual_seed(0)
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 64)
    values = set(item["label"].unique().tolist())
    assert values <= set(range(20)) | {255}
    small = build_dataset("mini-coco", "ignored", "val", size=5, seed=2)
    assert len(small) == 5 and small.seed == 2 and small.num_classes == 36
    assert build_dataset("mini-voc-b", None, "val", size=3)[0]["name"] == "mini-voc-b-val-0"
    with pytest.raises(ValueError, match="mini-voc"):
        build_dataset("mini-nothing", None)


def test_world_with_custom_split_and_size():
    split = load_class_split("mini-voc")
    w = World("custom", dataclasses.replace(split, name="custom"), image_size=96, min_objects=2, max_objects=2)
    img, lab, present = render_scene(w, 0, 0)
    assert img.shape == (96, 96, 3) and lab.shape == (96, 96) and 1 <= len(present) <= 2
