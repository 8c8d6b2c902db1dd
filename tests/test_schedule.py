"""Tests for zegclip.engine.schedule (reference Sec. 10)."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

from zegclip.engine.schedule import ScheduleConfig, build_scheduler, lr_at

T = 20000


def _formula(i: int, t: int = T, b: float = 2e-4, w: int = 1500, r: float = 1e-6,
             p: float = 0.9, m: float = 1e-6) -> float:
    lr = (b - m) * (1 - i / t) ** p + m
    if i < w:
        lr *= 1 - (1 - i / w) * (1 - r)
    return lr


def test_defaults_are_official():
    cfg = ScheduleConfig()
    assert (cfg.base_lr, cfg.warmup_iters, cfg.warmup_ratio, cfg.power, cfg.min_lr) == (
        2e-4, 1500, 1e-6, 0.9, 1e-6)


def test_iteration_zero():
    cfg = ScheduleConfig()
    lr0 = lr_at(0, T, cfg)
    assert lr0 == pytest.approx(2e-4 * 1e-6, rel=1e-3)
    assert lr0 == pytest.approx(2e-4 * (1 - (1 - 1e-6)), rel=1e-12)
    assert lr0 == pytest.approx(_formula(0), rel=1e-12)


def test_end_of_warmup_and_final_iteration():
    cfg = ScheduleConfig()
    assert lr_at(1500, T, cfg) == pytest.approx((2e-4 - 1e-6) * (1 - 1500 / T) ** 0.9 + 1e-6, rel=1e-12)
    assert lr_at(T, T, cfg) == 1e-6
    for i in (1, 10, 749, 1499, 1501, 5000, 19999):
        assert lr_at(i, T, cfg) == pytest.approx(_formula(i), rel=1e-12)


def test_monotone_warmup_then_decay():
    cfg = ScheduleConfig()
    lrs = [lr_at(i, T, cfg) for i in range(T + 1)]
    warm = lrs[:1501]
    decay = lrs[1500:]
    assert all(b > a for a, b in zip(warm, warm[1:]))
    assert all(b < a for a, b in zip(decay, decay[1:]))
    assert max(lrs) == lrs[1500]


def test_lr_at_range_and_config_errors():
    cfg = ScheduleConfig()
    with pytest.raises(ValueError, match="iteration"):
        lr_at(-1, T, cfg)
    with pytest.raises(ValueError, match="iteration"):
        lr_at(T + 1, T, cfg)
    with pytest.raises(ValueError, match="max_iters"):
        lr_at(0, 0, cfg)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"base_lr": 0.0}, "base_lr"),
        ({"base_lr": -1e-4}, "base_lr"),
        ({"warmup_iters": -1}, "warmup_iters"),
        ({"warmup_iters": 1.5}, "warmup_iters"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
        ({"power": -0.9}, "power"),
        ({"min_lr": -1e-6}, "min_lr"),
        ({"min_lr": 1.0}, "min_lr"),
    ],
)
def test_bad_config_raises(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        ScheduleConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_no_warmup():
    cfg = ScheduleConfig(warmup_iters=0)
    assert lr_at(0, 100, cfg) == pytest.approx(2e-4, rel=1e-12)


def _opt(lrs=(2e-4, 2e-5)):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def test_scheduler_two_groups_keep_ratio():
    cfg = ScheduleConfig()
    t = 3000
    opt = _opt()
    sched = build_scheduler(opt, t, cfg)
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    for i in range(t + 1):
        g0, g1 = (g["lr"] for g in opt.param_groups)
        assert g0 == pytest.approx(lr_at(i, t, cfg), rel=1e-9)
        assert g0 / g1 == pytest.approx(10.0, rel=1e-9)
        if i < t:
            opt.step()
            sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6, rel=1e-12)


def test_scheduler_state_dict_round_trip():
    cfg = ScheduleConfig(warmup_iters=50)
    t = 200
    opt = _opt()
    sched = build_scheduler(opt, t, cfg)
    full = []
    for _ in range(t):
        full.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    full.append([g["lr"] for g in opt.param_groups])

    k = 37
    opt_a = _opt()
    sched_a = build_scheduler(opt_a, t, cfg)
    for _ in range(k):
        opt_a.step()
        sched_a.step()
    buf = io.BytesIO()
    torch.save({"opt": opt_a.state_dict(), "sched": sched_a.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # only plain data in the state

    opt_b = _opt()
    sched_b = build_scheduler(opt_b, t, cfg)
    opt_b.load_state_dict(state["opt"])
    sched_b.load_state_dict(state["sched"])
    assert sched_b.last_epoch == k
    resumed = [[g["lr"] for g in opt_b.param_groups]]
    for _ in range(t - k):
        opt_b.step()
        sched_b.step()
        resumed.append([g["lr"] for g in opt_b.param_groups])
    for got, want in zip(resumed, full[k:]):
        assert got == pytest.approx(want, rel=1e-12)
    # the scheduler itself is picklable too
    pickle.loads(pickle.dumps(sched_b))


def test_scheduler_holds_min_lr_past_end():
    cfg = ScheduleConfig(warmup_iters=2)
    opt = _opt((2e-4,))
    sched = build_scheduler(opt, 5, cfg)
    for _ in range(7):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6, rel=1e-12)
