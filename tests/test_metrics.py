"""Exact tests of the evaluation metrics (reference Sec. 11: mmseg eval_metrics; Sec. 15: hIoU)."""
from __future__ import annotations

import math

import pytest
import torch

from zegclip.engine.metrics import (
    SegmentationMetrics,
    confusion_matrix,
    harmonic,
    metrics_from_confmat,
    partition_classes,
)

I = 255  # ignore index

# A 3-class 4x4 case worked out by hand.
#   target          pred
#   0 0 1 1         0 1 1 1
#   0 0 1 1         0 0 2 1
#   2 2 I I         2 0 0 1      <- predictions under I must not count
#   2 2 2 I         2 2 2 2
# Counted pixels (13): M[gt, pred] = [[3,1,0],[0,3,1],[1,0,4]]
# label areas 4,4,5; pred areas 4,4,5; I = 3,3,4
# IoU = 3/5, 3/5, 4/6; Acc = 3/4, 3/4, 4/5; pAcc = 10/13
TARGET = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, I, I], [2, 2, 2, I]])
PRED = torch.tensor([[0, 1, 1, 1], [0, 0, 2, 1], [2, 0, 0, 1], [2, 2, 2, 2]])
CONFMAT = torch.tensor([[3, 1, 0], [0, 3, 1], [1, 0, 4]])


def approx(x, rel=1e-12, abs=1e-9):
    return pytest.approx(x, rel=rel, abs=abs)


def _nan_safe(x):
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    if isinstance(x, dict):
        return {k: _nan_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_safe(v) for v in x]
    return x


def assert_same(a: dict, b: dict) -> None:
    """Exact equality of two metric dicts, NaN == NaN."""
    assert _nan_safe(a) == _nan_safe(b)


def one_hot_scores(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) labels -> (B, C, H, W) float scores whose argmax is the label (noisy, not one-hot)."""
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(labels.shape[0], num_classes, *labels.shape[1:], generator=g)
    return scores + 2.0 * torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2)


def mmseg_reference(preds, targets, num_classes, ignore_index=255):
    """Independent re-statement of mmseg's intersect_and_union + total_area_to_metrics (fractions)."""
    ti = torch.zeros(num_classes, dtype=torch.float64)
    tu = torch.zeros_like(ti)
    tl = torch.zeros_like(ti)
    for pred, label in zip(preds, targets):
        mask = label != ignore_index
        pred, label = pred[mask], label[mask]
        inter = pred[pred == label]
        ai = torch.histc(inter.double(), bins=num_classes, min=0, max=num_classes - 1)
        ap = torch.histc(pred.double(), bins=num_classes, min=0, max=num_classes - 1)
        al = torch.histc(label.double(), bins=num_classes, min=0, max=num_classes - 1)
        ti += ai
        tu += ap + al - ai
        tl += al
    return ti.sum() / tl.sum(), ti / tu, ti / tl


# ----------------------------------------------------------------------------- hand-built exact case


def test_confusion_matrix_hand_case():
    cm = confusion_matrix(PRED[None], TARGET[None], 3)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, CONFMAT)
    assert int(cm.sum()) == 13  # 3 ignore pixels skipped


def test_hand_case_exact_values():
    m = SegmentationMetrics(3, seen=[0, 1], unseen=[2], class_names=["a", "b", "c"])
    m.update(PRED[None], TARGET[None])
    r = m.compute()
    assert r["pAcc"] == approx(100 * 10 / 13)
    assert [c["IoU"] for c in r["per_class"]] == [approx(60.0), approx(60.0), approx(100 * 4 / 6)]
    assert [c["Acc"] for c in r["per_class"]] == [approx(75.0), approx(75.0), approx(80.0)]
    assert [c["pixels"] for c in r["per_class"]] == [4, 4, 5]
    assert [c["class"] for c in r["per_class"]] == ["a", "b", "c"]
    assert [c["id"] for c in r["per_class"]] == [0, 1, 2]
    assert [c["split"] for c in r["per_class"]] == ["seen", "seen", "unseen"]
    assert r["mIoU"] == approx((60 + 60 + 200 / 3) / 3)
    assert r["mAcc"] == approx((75 + 75 + 80) / 3)
    assert r["mIoU(S)"] == approx(60.0)
    assert r["mIoU(U)"] == approx(200 / 3)
    assert r["mAcc(S)"] == approx(75.0)
    assert r["mAcc(U)"] == approx(80.0)
    assert r["hIoU"] == approx(100 * 12 / 19)  # 2 * 0.6 * (2/3) / (0.6 + 2/3)
    for key in ("pAcc", "mIoU", "mAcc", "mIoU(S)", "mIoU(U)", "hIoU", "mAcc(S)", "mAcc(U)"):
        assert type(r[key]) is float
    for c in r["per_class"]:
        assert type(c["IoU"]) is float and type(c["Acc"]) is float and type(c["pixels"]) is int


def test_ignore_pixels_do_not_count_whatever_is_predicted():
    other = PRED.clone()
    other[TARGET == I] = torch.tensor([0, 2, 1])  # change only the predictions under ignore
    a, b = SegmentationMetrics(3), SegmentationMetrics(3)
    a.update(PRED[None], TARGET[None])
    b.update(other[None], TARGET[None])
    assert torch.equal(a.confmat, b.confmat)
    assert a.compute()["mIoU"] == b.compute()["mIoU"]


def test_custom_ignore_index_and_none():
    t = TARGET.clone()
    t[t == I] = -1
    m = SegmentationMetrics(3, ignore_index=-1)
    m.update(PRED[None], t[None])
    assert torch.equal(m.confmat, CONFMAT)
    m = SegmentationMetrics(3, ignore_index=None)
    with pytest.raises(ValueError, match="255"):
        m.update(PRED[None], TARGET[None])
    full = torch.tensor([[0, 1], [2, 2]])
    m.update(full[None], full[None])
    assert m.compute()["pAcc"] == 100.0


def test_uint8_target_and_2d_inputs():
    m = SegmentationMetrics(3)
    m.update(PRED, TARGET.to(torch.uint8))  # single (H, W) maps, PNG-like dtype
    assert torch.equal(m.confmat, CONFMAT)


def test_scores_input_equals_label_input():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 5, (3, 9, 7), generator=g)
    target[:, :2] = I
    labels = torch.randint(0, 5, (3, 9, 7), generator=g)
    a, b = SegmentationMetrics(5, unseen=[3, 4]), SegmentationMetrics(5, unseen=[3, 4])
    a.update(labels, target)
    b.update(one_hot_scores(labels, 5), target)
    assert torch.equal(a.confmat, b.confmat)
    ra, rb = a.compute(), b.compute()
    assert_same(ra, rb)


# ----------------------------------------------------------------------------- NaN semantics


def test_absent_class_is_nan_and_excluded_from_means():
    # 4 classes: class 3 appears neither in GT nor in predictions -> NaN IoU and Acc.
    m = SegmentationMetrics(4, seen=[0, 1, 2], unseen=[3])
    m.update(PRED[None], TARGET[None])
    r = m.compute()
    c3 = r["per_class"][3]
    assert math.isnan(c3["IoU"]) and math.isnan(c3["Acc"]) and c3["pixels"] == 0
    assert r["mIoU"] == approx((60 + 60 + 200 / 3) / 3)  # nanmean, not (..+0)/4
    assert r["mAcc"] == approx((75 + 75 + 80) / 3)
    assert math.isnan(r["mIoU(U)"]) and math.isnan(r["mAcc(U)"])
    assert math.isnan(r["hIoU"])  # U undefined
    assert r["pAcc"] == approx(100 * 10 / 13)


def test_predicted_but_absent_class_has_zero_iou_nan_acc():
    # class 1 never in GT but predicted once: U = 1 > 0 -> IoU = 0 (counts in the mean); Acc NaN.
    target = torch.tensor([[[0, 0], [2, 2]]])
    pred = torch.tensor([[[0, 1], [2, 2]]])
    r = metrics_from_confmat(confusion_matrix(pred, target, 3))
    iou = [c["IoU"] for c in r["per_class"]]
    acc = [c["Acc"] for c in r["per_class"]]
    assert iou == [approx(50.0), 0.0, approx(100.0)]
    assert acc[0] == approx(50.0) and math.isnan(acc[1]) and acc[2] == approx(100.0)
    assert r["mIoU"] == approx(50.0)  # (50 + 0 + 100) / 3
    assert r["mAcc"] == approx(75.0)  # nanmean(50, NaN, 100)


def test_empty_metric_is_all_nan():
    r = metrics_from_confmat(torch.zeros(3, 3, dtype=torch.long), unseen=[2])
    for key in ("pAcc", "mIoU", "mAcc", "mIoU(S)", "mIoU(U)", "hIoU", "mAcc(S)", "mAcc(U)"):
        assert math.isnan(r[key]), key


def test_all_ignore_batch_adds_nothing():
    m = SegmentationMetrics(3)
    m.update(PRED[None], torch.full((1, 4, 4), I))
    assert int(m.confmat.sum()) == 0


def test_no_unseen_classes_cross_dataset():
    # coco-to-voc: every class is seen, unseen = [] -> mIoU(U), mAcc(U), hIoU are NaN.
    m = SegmentationMetrics(3)
    m.update(PRED[None], TARGET[None])
    r = m.compute()
    assert r["mIoU(S)"] == r["mIoU"]
    assert math.isnan(r["mIoU(U)"]) and math.isnan(r["mAcc(U)"]) and math.isnan(r["hIoU"])
    assert {c["split"] for c in r["per_class"]} == {"seen"}
    assert [c["class"] for c in r["per_class"]] == ["0", "1", "2"]


# ----------------------------------------------------------------------------- hIoU


def test_harmonic_paper_example():
    # Table 2, VOC inductive: S = 91.9, U = 77.8 -> hIoU 84.26, reported as 84.3.
    h = harmonic(91.9, 77.8)
    assert h == approx(2 * 91.9 * 77.8 / 169.7)
    assert round(h, 2) == 84.26
    assert round(h, 1) == 84.3
    # COCO-Stuff and Context rows of Table 2.
    assert round(harmonic(40.2, 41.4), 1) == 40.8
    assert round(harmonic(46.0, 54.6), 1) == 49.9


def test_harmonic_edge_cases():
    assert harmonic(0.0, 0.0) == 0.0
    assert harmonic(50.0, 0.0) == 0.0
    assert harmonic(70.0, 70.0) == approx(70.0)
    assert math.isnan(harmonic(float("nan"), 10.0))
    assert math.isnan(harmonic(10.0, float("nan")))


# ----------------------------------------------------------------------------- accumulation / DDP


def _two_batches():
    # Batch 1: class 0 everywhere and right. Batch 2: class 0 once and wrong, class 1 mostly right.
    t1, p1 = torch.tensor([[[0, 0, 0, 0]]]), torch.tensor([[[0, 0, 0, 0]]])
    t2, p2 = torch.tensor([[[0, 1, 1, 1]]]), torch.tensor([[[1, 1, 1, 1]]])
    return (p1, t1), (p2, t2)


def test_dataset_level_accumulation_not_mean_of_batches():
    (p1, t1), (p2, t2) = _two_batches()
    acc = SegmentationMetrics(2)
    acc.update(p1, t1)
    acc.update(p2, t2)
    r = acc.compute()
    # M = [[4, 1], [0, 3]]: IoU0 = 4/5, IoU1 = 3/4 -> mIoU 77.5
    assert torch.equal(acc.confmat, torch.tensor([[4, 1], [0, 3]]))
    assert r["mIoU"] == approx(77.5)

    once = SegmentationMetrics(2)
    once.update(torch.cat([p1, p2]), torch.cat([t1, t2]))
    assert_same(once.compute(), r)

    # Mean of per-batch mIoUs is a different number: batch 1 = 100 (class 1 NaN), batch 2 = (0 + 75)/2.
    per_batch = []
    for p, t in _two_batches():
        b = SegmentationMetrics(2)
        b.update(p, t)
        per_batch.append(b.compute()["mIoU"])
    assert per_batch == [approx(100.0), approx(37.5)]
    assert sum(per_batch) / 2 == approx(68.75) != r["mIoU"]


def test_many_updates_equal_one_update_random():
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 6, (8, 11, 13), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = I
    noise = torch.randint(0, 6, target.shape, generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target.clamp(max=5), noise)
    a = SegmentationMetrics(6, unseen=[4, 5])
    for i in range(0, 8, 3):
        a.update(pred[i : i + 3], target[i : i + 3])
    b = SegmentationMetrics(6, unseen=[4, 5])
    b.update(pred, target)
    assert torch.equal(a.confmat, b.confmat)
    assert_same(a.compute(), b.compute())


def test_matches_mmseg_style_reference_and_torchmetrics_jaccard():
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(3)
    targets = torch.randint(0, 7, (5, 16, 16), generator=g)
    targets[torch.rand(targets.shape, generator=g) < 0.15] = I
    preds = torch.randint(0, 7, (5, 16, 16), generator=g)
    m = SegmentationMetrics(7)
    for p, t in zip(preds, targets):
        m.update(p[None], t[None])
    r = m.compute()
    pacc, iou, acc = mmseg_reference(preds, targets, 7)
    assert r["pAcc"] == approx(100 * float(pacc))
    assert [c["IoU"] for c in r["per_class"]] == [approx(100 * float(x)) for x in iou]
    assert [c["Acc"] for c in r["per_class"]] == [approx(100 * float(x)) for x in acc]
    # torchmetrics' dataset-level per-class Jaccard with ignore_index agrees (all classes present here).
    jac = MulticlassJaccardIndex(num_classes=7, average=None, ignore_index=I)
    jac.update(preds, targets)
    assert [c["IoU"] for c in r["per_class"]] == [approx(100 * float(x), rel=1e-6) for x in jac.compute()]


def test_ddp_merge_by_summing_states():
    g = torch.Generator().manual_seed(4)
    target = torch.randint(0, 4, (6, 8, 8), generator=g)
    target[:, 0] = I
    pred = torch.randint(0, 4, (6, 8, 8), generator=g)
    kw = dict(seen=[0, 1, 2], unseen=[3])
    rank0, rank1, full = SegmentationMetrics(4, **kw), SegmentationMetrics(4, **kw), SegmentationMetrics(4, **kw)
    rank0.update(pred[:2], target[:2])
    rank1.update(pred[2:], target[2:])
    full.update(pred, target)
    # dist_reduce_fx="sum" is what DDP sync applies to the state.
    assert rank0._reductions["confmat"] is not None
    assert torch.equal(rank0.confmat + rank1.confmat, full.confmat)
    assert_same(metrics_from_confmat(rank0.confmat + rank1.confmat, **kw), full.compute())
    # torchmetrics' own state merge (the same reduction) gives the same answer.
    rank0.merge_state(rank1)
    assert torch.equal(rank0.confmat, full.confmat)
    assert_same(rank0.compute(), full.compute())


def test_metrics_from_stored_confmat_equals_compute(tmp_path):
    m = SegmentationMetrics(3, seen=[0, 1], unseen=[2], class_names=["a", "b", "c"])
    m.update(PRED[None], TARGET[None])
    m.update(TARGET.clamp(max=2)[None], TARGET[None])
    path = tmp_path / "confmat.pt"
    torch.save(m.confmat.cpu(), path)
    stored = torch.load(path)
    expected = m.compute()
    assert_same(metrics_from_confmat(stored, [0, 1], [2], ["a", "b", "c"]), expected)
    assert_same(metrics_from_confmat(stored.tolist(), [0, 1], [2], ["a", "b", "c"]), expected)
    assert_same(metrics_from_confmat(stored.numpy(), unseen=[2], class_names=["a", "b", "c"]), expected)


def test_reset():
    m = SegmentationMetrics(3)
    m.update(PRED[None], TARGET[None])
    assert int(m.confmat.sum()) == 13
    m.reset()
    assert m.confmat.dtype == torch.int64 and int(m.confmat.sum()) == 0
    m.update(PRED[None], TARGET[None])
    assert torch.equal(m.confmat, CONFMAT)  # not 2x: the old counts are gone
    r = m.compute()
    assert r["pAcc"] == approx(100 * 10 / 13)


def test_forward_returns_batch_value_and_accumulates():
    (p1, t1), (p2, t2) = _two_batches()
    m = SegmentationMetrics(2)
    b1 = m(p1, t1)
    b2 = m(p2, t2)
    assert b1["mIoU"] == approx(100.0) and b2["mIoU"] == approx(37.5)
    assert m.compute()["mIoU"] == approx(77.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_update_matches_cpu():
    m = SegmentationMetrics(3).cuda()
    m.update(one_hot_scores(PRED[None], 3).cuda(), TARGET[None].cuda())
    assert m.confmat.is_cuda
    assert torch.equal(m.confmat.cpu(), CONFMAT)


# ----------------------------------------------------------------------------- errors


def test_target_out_of_range_raises_naming_value():
    m = SegmentationMetrics(3)
    bad = TARGET.clone()
    bad[0, 0] = 7
    with pytest.raises(ValueError, match=r"\b7\b"):
        m.update(PRED[None], bad[None])
    bad[0, 0] = -1
    with pytest.raises(ValueError, match="-1"):
        m.update(PRED[None], bad[None])
    assert int(m.confmat.sum()) == 0  # a failed update leaves the state untouched


def test_pred_out_of_range_raises():
    bad = PRED.clone()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match=r"\b3\b"):
        SegmentationMetrics(3).update(bad[None], TARGET[None])
    # ... but not when the offending prediction sits on an ignore pixel
    ok = PRED.clone()
    ok[3, 3] = 99
    SegmentationMetrics(3).update(ok[None], TARGET[None])


def test_shape_errors():
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(1, 4, 5, dtype=torch.long), TARGET[None])
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(1, 3, 8, 8), TARGET[None])  # scores at a different resolution
    with pytest.raises(ValueError, match="channels"):
        m.update(torch.zeros(1, 4, 4, 4), TARGET[None])  # C mismatch
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(2, 4, 4, dtype=torch.long), TARGET[None])  # batch mismatch
    with pytest.raises(ValueError, match="integer"):
        m.update(PRED[None].float(), TARGET[None])  # float label map is ambiguous
    with pytest.raises(ValueError, match="integer"):
        m.update(PRED[None], TARGET[None].float())


def test_split_and_constructor_errors():
    assert partition_classes(4) == ([0, 1, 2, 3], [])
    assert partition_classes(4, seen=[0, 2]) == ([0, 2], [1, 3])
    assert partition_classes(4, unseen=range(2, 4)) == ([0, 1], [2, 3])
    with pytest.raises(ValueError, match="both"):
        SegmentationMetrics(3, seen=[0, 1], unseen=[1, 2])
    with pytest.raises(ValueError, match="neither"):
        SegmentationMetrics(3, seen=[0], unseen=[2])
    with pytest.raises(ValueError, match="outside"):
        SegmentationMetrics(3, unseen=[3])
    with pytest.raises(ValueError, match="class names"):
        SegmentationMetrics(3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="square"):
        metrics_from_confmat(torch.zeros(2, 3))
