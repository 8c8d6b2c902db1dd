"""Data layer: datasets in the standard layouts, errors, the checker, transforms, prepare_* converters and the
14 real VOC val samples (../shared, skipped when absent). CPU, offline, tiny fake datasets in tmp_path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from conftest import shared_path
from zegclip.model.config import NORMALIZATIONS
from zegclip.data import load_class_split
from zegclip.data.checks import check_dataset
from zegclip.data.datasets import build_dataset, coco_stuff, context, folder, voc
from zegclip.data.files import read_class_names
from zegclip.data.palettes import voc_color_to_index, voc_palette
from zegclip.data.transforms import (
    PhotoMetricDistortion,
    RandomCropCatMax,
    test_transforms,
    train_transforms,
)

H, W = 40, 60


# =========================================================================== fixtures / writers
def _rng(seed=0):
    return np.random.default_rng(seed)


def write_image(path, h=H, w=W, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def write_mask(path, arr, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(arr, dtype=np.uint8), mode="L")
    if palette:
        im = im.convert("P")
        im.putpalette(voc_palette(256).reshape(-1).tolist())
        # convert("P") from L keeps the indices; make sure of it
        assert np.array_equal(np.asarray(im), np.asarray(arr, dtype=np.uint8))
    im.save(path)


def raw_voc_mask(seed):
    """A 40x60 raw VOC mask with background, a few classes and a void border."""
    m = np.zeros((H, W), np.uint8)
    m[5:20, 5:30] = 1 + seed % 20
    m[20:35, 30:55] = 20
    m[0, :] = 255
    return m


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\n" for x in lines))


@pytest.fixture
def voc_root(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    ids = {"train": ["2007_000001", "2007_000002"], "val": ["2007_000010"], "aug": ["2008_000100", "2008_000101"]}
    for k, (split, names) in enumerate(ids.items()):
        for j, i in enumerate(names):
            write_image(base / "JPEGImages" / f"{i}.jpg", seed=10 * k + j)
            folder_name = "SegmentationClassAug" if split == "aug" else "SegmentationClass"
            write_mask(base / folder_name / f"{i}.png", raw_voc_mask(10 * k + j), palette=split != "aug")
        write_lines(base / "ImageSets" / "Segmentation" / f"{split}.txt", names)
    return base


def make_coco(root):
    for split, stems in (("train", ["000000000009", "000000000025"]), ("val", ["000000000139"])):
        for j, s in enumerate(stems):
            write_image(root / "images" / f"{split}2017" / f"{s}.jpg", seed=j)
            m = np.full((H, W), 255, np.uint8)
            m[:20] = 0
            m[20:, :30] = 170
            m[20:, 30:] = 80 + j
            write_mask(root / "annotations" / f"{split}2017" / f"{s}_labelTrainIds.png", m)
    return root


def make_context(root):
    base = root / "VOC2010"
    for split, ids in (("train", ["2008_000002", "2008_000003"]), ("val", ["2008_000007"])):
        for j, i in enumerate(ids):
            write_image(base / "JPEGImages" / f"{i}.jpg", seed=j)
            m = np.zeros((H, W), np.uint8)
            m[10:, :] = 1
            m[30:, 40:] = 59
            write_mask(base / "SegmentationClassContext" / f"{i}.png", m)
        write_lines(base / "ImageSets" / "SegmentationContext" / f"{split}.txt", ids)
    return root


def make_folder(root, names=("road", "car", "cat")):
    for j, stem in enumerate(["a", "b", "c"]):
        write_image(root / "images" / f"{stem}.png", seed=j)
        m = np.full((H, W), 255, np.uint8)
        m[:, :20] = 0
        m[:, 20:40] = 1
        m[:, 40:] = len(names) - 1
        write_mask(root / "masks" / f"{stem}.png", m)
    write_lines(root / "classes.txt", names)
    return root


# =========================================================================== datasets
def test_voc_train_aug_and_val(voc_root):
    train = voc(voc_root, "train")
    assert len(train) == 4  # train.txt (2) + aug.txt (2)
    assert [it.name for it in train.items] == ["2007_000001", "2007_000002", "2008_000100", "2008_000101"]
    assert train.items[2].label.parent.name == "SegmentationClassAug"
    assert len(voc(voc_root, "train", aug=False)) == 2
    val = voc(voc_root.parent, "val")  # VOCdevkit is accepted as root too
    assert len(val) == 1
    item = val[0]
    assert item["name"] == "2007_000010"
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.uint8
    assert item["label"].shape == (H, W) and item["label"].dtype == torch.int64
    raw = raw_voc_mask(10)  # val is the 2nd split, first item -> seed 10
    lab = item["label"].numpy()
    assert np.all(lab[raw == 0] == 255)  # background ignored
    assert np.all(lab[raw == 255] == 255)
    assert np.all(lab[raw == 20] == 19)
    assert np.all(lab[raw == 11] == 10)
    assert set(np.unique(lab)) <= set(range(20)) | {255}
    assert train.class_split.name == "voc" and train.num_classes == 20 and train.reduce_zero_label


def test_coco_stuff(tmp_path):
    root = make_coco(tmp_path / "coco_stuff164k")
    train = coco_stuff(root, "train")
    assert len(train) == 2 and train.num_classes == 171 and not train.reduce_zero_label
    lab = train[1]["label"].numpy()
    assert set(np.unique(lab)) == {0, 81, 170}
    val = build_dataset("coco", root, "val")
    assert len(val) == 1 and set(np.unique(val[0]["label"].numpy())) == {0, 80, 170}


def test_context_59_and_60(tmp_path):
    root = make_context(tmp_path / "VOCdevkit")
    c60 = context(root, "train", classes=60)
    c59 = build_dataset("context59", root / "VOC2010", "train")
    assert len(c60) == len(c59) == 2
    l60, l59 = c60[0]["label"].numpy(), c59[0]["label"].numpy()
    assert set(np.unique(l60)) == {0, 1, 59}
    assert set(np.unique(l59)) == {255, 0, 58}  # background ignored, ids shifted
    assert c60.classes[0] == "background" and c59.classes[0] == "aeroplane"
    assert len(build_dataset("context60", root, "val")) == 1


def test_folder_dataset_and_split(tmp_path):
    root = make_folder(tmp_path / "custom")
    ds = folder(root / "images", root / "masks", root / "classes.txt")
    assert len(ds) == 3 and ds.classes == ("road", "car", "cat")
    assert ds.class_split.unseen == () and ds.class_split.seen == (0, 1, 2)
    item = ds[0]
    assert item["name"] == "a" and set(np.unique(item["label"].numpy())) == {0, 1, 2}
    (root / "split.json").write_text(json.dumps({"unseen": ["cat"]}))
    ds2 = build_dataset("folder", root, "train")
    assert ds2.class_split.unseen == (2,) and ds2.class_split.seen == (0, 1)
    # a full class-split JSON must agree with the names file
    full = load_class_split("voc").to_dict()
    (root / "split.json").write_text(json.dumps(full))
    with pytest.raises(ValueError, match="split.json"):
        build_dataset("folder", root, "train")


@pytest.mark.parametrize("content", ["road\n\ncar\n", "road\ncar\nroad\n", "\n"])
def test_class_names_file_errors(tmp_path, content):
    path = tmp_path / "classes.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match="classes.txt"):
        read_class_names(path)


def test_transforms_applied_in_dataset(voc_root):
    ds = voc(voc_root, "train", transforms=train_transforms())
    torch.manual_seed(0)
    item = ds[0]
    assert item["image"].shape == (3, 512, 512) and item["image"].dtype == torch.float32
    assert item["label"].shape == (512, 512) and item["label"].dtype == torch.int64
    assert set(item["label"].unique().tolist()) <= set(range(20)) | {255}
    val = voc(voc_root, "val", transforms=test_transforms())
    item = val[0]
    assert item["image"].shape == (3, 512, 768) and item["label"].shape == (H, W)


# =========================================================================== errors
def test_missing_root_and_split_list(tmp_path, voc_root):
    missing = tmp_path / "nowhere"
    for name in ("voc", "coco", "context59", "folder"):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            build_dataset(name, missing, "train")
    (voc_root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        voc(voc_root, "val")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("ade", voc_root)


def test_root_finders_accept_every_level(tmp_path):
    from zegclip.data.roots import sbd_root, voc2010_root, voc2012_root

    for finder, inner, levels in [
        (voc2012_root, "VOCdevkit/VOC2012", ("", "VOCdevkit", "VOCdevkit/VOC2012")),
        (voc2010_root, "VOCdevkit/VOC2010", ("", "VOCdevkit", "VOCdevkit/VOC2010")),
        (sbd_root, "benchmark_RELEASE/dataset", ("", "benchmark_RELEASE", "benchmark_RELEASE/dataset")),
    ]:
        top = tmp_path / finder.__name__
        marker = "cls" if finder is sbd_root else "JPEGImages"
        (top / inner / marker).mkdir(parents=True)
        for level in levels:
            assert finder(top / level) == top / inner
        with pytest.raises(FileNotFoundError, match=f"no {marker}/ in .*empty, .* or "):
            (tmp_path / "empty").mkdir(exist_ok=True)
            finder(tmp_path / "empty")
        with pytest.raises(FileNotFoundError, match="folder not found: .*nowhere"):
            finder(tmp_path / "nowhere")


def test_image_without_label(voc_root):
    label = voc_root / "SegmentationClassAug" / "2008_000101.png"
    label.unlink()
    with pytest.raises(FileNotFoundError, match="2008_000101.png"):
        voc(voc_root, "train")
    ds = voc(voc_root, "train", strict=False)  # non-strict: built, problem recorded, item raises on access
    assert any("2008_000101.png" in p for p in ds.problems)
    with pytest.raises(FileNotFoundError, match="2008_000101.png"):
        ds[3]


def test_folder_image_without_mask(tmp_path):
    root = make_folder(tmp_path / "custom")
    (root / "masks" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"masks/b\.png"):
        folder(root / "images", root / "masks", root / "classes.txt")


def test_out_of_range_label_values(voc_root):
    bad = raw_voc_mask(0)
    bad[30:, :5] = 25  # raw 25 -> 24 after reduction, outside 0..19
    write_mask(voc_root / "SegmentationClass" / "2007_000010.png", bad, palette=True)
    ds = voc(voc_root, "val")
    with pytest.raises(ValueError, match=r"2007_000010\.png.*24"):
        ds[0]


def test_corrupt_image(voc_root):
    path = voc_root / "JPEGImages" / "2007_000010.jpg"
    path.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError, match=r"2007_000010\.jpg"):
        voc(voc_root, "val")[0]


def test_size_mismatch(voc_root):
    write_mask(voc_root / "SegmentationClass" / "2007_000010.png", np.zeros((H + 2, W), np.uint8), palette=True)
    with pytest.raises(ValueError) as err:
        voc(voc_root, "val")[0]
    assert "2007_000010.png" in str(err.value) and "2007_000010.jpg" in str(err.value)


def test_rgb_label_rejected(tmp_path):
    root = make_folder(tmp_path / "custom")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "masks" / "a.png")
    ds = folder(root / "images", root / "masks", root / "classes.txt")
    with pytest.raises(ValueError, match=r"a\.png"):
        ds[0]


def test_check_dataset_reports_all_problems(voc_root):
    (voc_root / "SegmentationClassAug" / "2008_000101.png").unlink()  # missing label
    (voc_root / "JPEGImages" / "2007_000001.jpg").write_bytes(b"garbage")  # corrupt image
    write_mask(voc_root / "SegmentationClass" / "2007_000002.png", np.zeros((H, W + 4), np.uint8), palette=True)
    bad = raw_voc_mask(0)
    bad[-1, -1] = 30
    write_mask(voc_root / "SegmentationClassAug" / "2008_000100.png", bad)  # out of range
    ds = voc(voc_root, "train", strict=False)
    problems = check_dataset(ds, progress=False)
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    for name in ("2008_000101.png", "2007_000001.jpg", "2007_000002.png", "2008_000100.png"):
        assert name in text
    assert "29" in text  # the offending (reduced) value is named
    assert check_dataset(voc(voc_root, "val"), progress=False) == []


# =========================================================================== VOC colours
def test_voc_palette_and_colour_conversion():
    pal = voc_palette(256)
    assert tuple(pal[0]) == (0, 0, 0) and tuple(pal[1]) == (128, 0, 0) and tuple(pal[15]) == (192, 128, 128)
    assert tuple(pal[255]) == (224, 224, 192)
    idx = np.array([[0, 1, 20], [255, 17, 5]])
    rgb = pal[idx]
    assert np.array_equal(voc_color_to_index(rgb), idx)
    rgb[0, 0] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1,2,3\)"):
        voc_color_to_index(rgb)


# =========================================================================== transforms
def _pair(h=H, w=W, seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    img = tv_tensors.Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
    mask = tv_tensors.Mask(torch.randint(0, classes, (h, w), dtype=torch.uint8, generator=g))
    return img, mask


def test_train_transform_shapes_and_padding():
    img, mask = _pair()
    torch.manual_seed(0)
    for _ in range(3):
        out_img, out_lab = train_transforms()(img, mask)
        assert out_img.shape == (3, 512, 512) and out_img.dtype == torch.float32 and type(out_img) is torch.Tensor
        assert out_lab.shape == (512, 512) and out_lab.dtype == torch.int64 and type(out_lab) is torch.Tensor
    # ratio 0.5: the 40x60 image becomes 256x384 (short side 512 * 0.5), so the crop is padded
    t = train_transforms(ratio_range=(0.5, 0.5), photometric=False)
    out_img, out_lab = t(img, mask)
    assert torch.all(out_lab[256:, :] == 255) and torch.all(out_lab[:, 384:] == 255)
    assert torch.all(out_img[:, 256:, :] == 0) and torch.all(out_img[:, :, 384:] == 0)
    assert set(out_lab[:256, :384].unique().tolist()) == {0, 1, 2}


def test_resize_scale_rule():
    # mmseg keep-ratio: factor = min(2048r / long, 512r / short); a 40x60 image at r = 1 -> 512x768
    img, mask = _pair()
    t = train_transforms(ratio_range=(1.0, 1.0), crop_size=(2000, 2000), photometric=False, flip_prob=0.0)
    out_img, out_lab = t(img, mask)
    assert torch.all(out_lab[:512, :768] != 255) and torch.all(out_lab[512:, :] == 255)
    # a very elongated image is limited by the long side instead: 10x1000 -> factor min(2048/1000, 512/10) = 2.048
    img, mask = _pair(10, 1000)
    out_img, out_lab = t(img, mask)
    assert torch.all(out_lab[:20, :2048] != 255) and torch.all(out_lab[20:, :] == 255)


def test_flip_consistency_image_mask():
    # label = column block id; the image's red channel encodes it (10 * label), so after the pipeline the
    # (de-normalised) image must still be a function of the label. The 512x1024 input keeps its size (factor 1).
    cols = torch.arange(1024) // 64  # 16 blocks
    label = cols.expand(512, 1024).to(torch.uint8).clone()
    img = torch.zeros(3, 512, 1024, dtype=torch.uint8)
    img[0] = (label * 10).to(torch.uint8)
    img[1] = 100
    img[2] = 200
    t = train_transforms(ratio_range=(1.0, 1.0), photometric=False, cat_max_ratio=1.0)
    mean, std = NORMALIZATIONS["imagenet"]
    flips = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out_img, out_lab = t(tv_tensors.Image(img), tv_tensors.Mask(label))
        red = out_img[0] * std[0] + mean[0]
        assert torch.allclose(red, out_lab.float() * 10, atol=1e-3)
        flips.add(bool(out_lab[0, 0] > out_lab[0, -1]))  # decreasing blocks left->right = flipped
    assert flips == {True, False}


def test_cat_max_ratio_constructed_case():
    # width 1024: left half class 0, right half class 1; a 512 crop at offset x covers (512 - x) of class 0.
    # Acceptable crops (dominant class < 75%) have 128 < x < 384.
    mask = torch.zeros(512, 1024, dtype=torch.uint8)
    mask[:, 512:] = 1
    img = torch.zeros(3, 512, 1024, dtype=torch.uint8)
    crop = RandomCropCatMax(512, cat_max_ratio=0.75)
    lefts, lefts_free = [], []
    for seed in range(40):
        torch.manual_seed(seed)
        lefts.append(crop.make_params([tv_tensors.Image(img), tv_tensors.Mask(mask)])["left"])
        torch.manual_seed(seed)
        lefts_free.append(RandomCropCatMax(512, cat_max_ratio=1.0).make_params([tv_tensors.Mask(mask)])["left"])
    assert all(128 < x < 384 for x in lefts)
    assert any(not 128 < x < 384 for x in lefts_free)
    # impossible constraint (one class only) -> still a crop of the right size (the last try)
    torch.manual_seed(0)
    single = tv_tensors.Mask(torch.zeros(600, 700, dtype=torch.uint8))
    out = crop(tv_tensors.Image(torch.zeros(3, 600, 700, dtype=torch.uint8)), single)
    assert out[0].shape == (3, 512, 512) and out[1].shape == (512, 512)
    # ignored pixels do not count: class 0 on 80% of the labelled pixels is rejected even with 255 around
    m = torch.full((512, 512), 255, dtype=torch.uint8)
    m[:100, :] = 0
    m[100:125, :] = 1
    assert not crop._acceptable(m)
    m[100:150, :] = 1
    assert crop._acceptable(m)


def test_determinism_under_torch_seed():
    img, mask = _pair()
    t = train_transforms()
    torch.manual_seed(123)
    a = [t(img, mask) for _ in range(3)]
    torch.manual_seed(123)
    b = [t(img, mask) for _ in range(3)]
    for (ai, al), (bi, bl) in zip(a, b):
        assert torch.equal(ai, bi) and torch.equal(al, bl)
    torch.manual_seed(124)
    c = t(img, mask)
    assert not torch.equal(c[0], a[0][0])


def test_photometric_distortion_image_only():
    img, mask = _pair(64, 64)
    pmd = PhotoMetricDistortion()
    torch.manual_seed(0)
    changed = False
    for _ in range(6):
        out_img, out_mask = pmd(img, mask)
        assert out_img.dtype == torch.uint8 and out_img.shape == img.shape
        assert torch.equal(out_mask, mask)
        changed |= not torch.equal(out_img, img)
    assert changed
    # no-op parameters keep the image (up to the HSV round trip)
    params = {"brightness": None, "contrast_first": True, "contrast": None, "saturation": 1.0, "hue": 0}
    out = pmd.transform(img, params)
    assert (out.int() - img.int()).abs().max() <= 1


@pytest.mark.parametrize("normalization", ["imagenet", "clip"])
def test_normalisation_values_exact(normalization):
    img = torch.empty(3, 512, 600, dtype=torch.uint8)
    img[0], img[1], img[2] = 10, 128, 250
    mask = tv_tensors.Mask(torch.zeros(512, 600, dtype=torch.uint8))
    out, lab = test_transforms(normalization=normalization)(tv_tensors.Image(img), mask)
    mean, std = NORMALIZATIONS[normalization]
    for c, v in enumerate((10, 128, 250)):
        expected = torch.tensor((v - mean[c]) / std[c], dtype=torch.float32)
        assert torch.allclose(out[c], expected.expand(512, 600), rtol=0, atol=1e-6)
    assert out.shape == (3, 512, 600) and lab.shape == (512, 600)


def test_test_transform_short_side():
    for (h, w), expected in (((40, 60), (512, 768)), ((375, 500), (512, 683)), ((500, 333), (769, 512))):
        img, mask = _pair(h, w)
        out, lab = test_transforms()(img, mask)
        assert out.shape == (3, *expected)
        assert lab.shape == (h, w) and lab.dtype == torch.int64 and torch.equal(lab, mask.long())


# =========================================================================== prepare_*
def test_prepare_voc(tmp_path):
    from scipy.io import savemat

    from zegclip.data.prepare import prepare_voc

    voc_dir = tmp_path / "VOCdevkit" / "VOC2012"
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    voc_train, voc_val = ["t1", "t2"], ["v1"]
    sbd_train, sbd_val = ["t1", "s1", "v1"], ["s2"]
    for j, i in enumerate(voc_train + voc_val + ["s1", "s2"]):
        write_image(voc_dir / "JPEGImages" / f"{i}.jpg", seed=j)
    for j, i in enumerate(voc_train + voc_val):
        write_mask(voc_dir / "SegmentationClass" / f"{i}.png", raw_voc_mask(j), palette=True)
    write_lines(voc_dir / "ImageSets" / "Segmentation" / "train.txt", voc_train)
    write_lines(voc_dir / "ImageSets" / "Segmentation" / "val.txt", voc_val)
    sbd_masks = {}
    for j, i in enumerate(sorted(set(sbd_train + sbd_val))):
        seg = np.zeros((H, W), np.uint8)
        seg[10:30, 10:50] = 3 + j
        sbd_masks[i] = seg
        (sbd / "cls").mkdir(parents=True, exist_ok=True)
        savemat(
            sbd / "cls" / f"{i}.mat",
            {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros((1, 1), object), "CategoriesPresent": np.array([3 + j])}},
        )
    write_lines(sbd / "train.txt", sbd_train)
    write_lines(sbd / "val.txt", sbd_val)

    summary = prepare_voc(voc_dir, tmp_path / "benchmark_RELEASE", progress=False)
    assert summary["ok"], summary["problems"]
    seg_lists = voc_dir / "ImageSets" / "Segmentation"
    assert (seg_lists / "aug.txt").read_text().split() == ["s1", "s2"]  # SBD - VOC train - VOC val
    assert (seg_lists / "trainaug.txt").read_text().split() == ["s1", "s2", "t1", "t2"]
    assert summary["aug"] == 2 and summary["trainaug"] == 4 and summary["sbd_masks"] == 4
    assert summary["voc_only_masks"] == 1  # t2 is not in SBD
    aug_dir = voc_dir / "SegmentationClassAug"
    for i, seg in sbd_masks.items():
        assert np.array_equal(np.asarray(Image.open(aug_dir / f"{i}.png")), seg)
    assert np.array_equal(np.asarray(Image.open(aug_dir / "t2.png")), raw_voc_mask(1))
    assert set(summary["label_values"]) <= set(range(21)) | {255}
    assert not list(aug_dir.glob(".*"))  # no temporary files left behind
    ds = voc(voc_dir, "train")
    assert len(ds) == 4 and check_dataset(ds, progress=False) == []


def test_prepare_voc_missing_inputs(tmp_path):
    from zegclip.data.prepare import prepare_voc

    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_voc(tmp_path / "nowhere", tmp_path)


def test_coco_stuff_mapping_table():
    from zegclip.data.prepare import COCO_STUFF_UNUSED_IDS, coco_stuff_lut

    lut = coco_stuff_lut()
    assert sorted(COCO_STUFF_UNUSED_IDS) == [11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90]
    used = [i for i in range(256) if lut[i] != 255]
    assert len(used) == 171 and [int(lut[i]) for i in used] == list(range(171))
    # spot values of mmseg's clsID_to_trID
    for raw, train_id in {0: 0, 10: 10, 12: 11, 26: 24, 30: 26, 45: 40, 66: 60, 69: 61, 71: 62, 83: 73, 89: 79,
                          91: 80, 181: 170}.items():  # fmt: skip
        assert lut[raw] == train_id
    classes = load_class_split("coco").classes
    assert classes[lut[12]] == "stop sign" and classes[lut[91]] == "banner" and classes[lut[181]] == "wood"
    assert lut[255] == 255 and all(lut[i] == 255 for i in COCO_STUFF_UNUSED_IDS)


def test_prepare_coco_stuff(tmp_path):
    from zegclip.data.prepare import prepare_coco_stuff

    root = tmp_path / "coco_stuff164k"
    raw = np.array([[0, 11, 12, 91], [181, 255, 255, 0]], np.uint8).repeat(10, 0).repeat(15, 1)
    for split in ("train2017", "val2017"):
        write_image(root / "images" / split / "000000000001.jpg", h=raw.shape[0], w=raw.shape[1])
        write_mask(root / "annotations" / split / "000000000001.png", raw)
    summary = prepare_coco_stuff(root, progress=False)
    assert summary["ok"], summary["problems"]
    assert summary["unmapped_raw_values"] == [11]
    assert summary["splits"]["train2017"]["labels"] == 1 and summary["splits"]["val2017"]["images"] == 1
    out = np.asarray(Image.open(root / "annotations" / "train2017" / "000000000001_labelTrainIds.png"))
    expected = np.array([[0, 255, 11, 80], [170, 255, 255, 0]], np.uint8).repeat(10, 0).repeat(15, 1)
    assert np.array_equal(out, expected)
    ds = coco_stuff(root, "train")
    assert len(ds) == 1 and check_dataset(ds, progress=False) == []


def test_context_mapping_table():
    from zegclip.data.prepare import CONTEXT_459_IDS, context59_lut

    classes = load_class_split("context60").classes
    # mmseg sorts the 59 ids ascending; that order must be the alphabetical class list (values 1..59)
    by_id = [name for name, _ in sorted(CONTEXT_459_IDS.items(), key=lambda kv: kv[1])]
    assert by_id == list(classes[1:])
    lut = context59_lut()
    assert lut.shape == (460,) and lut[0] == 0 and lut[1] == 0  # unlabeled / accordion -> background
    assert lut[2] == classes.index("aeroplane") == 1 and lut[458] == 59 and lut[284] == classes.index("person")
    assert int((lut > 0).sum()) == 59


def test_prepare_context(tmp_path):
    from scipy.io import savemat

    from zegclip.data.prepare import prepare_context

    ctx = tmp_path / "PASCAL-Context"
    voc2010 = tmp_path / "VOCdevkit" / "VOC2010"
    label = np.zeros((H, W), np.uint16)
    label[:10] = 2  # aeroplane -> 1
    label[10:20] = 458  # wood -> 59
    label[20:30] = 1  # accordion (not among the 59) -> 0
    label[30:] = 284  # person -> 37
    train, val = ["2008_000002", "2008_000003"], ["2008_000007"]
    (ctx / "trainval").mkdir(parents=True)
    for j, i in enumerate(train + val + ["2008_000099"]):  # one extra .mat outside both lists
        savemat(ctx / "trainval" / f"{i}.mat", {"LabelMap": label})
        write_image(voc2010 / "JPEGImages" / f"{i}.jpg", seed=j)
    write_lines(voc2010 / "ImageSets" / "Main" / "train.txt", train)
    write_lines(voc2010 / "ImageSets" / "Main" / "val.txt", val)
    summary = prepare_context(ctx, voc2010.parent, progress=False)
    assert summary["ok"], summary["problems"]
    assert summary["train"] == 2 and summary["val"] == 1 and summary["labels"] == 3
    assert summary["label_values"] == [0, 1, 37, 59]
    out = np.asarray(Image.open(voc2010 / "SegmentationClassContext" / "2008_000002.png"))
    assert np.all(out[:10] == 1) and np.all(out[10:20] == 59) and np.all(out[20:30] == 0) and np.all(out[30:] == 37)
    assert (voc2010 / "ImageSets" / "SegmentationContext" / "val.txt").read_text().split() == val
    c59 = context(tmp_path / "VOCdevkit", "train", classes=59)
    assert len(c59) == 2 and set(np.unique(c59[0]["label"].numpy())) == {255, 0, 36, 58}
    # splits from a Detail-API JSON (image phases)
    js = tmp_path / "trainval_merged.json"
    js.write_text(json.dumps({"images": [{"file_name": "2008_000002.jpg", "phase": "train"},
                                         {"file_name": "2008_000007.jpg", "phase": "val"}]}))  # fmt: skip
    summary = prepare_context(ctx, voc2010, json_path=js, progress=False)
    assert summary["ok"] and summary["train"] == 1 and summary["val"] == 1


# =========================================================================== real VOC val samples
def test_real_voc_samples_through_voc_val_path(tmp_path):
    src = shared_path("data", "voc2012-val-samples")
    ids = sorted(p.name[: -len("_image.png")] for p in src.glob("*_image.png"))
    assert len(ids) == 14
    names = load_class_split("voc").classes
    base = tmp_path / "VOCdevkit" / "VOC2012"
    present = set()
    raw_maps = {}
    for i in ids:
        target = np.asarray(Image.open(src / f"{i}_target.png").convert("RGB"))
        raw = voc_color_to_index(target, name=f"{i}_target.png")  # every pixel maps (raises otherwise)
        assert raw.shape == target.shape[:2]
        assert set(np.unique(raw)) <= set(range(21)) | {255}
        present |= {names[k - 1] for k in np.unique(raw) if 1 <= k <= 20}
        raw_maps[i] = raw
        (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.open(src / f"{i}_image.png").convert("RGB").save(base / "JPEGImages" / f"{i}.jpg", quality=95)
        write_mask(base / "SegmentationClass" / f"{i}.png", raw, palette=True)
    assert {"sheep", "aeroplane", "person"} <= present
    write_lines(base / "ImageSets" / "Segmentation" / "val.txt", ids)

    ds = voc(base, "val", transforms=test_transforms())
    assert len(ds) == 14 and check_dataset(ds, progress=False) == []
    seen_ids: set[int] = set()
    for k in range(len(ds)):
        item = ds[k]
        raw = raw_maps[item["name"]]
        assert item["image"].shape == (3, 512, 512) and item["image"].dtype == torch.float32
        assert torch.isfinite(item["image"]).all() and item["image"].abs().max() < 3.0
        lab = item["label"].numpy()
        assert lab.shape == raw.shape == (513, 513)
        expected = np.where((raw == 0) | (raw == 255), 255, raw.astype(np.int64) - 1)
        assert np.array_equal(lab, expected)
        seen_ids |= set(np.unique(lab).tolist())
    assert seen_ids <= set(range(20)) | {255}
    assert names.index("sheep") in seen_ids  # an unseen class reaches the evaluation path


def test_one_label_palette_for_predictions_and_sample_pngs():
    from zegclip.data.palettes import class_colours, png_palette

    colours = class_colours(3)
    assert colours.tolist() == [[128, 0, 0], [0, 128, 0], [128, 128, 0]]  # VOC's aeroplane, bicycle, bird
    pal = png_palette()
    assert len(pal) == 768 and pal[:3] == [128, 0, 0] and pal[-3:] == [255, 255, 255]


def test_id_lists_round_trip_and_fail_with_the_file_named(tmp_path):
    from zegclip.io import read_id_list, write_id_list

    write_id_list(tmp_path / "val.txt", ["2007_000033", "2007_000042"])
    (tmp_path / "extra.txt").write_text("a 1\n\n  b -1\n")
    assert read_id_list(tmp_path / "val.txt") == ["2007_000033", "2007_000042"]
    assert read_id_list(tmp_path / "extra.txt") == ["a", "b"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        read_id_list(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_id_list(tmp_path / "missing.txt")
