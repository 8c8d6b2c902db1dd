"""Predict label maps for image files with free-text class names; colourise them and draw a legend."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..data.palettes import class_colours

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def colourise(labels: np.ndarray, colours: np.ndarray) -> Image.Image:
    """(H, W) class ids -> RGB image."""
    return Image.fromarray(colours[labels.astype(np.int64)], mode="RGB")


def legend(names: Sequence[str], colours: np.ndarray, present: Sequence[int] | None = None) -> Image.Image:
    """A PNG legend: one colour swatch and name per class (only ``present`` classes when given)."""
    ids = list(range(len(names))) if present is None else list(present)
    height = 22 * max(len(ids), 1) + 8
    width = 40 + 8 * max((len(names[i]) for i in ids), default=4)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for row, i in enumerate(ids):
        y = 4 + 22 * row
        draw.rectangle([4, y, 24, y + 16], fill=tuple(int(v) for v in colours[i]), outline="black")
        draw.text((30, y + 2), names[i], fill="black")
    return img


def image_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        return files
    raise FileNotFoundError(f"image file or folder not found: {path}")


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB; a clear error naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read image {path}: {exc}".splitlines()[0]) from exc


def _save(image: Image.Image, path: Path) -> None:
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


@torch.no_grad()
def predict_files(model, inputs: str | os.PathLike, out_dir: str | os.PathLike, short_side: int = 512,
                  device: str | torch.device | None = None) -> tuple[list[dict], dict[str, str]]:
    """Segment every image of ``inputs`` with the model's current classes; write ``<stem>_mask.png`` (colours),
    ``<stem>_labels.png`` (class ids) and ``legend.png`` into ``out_dir``.

    ``short_side``: images are resized so that their short side has this length, as the run's test pipeline does
    (``data.test_short_side``: 512 for the paper's datasets, 64 in the mini world). An image that cannot be read is
    skipped and named; the others are still segmented and the legend is always written. Returns (one record per
    segmented image, {image path: why it failed}).
    """
    from tqdm.auto import tqdm

    from ..io import check_writable

    if short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")
    files = image_files(inputs)
    out = Path(out_dir)
    check_writable(out)  # before any computation
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    colours = class_colours(model.num_classes)
    records, failed, present_all = [], {}, set()
    for path in tqdm(files, desc="predict", unit="img"):
        try:
            raw = load_image(path)
        except ValueError as exc:
            failed[str(path)] = str(exc)
            continue
        h, w = raw.shape[-2:]
        scale = short_side / min(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(raw[None].float(), size=size, mode="bilinear", align_corners=False)
        image = model.normalize(image).to(device)
        scores = F.interpolate(model.scores(image), size=(h, w), mode="bilinear", align_corners=False)
        labels = scores.argmax(1)[0].cpu().numpy().astype(np.uint8 if model.num_classes <= 255 else np.int32)
        _save(colourise(labels, colours), out / f"{path.stem}_mask.png")
        if model.num_classes <= 255:
            _save(Image.fromarray(labels), out / f"{path.stem}_labels.png")
        present = sorted(int(i) for i in np.unique(labels))
        present_all.update(present)
        records.append({"image": str(path), "mask": str(out / f"{path.stem}_mask.png"),
                        "classes": [model.class_names[i] for i in present]})
    _save(legend(model.class_names, colours, sorted(present_all) if present_all else None), out / "legend.png")
    return records, failed
