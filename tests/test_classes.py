"""Class lists and seen/unseen splits (zegclip.data)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA

from zegclip.data import ClassSplit, available_splits, load_class_split

EMBEDDING_DIR = SHARED_DATA / "clip-text-embeddings"

COCO_UNSEEN_IDS = [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160]
COCO_UNSEEN_NAMES = (
    "cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "cardboard",
    "clouds", "grass", "playingfield", "river", "road", "tree", "wall-concrete",
)
CONTEXT60_UNSEEN_IDS = [1, 7, 8, 15, 20, 25, 32, 34, 49, 55]


# --------------------------------------------------------------- packaged


def test_available_splits():
    assert available_splits() == ["coco", "context59", "context60", "mini-coco", "mini-voc", "voc"]


@pytest.mark.parametrize(
    "name, n, n_seen, n_unseen",
    [("voc", 20, 15, 5), ("coco", 171, 156, 15), ("context60", 60, 50, 10), ("context59", 59, 49, 10)],
)
def test_counts_and_partition(name, n, n_seen, n_unseen):
    s = load_class_split(name)
    assert s.name == name
    assert s.num_classes == n == len(s.classes)
    assert len(s.seen) == n_seen and len(s.unseen) == n_unseen
    assert set(s.seen).isdisjoint(s.unseen)
    assert sorted(s.seen + s.unseen) == list(range(n))
    assert list(s.seen) == sorted(s.seen) and list(s.unseen) == sorted(s.unseen)
    assert s.ignore_index == 255
    assert len(set(s.classes)) == n
    assert s.source and "\n" not in s.source


def test_reduce_zero_label_and_embedding_files():
    expected = {
        "voc": (True, "zegclip_voc12_single.npy"),
        "coco": (False, "zegclip_coco_multi.npy"),
        "context60": (False, None),
        "context59": (True, "cascadeclip_context59_multi.npy"),
    }
    for name, (rzl, emb) in expected.items():
        s = load_class_split(name)
        assert s.reduce_zero_label is rzl, name
        assert s.embedding_file == emb, name


def test_packaged_json_schema():
    for name in available_splits():
        s = load_class_split(name)
        d = s.to_dict()
        assert d["version"] == 1
        assert set(d) == {
            "name", "version", "classes", "unseen", "seen", "ignore_index",
            "reduce_zero_label", "source", "embedding_file",
        }
        assert ClassSplit.from_dict(d) == s


def test_voc_names():
    s = load_class_split("voc")
    assert s.classes[0] == "aeroplane"
    assert s.classes[10] == "diningtable"
    assert s.classes[14] == "person"
    assert s.classes[19] == "tvmonitor"
    assert s.unseen == (15, 16, 17, 18, 19)
    assert s.seen == tuple(range(15))
    assert s.unseen_names == ("pottedplant", "sheep", "sofa", "train", "tvmonitor")
    assert "background" not in s.classes


def test_coco_names():
    s = load_class_split("coco")
    assert s.classes[0] == "person"
    assert s.classes[3] == "motorcycle"
    assert s.classes[62] == "tv"
    assert s.classes[80] == "banner"
    assert s.classes[145] == "sky-other"
    assert s.classes[160] == "wall-concrete"
    assert s.classes[170] == "wood"
    assert list(s.unseen) == COCO_UNSEEN_IDS
    assert s.unseen_names == COCO_UNSEEN_NAMES
    assert len(s.seen_names) == 156 and not set(s.seen_names) & set(COCO_UNSEEN_NAMES)


def test_context_names():
    c60 = load_class_split("context60")
    c59 = load_class_split("context59")
    assert c60.classes[0] == "background"
    assert c60.classes[1] == "aeroplane"
    assert c60.classes[55] == "tvmonitor"
    assert c60.classes[59] == "wood"
    assert c60.classes[1:] == c59.classes
    assert "background" not in c59.classes
    assert list(c60.unseen) == CONTEXT60_UNSEEN_IDS
    assert list(c59.unseen) == [i - 1 for i in CONTEXT60_UNSEEN_IDS]
    assert c59.unseen_names == c60.unseen_names
    assert set(c60.unseen_names) == {
        "aeroplane", "bird", "boat", "cat", "cow", "fence", "keyboard", "motorbike", "sofa", "tvmonitor",
    }
    assert 0 in c60.seen  # background is a seen class in the 60-class protocol


def test_name_lookup_is_case_insensitive_and_index():
    assert load_class_split("VOC") == load_class_split("voc")
    assert load_class_split("coco").index("wall-concrete") == 160
    with pytest.raises(ValueError, match="no class named"):
        load_class_split("voc").index("background")


# ------------------------------------------------------------ variations


def test_with_unseen_and_fully_supervised():
    c60 = load_class_split("context60")
    alt = c60.with_unseen([3, 0, 2])
    assert alt.unseen == (0, 2, 3)
    assert alt.seen == tuple(i for i in range(60) if i not in (0, 2, 3))
    assert alt.classes == c60.classes
    assert c60.unseen == tuple(CONTEXT60_UNSEEN_IDS)  # original untouched (frozen)

    full = load_class_split("coco").fully_supervised()
    assert full.unseen == () and full.seen == tuple(range(171))
    assert full.unseen_names == ()

    with pytest.raises(ValueError, match="out of range"):
        c60.with_unseen([60])
    with pytest.raises(ValueError, match="seen set is empty"):
        load_class_split("voc").with_unseen(range(20))


def test_frozen():
    s = load_class_split("voc")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]


# ------------------------------------------------------------- bad input


def _split(**kw):
    base = dict(name="t", classes=("a", "b", "c"), seen=(0, 1), unseen=(2,))
    base.update(kw)
    return ClassSplit(**base)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(classes=(), seen=(), unseen=()), "class list is empty"),
        (dict(classes=("a", "b", "a")), "duplicate class names: 'a' at ids \\[0, 2\\]"),
        (dict(classes=("a", "", "c")), "class name at id 1 is empty"),
        (dict(classes=("a", "  ", "c")), "class name at id 1 is empty"),
        (dict(unseen=(2, 3)), "unseen ids out of range \\[0, 3\\): \\[3\\]"),
        (dict(seen=(-1, 0, 1)), "seen ids out of range"),
        (dict(seen=(0, 1, 2)), "both seen and unseen: \\[2\\]"),
        (dict(seen=(0,)), "do not cover all 3 classes; missing ids \\[1\\]"),
        (dict(seen=(), unseen=(0, 1, 2)), "seen set is empty"),
        (dict(seen=(0, 0, 1)), "listed more than once"),
        (dict(seen=(0, 1.0)), "must be integers"),
        (dict(ignore_index=1), "collides with a class id"),
    ],
)
def test_invalid_split_raises(kw, msg):
    with pytest.raises(ValueError, match=msg) as exc:
        _split(**kw)
    assert "\n" not in str(exc.value)
    assert "'t'" in str(exc.value)  # names the split


def test_valid_minimal_split():
    s = _split(seen=(1, 0))
    assert s.seen == (0, 1) and s.seen_names == ("a", "b") and s.unseen_names == ("c",)


def test_unknown_name_lists_known():
    with pytest.raises(ValueError) as exc:
        load_class_split("ade150")
    msg = str(exc.value)
    assert "ade150" in msg
    for known in ("voc", "coco", "context60", "context59"):
        assert known in msg
    assert "\n" not in msg


# ----------------------------------------------------------- custom JSON


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def _custom():
    return {
        "name": "toy",
        "version": 1,
        "classes": ["road", "car", "tree", "sky"],
        "unseen": [2],
        "seen": [0, 1, 3],
        "ignore_index": 255,
        "reduce_zero_label": False,
        "source": "A toy split written by the test suite.",
        "embedding_file": None,
    }


def test_custom_json_path(tmp_path):
    p = _write(tmp_path / "toy.json", _custom())
    for arg in (p, str(p)):
        s = load_class_split(arg)
        assert s.name == "toy" and s.num_classes == 4
        assert s.unseen_names == ("tree",) and s.seen_names == ("road", "car", "sky")
        assert s.embedding_file is None


def test_custom_json_roundtrip(tmp_path):
    s = load_class_split("coco").with_unseen([0, 1])
    p = _write(tmp_path / "mine.json", s.to_dict())
    assert load_class_split(p) == s


def test_missing_file(tmp_path):
    p = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="does not exist") as exc:
        load_class_split(p)
    assert "nope.json" in str(exc.value)


def test_invalid_json(tmp_path):
    p = _write(tmp_path / "broken.json", '{"name": "x", ')
    with pytest.raises(ValueError, match="invalid JSON") as exc:
        load_class_split(p)
    assert "broken.json" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_key(tmp_path):
    d = _custom()
    del d["seen"]
    p = _write(tmp_path / "nokey.json", d)
    with pytest.raises(ValueError, match="missing key") as exc:
        load_class_split(p)
    assert "nokey.json" in str(exc.value) and "seen" in str(exc.value)


@pytest.mark.parametrize(
    "patch, msg",
    [
        ({"version": 2}, "unsupported schema version"),
        ({"seen": [0, 1]}, "missing ids \\[3\\]"),
        ({"classes": "road"}, "must be a list"),
        ({"reduce_zero_label": "yes"}, "true or false"),
        ({"embedding_file": 3}, "string or null"),
    ],
)
def test_bad_custom_content_names_file(tmp_path, patch, msg):
    d = _custom()
    d.update(patch)
    p = _write(tmp_path / "bad.json", d)
    with pytest.raises(ValueError, match=msg) as exc:
        load_class_split(p)
    assert "bad.json" in str(exc.value) and "\n" not in str(exc.value)


def test_json_not_an_object(tmp_path):
    p = _write(tmp_path / "list.json", "[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_class_split(p)


# ----------------------------------------------- shared text embeddings


@pytest.mark.parametrize("name", ["voc", "coco", "context59"])
def test_embedding_file_matches_class_count(name):
    """The packaged class order has as many rows as the text-embedding file it names.

    The .npy files are read from the shared data folder and never copied into the repository.
    """
    if not EMBEDDING_DIR.is_dir():
        pytest.skip(f"{EMBEDDING_DIR} not available")
    np = pytest.importorskip("numpy")
    s = load_class_split(name)
    assert s.embedding_file is not None
    path = EMBEDDING_DIR / s.embedding_file
    assert path.is_file(), f"{path} missing"
    emb = np.load(path)
    assert emb.ndim == 2 and emb.shape == (s.num_classes, 512)
