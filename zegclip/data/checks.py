"""Checking a dataset: scan every item and list every problem at once (``python -m zegclip prepare ... --check``)."""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from .files import read_image
from .segmentation import SegmentationDataset

__all__ = ["check_dataset"]


def check_dataset(dataset: SegmentationDataset, *, progress: bool = True, decode: bool = True) -> list[str]:
    """Scan every item and return ALL problems (an empty list means the dataset is clean).

    Reports missing files, unreadable/corrupt images and labels, label/image size mismatches and label values
    outside ``[0, num_classes)`` and the ignore index (after reduction). ``decode=False`` only reads image
    headers (faster; corrupt pixel data may go unnoticed).
    """
    from tqdm.auto import tqdm

    problems = list(dataset.problems)
    for index in tqdm(range(len(dataset)), desc="checking dataset", unit="img", disable=not progress):
        item = dataset.items[index]
        size = None
        if not item.image.is_file():
            if not any(str(item.image) in p for p in problems):
                problems.append(f"image file not found: {item.image}")
        else:
            try:
                if decode:
                    size = read_image(item.image).shape[:2]
                else:
                    with Image.open(item.image) as im:
                        size = (im.height, im.width)
            except (ValueError, OSError, UnidentifiedImageError, SyntaxError) as e:
                msg = str(e)
                problems.append(msg if str(item.image) in msg else f"cannot read image {item.image}: {msg}")
        if not item.label.is_file():
            if not any(str(item.label) in p for p in problems):
                problems.append(f"label file not found: {item.label} (for image {item.image})")
            continue
        try:
            dataset.load_label(index, size)
        except (ValueError, OSError) as e:
            problems.append(str(e))
    return problems
