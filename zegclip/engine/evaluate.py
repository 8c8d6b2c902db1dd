"""Evaluation: slide-window inference over a dataset, one dataset-level confusion matrix, GZSL metrics.

Protocol (official, fact sheet §11): batch 1; the image is resized so its short side is 512 (test transform),
scored by :meth:`ZegCLIP.scores` (sigmoid, seen-class shift, windows 512/426), the score map is resized back to
the label's size (bilinear), and the argmax over **all** classes (seen and unseen) is compared with the ground
truth; ignore pixels are skipped. pAcc, mIoU, mIoU(S), mIoU(U), hIoU, mAcc and per-class IoU come from the
accumulated matrix, not from per-image averages.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .metrics import SegmentationMetrics


@torch.no_grad()
def evaluate(
    model,
    dataset: Dataset,
    device: str | torch.device | None = None,
    seen: list[int] | None = None,
    unseen: list[int] | None = None,
    progress: bool = True,
    limit: int | None = None,
    amp: bool = False,
) -> dict:
    """Metrics of ``model`` on ``dataset`` (items: dict image (3,h,w) normalised, label (H,W) full-space ids).

    ``seen``/``unseen`` default to the model's split. Under torchrun every rank scores its share of the images
    and the confusion matrices are summed. Returns the metrics dict of :class:`SegmentationMetrics` plus timing.
    """
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    if seen is None:
        seen = model.seen_idx.tolist()
    if unseen is None:
        unseen = sorted(set(range(model.num_classes)) - set(seen))
    metric = SegmentationMetrics(model.num_classes, seen=seen, unseen=unseen, class_names=model.class_names).to(device)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    indices = range(rank, count, world)
    if progress and rank == 0:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="evaluate", unit="img", dynamic_ncols=True)
    t0 = time.perf_counter()
    for i in indices:
        sample = dataset[i]
        image = sample["image"].unsqueeze(0).to(device)
        label = sample["label"].unsqueeze(0).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            scores = model.scores(image)
        if scores.shape[-2:] != label.shape[-2:]:
            scores = F.interpolate(scores.float(), size=label.shape[-2:], mode="bilinear", align_corners=False)
        metric.update(scores.argmax(dim=1), label)
    seconds = time.perf_counter() - t0
    result = metric.compute()
    result["confmat"] = metric.confmat.cpu().tolist()  # rows: ground truth, columns: prediction
    result["images"] = count
    result["seconds"] = round(seconds, 3)
    result["seconds_per_image"] = round(seconds / max(count, 1) * world, 4)
    return result


def randomise_text_embeddings(model, class_ids, seed: int = 0) -> None:
    """Negative control: replace the text embeddings of ``class_ids`` by random unit vectors (seeded), in place.

    If a model's skill on those classes came from the text (what CLIP knows about the class names) and not from a
    leak, their IoU must fall to chance level; :func:`chance_miou` gives that level.
    """
    ids = torch.as_tensor(list(class_ids), dtype=torch.long, device=model.class_embeddings.device)
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.randn(len(ids), model.class_embeddings.shape[1], generator=gen)
    model.class_embeddings[ids] = F.normalize(vectors, dim=-1).to(model.class_embeddings)


def partition_chance_miou(confmat, class_ids) -> float:
    """mIoU (percent) over ``class_ids`` of a predictor that knows which pixels belong to *some* class of
    ``class_ids`` - exactly the pixels the measured model gave one of them (the columns of ``confmat``) - but not
    which one, and labels those uniformly at random among them.

    The chance level of the negative control (random text for the unseen classes). A generalised zero-shot model
    with the seen-class shift tells "not a seen class" from the seen classes' training alone, with no unseen text;
    only *which* unseen class a pixel is can come from the text. So the control's null keeps the model's own
    seen/unseen partition and randomises the rest; :func:`chance_miou` (random over all classes) sits far below it.
    """
    cm = torch.as_tensor(confmat, dtype=torch.float64)
    ids = [int(i) for i in class_ids]
    into = cm[:, ids].sum(1)  # pixels of each ground-truth class that the model gave one of class_ids
    share = cm[:, ids].sum() / len(ids)  # pixels predicted as each one of them, uniformly
    ious = [(into[i] / len(ids)) / (cm[i].sum() + share - into[i] / len(ids)) for i in ids if cm[i].sum() > 0]
    return float(100.0 * torch.stack(ious).mean()) if ious else float("nan")


def chance_miou(confmat, class_ids) -> float:
    """mIoU (percent) over ``class_ids`` of a predictor that labels every pixel uniformly at random among all C
    classes, for the ground-truth class frequencies of ``confmat`` (rows: ground truth)."""
    cm = torch.as_tensor(confmat, dtype=torch.float64)
    c = cm.shape[0]
    gt = cm.sum(1)
    total = gt.sum()
    ious = [(gt[i] / c) / (gt[i] + total / c - gt[i] / c) for i in class_ids if gt[i] > 0]
    return float(100.0 * torch.stack(ious).mean()) if ious else float("nan")
