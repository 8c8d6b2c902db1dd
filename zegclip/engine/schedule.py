"""Official ZegCLIP learning-rate schedule: poly decay with linear warm-up.

Per iteration ``i`` (0-based), ``T = max_iters``, base lr ``b``::

    poly(i) = (b - min_lr) * (1 - i / T) ** power + min_lr
    lr(i)   = poly(i) * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))   if i < warmup_iters
    lr(i)   = poly(i)                                                      otherwise

``min_lr`` is absolute (not a ratio). Defaults follow the official configs
(reference Sec. 10): b = 2e-4, 1500 warm-up iterations, warm-up ratio 1e-6,
power 0.9, min_lr 1e-6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["ScheduleConfig", "lr_at", "PolyWarmupLambda", "build_scheduler"]


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ScheduleConfig:
    """Poly + linear warm-up schedule parameters (defaults = official)."""

    base_lr: float = 2e-4
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    power: float = 0.9
    min_lr: float = 1e-6

    def __post_init__(self) -> None:
        if not _is_real(self.base_lr) or not math.isfinite(self.base_lr) or not self.base_lr > 0:
            raise ValueError(f"ScheduleConfig.base_lr must be a finite number > 0, got {self.base_lr!r}")
        if not _is_int(self.warmup_iters) or self.warmup_iters < 0:
            raise ValueError(f"ScheduleConfig.warmup_iters must be an int >= 0, got {self.warmup_iters!r}")
        if not _is_real(self.warmup_ratio) or not (0.0 <= self.warmup_ratio <= 1.0):
            raise ValueError(f"ScheduleConfig.warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if not _is_real(self.power) or not math.isfinite(self.power) or not self.power >= 0:
            raise ValueError(f"ScheduleConfig.power must be a finite number >= 0, got {self.power!r}")
        if not _is_real(self.min_lr) or not (0.0 <= self.min_lr <= self.base_lr):
            raise ValueError(f"ScheduleConfig.min_lr must be in [0, base_lr={self.base_lr}], got {self.min_lr!r}")


def _check_max_iters(max_iters: object) -> None:
    if not _is_int(max_iters) or max_iters <= 0:
        raise ValueError(f"max_iters must be an int > 0, got {max_iters!r}")


def _lr_formula(i: int, max_iters: int, base_lr: float, warmup_iters: int,
                warmup_ratio: float, power: float, min_lr: float) -> float:
    lr = (base_lr - min_lr) * (1.0 - i / max_iters) ** power + min_lr
    if i < warmup_iters:
        lr = lr * (1.0 - (1.0 - i / warmup_iters) * (1.0 - warmup_ratio))
    return lr


def lr_at(iteration: int, max_iters: int, cfg: ScheduleConfig) -> float:
    """Learning rate at 0-based ``iteration`` in [0, max_iters] (pure function)."""
    _check_max_iters(max_iters)
    if not _is_int(iteration) or not (0 <= iteration <= max_iters):
        raise ValueError(f"iteration must be an int in [0, max_iters={max_iters}], got {iteration!r}")
    return _lr_formula(iteration, max_iters, cfg.base_lr, cfg.warmup_iters,
                       cfg.warmup_ratio, cfg.power, cfg.min_lr)


class PolyWarmupLambda:
    """Picklable LambdaLR multiplier: ``lr_at(i) / base_lr``.

    Only plain numbers are stored as attributes, so ``LambdaLR.state_dict()``
    (which saves this object's ``__dict__``) stays loadable with
    ``torch.load(weights_only=True)``. Iterations past ``max_iters`` hold the
    final value (``min_lr``) instead of raising.
    """

    def __init__(self, max_iters: int, cfg: ScheduleConfig) -> None:
        _check_max_iters(max_iters)
        self.max_iters = int(max_iters)
        self.base_lr = float(cfg.base_lr)
        self.warmup_iters = int(cfg.warmup_iters)
        self.warmup_ratio = float(cfg.warmup_ratio)
        self.power = float(cfg.power)
        self.min_lr = float(cfg.min_lr)

    def __call__(self, iteration: int) -> float:
        i = min(max(int(iteration), 0), self.max_iters)
        lr = _lr_formula(i, self.max_iters, self.base_lr, self.warmup_iters,
                         self.warmup_ratio, self.power, self.min_lr)
        return lr / self.base_lr


def build_scheduler(optimizer: torch.optim.Optimizer, max_iters: int,
                    cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR setting each group's lr to ``lr_at(i) * group_initial_lr / cfg.base_lr``.

    Call ``scheduler.step()`` once per iteration (after ``optimizer.step()``);
    the lr used at iteration i is the one set after i steps. Groups whose
    initial lr differs from ``cfg.base_lr`` keep their ratio to it.
    """
    _check_max_iters(max_iters)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=PolyWarmupLambda(max_iters, cfg))
