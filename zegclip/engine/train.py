"""The training loop: official optimisation, three settings, exact resume, AMP, gradient accumulation, DDP.

``train(run)`` trains the model described by a :class:`zegclip.engine.run.RunConfig` and writes into its output
directory: ``config.json`` (the resolved run config), ``log.jsonl`` (loss/lr every ``log_every`` iterations),
``checkpoints/iter_XXXXXXX`` (safetensors, atomic) and ``train_summary.json``.

Reproducibility: the sample stream is a pure function of (seed, position) — epoch permutations from a seeded
generator, and each sample's augmentation seeded by its position in the stream — and checkpoints store every
RNG state, so a run killed at any point and resumed reaches the same weights as an uninterrupted one.
Multi-GPU: launch with ``torchrun --nproc_per_node N -m zegclip train ...``; each rank takes its slice of every
global batch, gradients are averaged by DDP, only rank 0 writes.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .checkpoint import latest_checkpoint, load_checkpoint, load_weights, save_checkpoint, write_json_atomic
from ..io import remove_stale_temps, strict_json, write_text_atomic
from ..model.losses import build_loss
from .schedule import ScheduleConfig, build_scheduler
from .selftrain import PAD_INDEX, ST_VARIANTS, inductive_labels, pseudo_labels


@dataclass(frozen=True)
class TrainConfig:
    iters: int = 20000
    batch_size: int = 16  # global batch (all GPUs, all accumulation steps): 4 per GPU x 4 GPUs officially
    accumulation: int = 1  # micro-batches per optimiser step, so batch 16 fits any GPU
    lr: float = 2e-4  # effective learning rate of every trainable parameter (official: base 2e-5 x 10)
    weight_decay: float = 0.01
    norm_weight_decay: float | None = None  # official: None (norms decay like the rest); 0.0 = intended exemption
    # learning-rate multipliers by parameter-name prefix, e.g. {"decoder": 10, "queries": 10}; official: none (every
    # trainable parameter at `lr`). The first matching prefix wins; unmatched parameters keep x1.
    lr_mult: dict[str, float] | None = None
    # the schedule's fields, flat as run files write them (`train: {warmup_iters: 0}`); `schedule` below builds the
    # ScheduleConfig from them, so the schedule's own checks and defaults apply to exactly these values
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    power: float = 0.9
    min_lr: float = 1e-6
    self_training: str | None = None  # None, "dagger" (official †) or "all" (paper's non-† variant)
    init_from: str | None = None  # weights-only initialisation, e.g. the inductive run's half-way checkpoint
    amp: str = "auto"  # "auto" (bf16 on CUDA when supported), "bf16", "off"
    compile: bool = False
    num_workers: int = 4
    log_every: int = 50
    checkpoint_every: int | None = None  # default: iters / 10, as the official schedule
    keep_checkpoints: int | None = None  # keep the newest N (None = all)
    full_checkpoints: bool = False  # also store the frozen CLIP weights
    seed: int = 0
    progress: bool = True
    stop_at: int | None = None  # end after this iteration (the schedule still spans `iters`): a run's first part

    def __post_init__(self):
        if self.iters < 1 or self.batch_size < 1 or self.accumulation < 1:
            raise ValueError(f"iters, batch_size and accumulation must be >= 1, got {self.iters}, {self.batch_size}, {self.accumulation}")
        if self.batch_size % self.accumulation:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by accumulation {self.accumulation}")
        if self.self_training is not None and self.self_training not in ST_VARIANTS:
            raise ValueError(f"self_training must be None or one of {ST_VARIANTS}, got {self.self_training!r}")
        if self.stop_at is not None and not 1 <= self.stop_at <= self.iters:
            raise ValueError(f"stop_at must lie in [1, iters={self.iters}], got {self.stop_at}")
        if self.lr_mult is not None:
            if not isinstance(self.lr_mult, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    for k, v in self.lr_mult.items()):
                raise ValueError(f"lr_mult must map parameter-name prefixes to numbers >= 0, got {self.lr_mult!r}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        # zero and negative values are rejected here, never silently replaced by a default
        for name, low in (("lr", "positive"), ("weight_decay", 0), ("warmup_iters", 0), ("warmup_ratio", 0),
                          ("power", 0), ("min_lr", 0), ("num_workers", 0), ("log_every", 1),
                          ("checkpoint_every", 1), ("keep_checkpoints", 1), ("norm_weight_decay", 0)):
            value = getattr(self, name)
            if value is None:
                continue
            if (low == "positive" and not value > 0) or (low != "positive" and value < low):
                raise ValueError(f"{name} must be {'> 0' if low == 'positive' else f'>= {low}'}, got {value}")

    @property
    def schedule(self) -> ScheduleConfig:
        return ScheduleConfig(base_lr=self.lr, warmup_iters=self.warmup_iters, warmup_ratio=self.warmup_ratio,
                              power=self.power, min_lr=self.min_lr)

    @property
    def every(self) -> int:
        return self.checkpoint_every or max(1, self.iters // 10)


# --------------------------------------------------------------------------------------------------- sampling
class StreamSampler(Sampler):
    """An endless, resumable stream of micro-batches of (index, position) pairs for one rank.

    The global stream concatenates seeded random permutations of the dataset; position p of the stream is
    sample ``perm_{p // n}[p % n]``. Each micro-step takes ``micro_batch * world`` consecutive positions and
    rank r takes its slice. ``start`` is the first global position (for resuming).
    """

    def __init__(self, size: int, micro_batch: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        if size < 1:
            raise ValueError("the training dataset is empty")
        self.size, self.micro, self.seed, self.start, self.rank, self.world = size, micro_batch, seed, start, rank, world

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=g)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pos = self.start
        cache: dict[int, torch.Tensor] = {}
        while True:
            first = pos + self.rank * self.micro
            batch = []
            for p in range(first, first + self.micro):
                epoch = p // self.size
                if epoch not in cache:
                    cache.clear()
                    cache[epoch] = self._perm(epoch)
                batch.append((int(cache[epoch][p % self.size]), p))
            yield batch
            pos += self.micro * self.world

    def __len__(self) -> int:  # endless; DataLoader only needs it for warnings
        return 2**62


class PositionSeeded(Dataset):
    """Wraps a dataset so that sample (index, position) is augmented with RNG seeded by (seed, position)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, position = item
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed would also queue a (slow, stack-recording) CUDA reseed
            torch.default_generator.manual_seed((self.seed * 1_000_003 + position) % (2**63))
            return self.dataset[index]


def collate(samples: list[dict]) -> dict:
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "label": torch.stack([s["label"] for s in samples]),
        "name": [s.get("name", "") for s in samples],
    }


# --------------------------------------------------------------------------------------------------- helpers
def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Optimiser groups. Official: one group, every trainable parameter at lr/wd. ``norm_weight_decay`` splits
    norms off (the exemption mmcv's config intended but never applied); ``lr_mult`` scales the lr of parameters by
    name prefix. Groups come in a fixed order (so a checkpoint's optimiser state always matches); empty ones are
    dropped."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    mults = dict(cfg.lr_mult or {})

    def mult(name: str) -> float:
        return next((float(m) for prefix, m in mults.items() if name.startswith(prefix)), 1.0)

    def is_norm(name: str, p: torch.Tensor) -> bool:
        return cfg.norm_weight_decay is not None and p.ndim <= 1 and ("norm" in name or ".ln" in name)

    groups: dict[tuple[float, bool], list] = {}
    for n, p in params:
        groups.setdefault((mult(n), is_norm(n, p)), []).append(p)
    return [{"params": ps, "lr": cfg.lr * m, "weight_decay": cfg.norm_weight_decay if norm else cfg.weight_decay}
            for (m, norm), ps in sorted(groups.items(), key=lambda kv: (kv[0][1], -kv[0][0]))]


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off":
        return None
    if cfg.amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class Labeler:
    """Turns full-space dataset labels into the training targets of the model's setting."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, ignore_index: int = 255):
        self.setting = model.cfg.setting
        self.num_classes = model.num_classes
        self.seen = model.seen_idx.tolist()
        self.unseen = sorted(set(range(self.num_classes)) - set(self.seen))
        self.variant = cfg.self_training
        self.loss_kind = model.cfg.loss.kind
        self.ignore = ignore_index
        if self.setting == "transductive" and self.variant is None:
            raise ValueError("setting 'transductive' needs train.self_training = 'dagger' or 'all'")
        if self.variant is not None and self.setting != "transductive":
            raise ValueError(f"self_training={self.variant!r} needs the model setting 'transductive', not {self.setting!r}")

    def __call__(self, labels: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        if self.setting == "inductive":
            return inductive_labels(labels, self.seen, self.num_classes, self.ignore)
        if self.setting == "transductive":
            pad = PAD_INDEX if self.variant == "all" else None
            return pseudo_labels(labels, logits, self.unseen, self.variant, self.ignore, pad_index=pad,
                                 loss_kind=self.loss_kind)
        return labels


# --------------------------------------------------------------------------------------------------- training
def fit(model: nn.Module, dataset: Dataset, cfg: TrainConfig, out_dir: str | os.PathLike, resume: bool = False,
        device: str | torch.device | None = None, record: dict | None = None) -> dict:
    """Train ``model`` on ``dataset`` (items: dict image (3,H,W), label (H,W) full-space ids) into ``out_dir``."""
    rank, world, local_rank = distributed()
    out = Path(out_dir)
    if device is None:
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    micro = cfg.batch_size // (cfg.accumulation * world)
    if micro < 1 or micro * cfg.accumulation * world != cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} does not split into {world} GPU(s) x {cfg.accumulation} accumulation steps")

    torch.manual_seed(cfg.seed + rank)
    model.to(device).train()
    labeler = Labeler(model, cfg)
    criterion = build_loss(model.cfg.loss)
    if cfg.init_from:
        load_weights(model, cfg.init_from)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.iters, cfg.schedule)
    start = 0
    if resume:
        ckpt = latest_checkpoint(out)
        if ckpt is not None:
            meta = load_checkpoint(ckpt, model, optimizer, scheduler)
            start = meta["iteration"]
            if world > 1:  # every rank gets its own generator stream again
                torch.manual_seed(cfg.seed + rank + 7919 * start)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)  # what killed writers left (the caller holds the run's lock)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=True)
    forward = torch.compile(net) if cfg.compile else net
    amp = autocast_dtype(cfg, device)

    sampler = StreamSampler(len(dataset), micro, cfg.seed, start * micro * world * cfg.accumulation, rank, world)
    loader = DataLoader(PositionSeeded(dataset, cfg.seed), batch_sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=cfg.num_workers > 0,
                        generator=torch.Generator())  # keeps the global RNG (dropout) untouched by the loader
    batches = iter(loader)
    log_path = out / "log.jsonl"
    if rank == 0:
        _truncate_log(log_path, start)  # a resumed run logs its iterations once
    progress = None
    if rank == 0 and cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.iters, initial=start, desc="train", unit="it", dynamic_ncols=True)
    t_start, last_log = time.perf_counter(), {}
    end = cfg.stop_at or cfg.iters
    for it in range(start, end):
        terms: dict[str, float] = {}
        for _ in range(cfg.accumulation):
            batch = next(batches)
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = forward(images)
            logits = logits.float()
            losses = criterion(logits, labeler(labels, logits))
            (losses["loss"] / cfg.accumulation).backward()
            for k, v in losses.items():
                terms[k] = terms.get(k, 0.0) + v.item() / cfg.accumulation
        lr = cfg.lr * scheduler.lr_lambdas[0](scheduler.last_epoch)  # the base lr (groups may have multipliers)
        if not all(math.isfinite(v) for v in terms.values()):
            if progress is not None:
                progress.close()
            last = latest_checkpoint(out)
            raise TrainingDiverged(f"training diverged at iteration {it + 1}: loss {terms.get('loss')} (lr {lr:.3g}); "
                                   f"nothing was saved for it (last good checkpoint: {last.name if last else 'none'})")
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = it + 1
        if rank == 0:
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{lr:.2e}")
            if done % cfg.log_every == 0 or done == end:
                last_log = {"iter": done, "lr": lr, **terms, "time": round(time.perf_counter() - t_start, 3)}
                with open(log_path, "a") as f:
                    f.write(strict_json(last_log, indent=None)[0] + "\n")
            if done % cfg.every == 0 or done == end:
                bad = next((n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()), None)
                if bad is not None:
                    raise TrainingDiverged(f"training diverged by iteration {done}: parameter {bad} is not finite; "
                                           "no checkpoint was written for it")
                save_checkpoint(out, done, model, optimizer, scheduler, extra={"seed": cfg.seed},
                                full=cfg.full_checkpoints)
                _prune(out, cfg.keep_checkpoints)
    if progress is not None:
        progress.close()
    summary = {"iterations": end, "resumed_from": start, "seconds": round(time.perf_counter() - t_start, 3),
               "last_log": last_log, "world_size": world, "micro_batch": micro, "device": str(device),
               "amp": str(amp) if amp else "off"}
    if rank == 0:
        write_json_atomic(out / "train_summary.json", {**(record or {}), "summary": summary})
    return summary


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: training stops, and no checkpoint or result is written for it."""


def _truncate_log(path: Path, start: int) -> None:
    """Keep the log lines of iterations ``<= start`` (all of them gone when starting at 0)."""
    if not path.exists():
        return
    if start == 0:
        path.unlink()
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("iter", 0) <= start:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut by a kill
    write_text_atomic(path, "".join(k + "\n" for k in kept))


def _prune(out: Path, keep: int | None) -> None:
    if not keep:
        return
    import shutil

    ckpts = sorted((out / "checkpoints").glob("iter_*"))
    for old in ckpts[:-keep]:
        shutil.rmtree(old, ignore_errors=True)

