"""Tests for zegclip.model.losses (reference Sec. 7, Sec. 14 items 8/9)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zegclip.model.losses import (
    ExclusiveLoss,
    FocalDiceLoss,
    LossConfig,
    SigmoidBCELoss,
    build_loss,
)

LN2 = math.log(2.0)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _naive_sigmoid_loss(logits, labels, *, kind="plus", alpha=0.25, gamma=2.0,
                        squared=False, ignore_as_negative=True, ignore=255):
    """Pure-Python element-by-element reference. Returns (focal_or_bce, dice) unweighted."""
    B, C, H, W = logits.shape
    lg = logits.tolist()
    lb = labels.tolist()
    present = [sorted({v for row in lb[b] for v in row if v != ignore}) for b in range(B)]
    m = max(1, sum(len(p) for p in present))
    total = 0.0
    dice = 0.0
    for b in range(B):
        pix = [(i, j) for i in range(H) for j in range(W)
               if ignore_as_negative or lb[b][i][j] != ignore]
        for c in range(C):
            acc = 0.0
            sy = ss = sy_ = 0.0
            for i, j in pix:
                x = lg[b][c][i][j]
                y = 1.0 if lb[b][i][j] == c else 0.0
                p = _sig(x)
                ce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
                if kind == "plain":
                    acc += ce
                else:
                    pt = p * y + (1 - p) * (1 - y)
                    e = ce * (1 - pt) ** gamma
                    if alpha is not None:
                        e *= alpha * y + (1 - alpha) * (1 - y)
                    acc += e
                sy += p * y
                ss += p * p if squared else p
                sy_ += y * y if squared else y
            if pix:
                total += acc / len(pix)
            if c in present[b]:
                dice += 1 - (2 * sy + 1) / (ss + sy_ + 1)
    return total / m, dice / m


# --------------------------------------------------------------------------- worked vector


def test_worked_vector():
    loss = build_loss(LossConfig())
    assert isinstance(loss, FocalDiceLoss)
    logits = torch.zeros(1, 2, 512, 512)
    labels = torch.zeros(1, 512, 512, dtype=torch.long)
    out = loss(logits, labels)
    assert set(out) == {"loss_focal", "loss_dice", "loss"}
    assert out["loss_focal"].item() == pytest.approx(17.3287, abs=1e-4)
    assert out["loss_focal"].item() == pytest.approx(100 * LN2 * (0.25 * 0.25 + 0.75 * 0.25), rel=1e-6)
    assert out["loss_dice"].item() == pytest.approx(0.3333325, abs=1e-6)
    n = 512 * 512
    assert out["loss_dice"].item() == pytest.approx(1 - (n + 1) / (1.5 * n + 1), abs=1e-7)
    assert out["loss"].item() == pytest.approx(out["loss_focal"].item() + out["loss_dice"].item(), rel=1e-7)


# --------------------------------------------------------------------------- ignore handling


def test_ignore_as_negative_true_hand_case():
    # one image, C=2, pixels [class 0, ignore], zero logits, M = 1
    logits = torch.zeros(1, 2, 1, 2)
    labels = torch.tensor([[[0, 255]]])
    out = FocalDiceLoss(LossConfig(mask_weight=1.0))(logits, labels)
    pos, neg = 0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2
    # ch0: (pos + neg)/2, ch1: (neg + neg)/2  -- the ignore pixel is a negative for both
    assert out["loss_focal"].item() == pytest.approx((pos + neg) / 2 + neg, rel=1e-6)
    # dice ch0: s=[.5,.5], y=[1,0] -> 1 - 2/3
    assert out["loss_dice"].item() == pytest.approx(1 / 3, rel=1e-6)


def test_ignore_excluded_hand_case():
    logits = torch.zeros(1, 2, 1, 2)
    labels = torch.tensor([[[0, 255]]])
    out = FocalDiceLoss(LossConfig(mask_weight=1.0, ignore_as_negative=False))(logits, labels)
    pos, neg = 0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2
    assert out["loss_focal"].item() == pytest.approx(pos + neg, rel=1e-6)
    # dice ch0 over the single valid pixel: s=[.5], y=[1] -> 1 - 2/2.5
    assert out["loss_dice"].item() == pytest.approx(0.2, rel=1e-6)


def test_ignore_excluded_pixels_have_no_effect_or_gradient():
    torch.manual_seed(0)
    labels = torch.tensor([[[0, 255, 1], [255, 2, 0]]])
    logits = torch.randn(1, 3, 2, 3, requires_grad=True)
    cfg = LossConfig(ignore_as_negative=False)
    out = FocalDiceLoss(cfg)(logits, labels)
    out["loss"].backward()
    ign = (labels == 255).unsqueeze(1).expand_as(logits)
    assert torch.all(logits.grad[ign] == 0)
    assert torch.all(logits.grad[~ign] != 0)
    changed = logits.detach().clone()
    changed[ign] = 7.0
    out2 = FocalDiceLoss(cfg)(changed, labels)
    assert out2["loss"].item() == pytest.approx(out["loss"].item(), rel=1e-6)
    # with the official convention the ignored pixels do matter
    a = FocalDiceLoss(LossConfig())(logits.detach(), labels)["loss"].item()
    b = FocalDiceLoss(LossConfig())(changed, labels)["loss"].item()
    assert a != pytest.approx(b, rel=1e-3)


def test_all_ignored_image_contributes_negative_focal_only():
    logits = torch.zeros(2, 2, 1, 2)
    labels = torch.tensor([[[0, 0]], [[255, 255]]])
    out = FocalDiceLoss(LossConfig(mask_weight=1.0))(logits, labels)
    pos, neg = 0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2
    # M = 1; image 0: pos + neg ; image 1: neg + neg
    assert out["loss_focal"].item() == pytest.approx(pos + 3 * neg, rel=1e-6)
    assert out["loss_dice"].item() == pytest.approx(1 - 3 / 4, rel=1e-6)
    # excluded variant: the fully ignored image contributes nothing (no NaN)
    out = FocalDiceLoss(LossConfig(mask_weight=1.0, ignore_as_negative=False))(logits, labels)
    assert out["loss_focal"].item() == pytest.approx(pos + neg, rel=1e-6)


# --------------------------------------------------------------------------- normalisation


def test_num_masks_normalisation_two_images():
    # C=3; image 0 has classes {0,1}, image 1 has {2}: M = 3
    logits = torch.zeros(2, 3, 1, 2)
    labels = torch.tensor([[[0, 1]], [[2, 2]]])
    out = FocalDiceLoss(LossConfig(mask_weight=1.0))(logits, labels)
    pos, neg = 0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2
    img0 = (pos + neg) / 2 + (pos + neg) / 2 + neg
    img1 = neg + neg + pos
    assert out["loss_focal"].item() == pytest.approx((img0 + img1) / 3, rel=1e-6)
    dice = (1 / 3) + (1 / 3) + (1 - 3 / 4)
    assert out["loss_dice"].item() == pytest.approx(dice / 3, rel=1e-6)


def test_num_masks_distributed_average(monkeypatch):
    """Under torch.distributed, M is summed over ranks and divided by world size."""
    import torch.distributed as dist

    def fake_all_reduce(t, *args, **kwargs):
        t.add_(3.0)  # the other rank has 3 masks

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    logits = torch.zeros(1, 2, 1, 2)
    labels = torch.tensor([[[0, 0]]])  # local M = 1 -> (1 + 3) / 2 = 2
    out = FocalDiceLoss(LossConfig(mask_weight=1.0))(logits, labels)
    pos, neg = 0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2
    assert out["loss_focal"].item() == pytest.approx((pos + neg) / 2, rel=1e-6)


def test_random_case_matches_naive_reference():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 3, 5) * 2
    labels = torch.randint(0, 4, (2, 3, 5))
    labels[0, 0, :2] = 255
    labels[1, 2, 4] = 255
    for ign_neg in (True, False):
        for alpha in (0.25, None):
            for sq in (False, True):
                cfg = LossConfig(mask_weight=3.0, dice_weight=0.5, focal_alpha=alpha,
                                 dice_squared=sq, ignore_as_negative=ign_neg)
                out = FocalDiceLoss(cfg)(logits, labels)
                f, d = _naive_sigmoid_loss(logits, labels, alpha=alpha, squared=sq,
                                           ignore_as_negative=ign_neg)
                assert out["loss_focal"].item() == pytest.approx(3.0 * f, rel=1e-5)
                assert out["loss_dice"].item() == pytest.approx(0.5 * d, rel=1e-5)
                assert out["loss"].item() == pytest.approx(3.0 * f + 0.5 * d, rel=1e-5)


# --------------------------------------------------------------------------- variants


def test_dice_squared_hand_case():
    logits = torch.tensor([math.log(3.0), 0.0]).view(1, 1, 1, 2)  # s = [0.75, 0.5]
    labels = torch.tensor([[[0, 255]]])
    sq = FocalDiceLoss(LossConfig(dice_squared=True))(logits, labels)["loss_dice"].item()
    lin = FocalDiceLoss(LossConfig(dice_squared=False))(logits, labels)["loss_dice"].item()
    assert sq == pytest.approx(1 - 2.5 / (0.75**2 + 0.5**2 + 1 + 1), rel=1e-6)
    assert lin == pytest.approx(1 - 2.5 / (1.25 + 1 + 1), rel=1e-6)


def test_focal_alpha_none_differs_by_alpha_factor():
    torch.manual_seed(2)
    logits = torch.randn(1, 2, 4, 4)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    # C=1 channel, all positive: ratio is exactly 1/alpha
    with_a = FocalDiceLoss(LossConfig())(logits[:, :1], labels)["loss_focal"]
    no_a = FocalDiceLoss(LossConfig(focal_alpha=None))(logits[:, :1], labels)["loss_focal"]
    assert (no_a / with_a).item() == pytest.approx(4.0, rel=1e-6)
    # C=2, channel 0 all positive, channel 1 all negative: alpha weights 0.25 / 0.75
    cfg_a, cfg_n = LossConfig(), LossConfig(focal_alpha=None)
    a = FocalDiceLoss(cfg_a)(logits, labels)["loss_focal"].item()
    n = FocalDiceLoss(cfg_n)(logits, labels)["loss_focal"].item()
    n0 = FocalDiceLoss(cfg_n)(logits[:, :1], labels)["loss_focal"].item()
    n1 = n - n0  # channel-1 (negative) part without alpha
    assert a == pytest.approx(0.25 * n0 + 0.75 * n1, rel=1e-5)
    # dice does not depend on alpha
    assert FocalDiceLoss(cfg_a)(logits, labels)["loss_dice"].item() == pytest.approx(
        FocalDiceLoss(cfg_n)(logits, labels)["loss_dice"].item(), rel=1e-7)


def test_focal_gamma_zero_with_alpha_half_is_half_bce():
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 4, 4))
    f = FocalDiceLoss(LossConfig(focal_gamma=0.0, focal_alpha=0.5, mask_weight=1.0))(logits, labels)
    b = SigmoidBCELoss(LossConfig(kind="plain", mask_weight=1.0))(logits, labels)
    assert f["loss_focal"].item() == pytest.approx(0.5 * b["loss_bce"].item(), rel=1e-6)


def test_plain_bce_hand_case():
    loss = build_loss(LossConfig(kind="plain"))
    assert isinstance(loss, SigmoidBCELoss)
    logits = torch.zeros(1, 2, 1, 2)
    labels = torch.tensor([[[0, 255]]])
    out = loss(logits, labels)
    assert set(out) == {"loss_bce", "loss"}
    # every element is ln2; 2 channels, per-channel mean ln2, M = 1, weight 100
    assert out["loss_bce"].item() == pytest.approx(100 * 2 * LN2, rel=1e-6)
    torch.manual_seed(4)
    logits = torch.randn(2, 3, 2, 3)
    labels = torch.tensor([[[0, 1, 255], [1, 1, 0]], [[2, 2, 2], [255, 2, 2]]])
    for ign_neg in (True, False):
        out = SigmoidBCELoss(LossConfig(kind="plain", mask_weight=2.0,
                                        ignore_as_negative=ign_neg))(logits, labels)
        ref, _ = _naive_sigmoid_loss(logits, labels, kind="plain", ignore_as_negative=ign_neg)
        assert out["loss_bce"].item() == pytest.approx(2.0 * ref, rel=1e-5)
        assert out["loss"].item() == out["loss_bce"].item()


def test_exclusive_loss_matches_cross_entropy():
    loss = build_loss(LossConfig(kind="el", ce_weight=2.0))
    assert isinstance(loss, ExclusiveLoss)
    torch.manual_seed(5)
    logits = torch.randn(2, 4, 3, 3)
    labels = torch.randint(0, 4, (2, 3, 3))
    labels[0, 0] = 255
    out = loss(logits, labels)
    assert set(out) == {"loss_ce", "loss"}
    ref = 2.0 * F.cross_entropy(logits, labels, ignore_index=255)
    assert out["loss_ce"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_exclusive_loss_all_ignored_is_zero_with_grad():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    labels = torch.full((1, 2, 2), 255, dtype=torch.long)
    out = ExclusiveLoss(LossConfig(kind="el"))(logits, labels)
    assert out["loss"].item() == 0.0
    assert not torch.isnan(out["loss"])
    assert out["loss"].requires_grad
    out["loss"].backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


# --------------------------------------------------------------------------- resize, grads, errors


@pytest.mark.parametrize("kind", ["el", "plain", "plus"])
def test_logits_resized_to_label_size(kind):
    torch.manual_seed(6)
    small = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[1, :2] = 255
    loss = build_loss(LossConfig(kind=kind))
    out = loss(small, labels)
    big = F.interpolate(small.detach(), size=(8, 8), mode="bilinear", align_corners=False)
    ref = loss(big, labels)
    assert out["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-6)
    out["loss"].backward()
    assert small.grad is not None and small.grad.shape == small.shape
    assert torch.isfinite(small.grad).all() and small.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["el", "plain", "plus"])
def test_gradients_flow(kind):
    torch.manual_seed(7)
    logits = torch.randn(2, 5, 6, 6, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6, 6))
    labels[0, 0] = 255
    out = build_loss(LossConfig(kind=kind))(logits, labels)
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["el", "plain", "plus"])
def test_label_out_of_range_raises(kind):
    loss = build_loss(LossConfig(kind=kind))
    logits = torch.zeros(1, 3, 2, 2)
    labels = torch.tensor([[[0, 1], [7, 255]]])
    with pytest.raises(ValueError, match=r"\b7\b.*C=3"):
        loss(logits, labels)
    labels = torch.tensor([[[0, 1], [-1, 255]]])
    with pytest.raises(ValueError, match=r"-1"):
        loss(logits, labels)
    labels = torch.tensor([[[0, 1], [200, 255]]])  # the pad-200 case
    with pytest.raises(ValueError, match=r"200"):
        loss(logits, labels)


def test_bad_shapes_and_dtypes_raise():
    loss = build_loss(LossConfig())
    with pytest.raises(ValueError, match="labels"):
        loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="logits"):
        loss(torch.zeros(2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        loss(torch.zeros(1, 2, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="batch"):
        loss(torch.zeros(2, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "softmax"}, "kind"),
        ({"mask_weight": -1.0}, "mask_weight"),
        ({"dice_weight": -0.1}, "dice_weight"),
        ({"ce_weight": -2.0}, "ce_weight"),
        ({"mask_weight": float("nan")}, "mask_weight"),
        ({"focal_gamma": -1.0}, "focal_gamma"),
        ({"focal_alpha": 1.5}, "focal_alpha"),
        ({"focal_alpha": -0.1}, "focal_alpha"),
    ],
)
def test_bad_config_raises(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        LossConfig(**kwargs)
    assert "\n" not in str(info.value)
    assert str(list(kwargs.values())[0]) in str(info.value)


def test_config_defaults_are_official():
    cfg = LossConfig()
    assert (cfg.kind, cfg.mask_weight, cfg.dice_weight) == ("plus", 100.0, 1.0)
    assert (cfg.focal_alpha, cfg.focal_gamma) == (0.25, 2.0)
    assert cfg.dice_squared is False and cfg.ignore_as_negative is True
    assert cfg.ignore_index == 255
