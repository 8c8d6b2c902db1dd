"""Training: label remapping, pseudo-labels, sampling, optimiser facts, checkpoints and exact resume."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

import zegclip
from zegclip.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from zegclip.engine.selftrain import inductive_labels, label_table, pseudo_labels
from zegclip.engine.train import PositionSeeded, StreamSampler, TrainConfig, fit, param_groups

REPO = Path(__file__).resolve().parents[1]


class Shapes(torch.utils.data.Dataset):
    """Random rectangles of classes 0..19 on an ignore background; randomness from torch's RNG."""

    def __init__(self, n=6, size=64, delay=0.0):
        self.n, self.size, self.delay = n, size, delay

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        label = torch.full((self.size, self.size), 255, dtype=torch.long)
        for c in torch.randint(0, 20, (3,)).tolist():
            y, x = torch.randint(0, self.size // 2, (2,)).tolist()
            label[y : y + self.size // 2, x : x + self.size // 2] = c
        image = torch.randn(3, self.size, self.size) + label.clamp(max=20).float()[None] / 10
        return {"image": image, "label": label, "name": str(i)}


# ------------------------------------------------------------------------------------------------ labels
def test_inductive_remap_voc_and_coco():
    voc = torch.tensor([0, 14, 15, 19, 255])
    assert inductive_labels(voc, list(range(15)), 20).tolist() == [0, 14, 255, 255, 255]
    coco_seen = [i for i in range(171) if i not in [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160]]
    coco = torch.tensor([20, 19, 170, 255, 18])
    assert inductive_labels(coco, coco_seen, 171).tolist() == [19, 255, 155, 255, 18]
    assert label_table(3, [0, 2], compress=False).tolist()[:4] == [0, 255, 2, 255]


def test_pseudo_labels_dagger_and_all():
    unseen = [2, 3]
    labels = torch.tensor([[[0, 2, 3, 255, 254]]])  # seen, unseen, unseen, ignore, padding
    logits = torch.zeros(1, 4, 1, 5)
    logits[0, 3] = 1.0  # class 3 wins among the unseen everywhere
    logits[0, 0] = 9.0  # a seen class is never a pseudo-label
    dagger = pseudo_labels(labels, logits, unseen, "dagger")
    assert dagger.tolist() == [[[0, 3, 3, 255, 254]]]
    everything = pseudo_labels(labels, logits, unseen, "all", pad_index=254)
    assert everything.tolist() == [[[0, 3, 3, 3, 255]]]
    with pytest.raises(ValueError, match="variant"):
        pseudo_labels(labels, logits, unseen, "soft")


def test_labeler_requires_matching_setting():
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    with pytest.raises(ValueError, match="transductive"):
        fit(model, Shapes(), TrainConfig(iters=1, batch_size=2, self_training="dagger", num_workers=0, progress=False),
            "/nonexistent-unused")


# ------------------------------------------------------------------------------------------------ sampling
def test_stream_sampler_is_a_pure_function_of_position():
    full = StreamSampler(5, 2, seed=3)
    it = iter(full)
    first = [next(it) for _ in range(6)]  # 12 positions = 2 epochs + 2
    assert [p for b in first for _, p in b] == list(range(12))
    epoch0 = sorted(i for b in first[:2] for i, _ in b) + [first[2][0][0]]
    assert sorted(epoch0) == [0, 1, 2, 3, 4]
    resumed = iter(StreamSampler(5, 2, seed=3, start=6))
    assert [next(resumed) for _ in range(3)] == first[3:]
    ranks = [iter(StreamSampler(5, 2, seed=3, rank=r, world=2)) for r in range(2)]
    assert next(ranks[0]) + next(ranks[1]) == first[0] + first[1]


def test_position_seeded_augmentation_is_reproducible():
    ds = PositionSeeded(Shapes(), seed=1)
    a, b, c = ds[(0, 7)], ds[(0, 7)], ds[(0, 8)]
    assert torch.equal(a["label"], b["label"]) and not torch.equal(a["label"], c["label"])


# ------------------------------------------------------------------------------------------------ optimiser
def test_official_optimiser_groups():
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    (group,) = param_groups(model, TrainConfig())
    assert group["lr"] == 2e-4 and group["weight_decay"] == 0.01
    assert sum(p.numel() for p in group["params"]) == model.parameter_counts()["trainable_params"]
    groups = param_groups(model, TrainConfig(norm_weight_decay=0.0))
    assert groups[1]["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("norm" in names[id(p)] for p in groups[1]["params"])


def test_fit_trains_logs_and_checkpoints(tmp_path):
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = TrainConfig(iters=4, batch_size=2, accumulation=2, num_workers=0, log_every=2, checkpoint_every=2,
                      warmup_iters=1, progress=False)
    summary = fit(model, Shapes(), cfg, tmp_path)
    assert summary["micro_batch"] == 1 and summary["iterations"] == 4
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["iter"] for x in lines] == [2, 4]
    assert {"loss", "loss_focal", "loss_dice", "lr"} <= set(lines[0])
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("iter_*")) == ["iter_0000002", "iter_0000004"]
    assert latest_checkpoint(tmp_path).name == "iter_0000004"
    weights = load_file(str(tmp_path / "checkpoints" / "iter_0000004" / "model.safetensors"))
    assert set(weights) == set(before)  # trainable parameters only, no frozen CLIP weights
    assert any(not torch.equal(before[n], weights[n]) for n in before)
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary leftovers


def test_checkpoint_round_trip_restores_optimizer_scheduler_and_rng(tmp_path):
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    sched = zegclip.engine.schedule.build_scheduler(opt, 10, zegclip.engine.schedule.ScheduleConfig(base_lr=1e-3, warmup_iters=2))
    model.train()
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    opt.step()
    sched.step()
    torch.manual_seed(123)
    save_checkpoint(tmp_path, 1, model, opt, sched)
    expected_draw = torch.rand(3)
    other = zegclip.build_model("voc", random_init=True, **tiny_overrides(seed=5))
    opt2 = torch.optim.AdamW(other.trainable_parameters(), lr=1e-3)
    sched2 = zegclip.engine.schedule.build_scheduler(opt2, 10, zegclip.engine.schedule.ScheduleConfig(base_lr=1e-3, warmup_iters=2))
    meta = load_checkpoint(latest_checkpoint(tmp_path), other, opt2, sched2)
    assert meta["iteration"] == 1
    assert torch.equal(torch.rand(3), expected_draw)
    for (n, p), (_, q) in zip(model.named_parameters(), other.named_parameters()):
        if p.requires_grad:
            assert torch.equal(p, q), n
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])
    assert sched2.last_epoch == sched.last_epoch and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_self_training_run_from_inductive_weights(tmp_path):
    ind = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    fit(ind, Shapes(), TrainConfig(iters=2, batch_size=2, num_workers=0, warmup_iters=1, progress=False), tmp_path / "ind")
    st = zegclip.build_model("voc", random_init=True, **tiny_overrides(setting="transductive"))
    cfg = TrainConfig(iters=2, batch_size=2, num_workers=0, warmup_iters=1, progress=False, self_training="dagger",
                      init_from=str(tmp_path / "ind" / "checkpoints" / "iter_0000002"))
    summary = fit(st, Shapes(), cfg, tmp_path / "st")
    assert summary["iterations"] == 2
    assert st.train_idx.tolist() == list(range(20))


# ------------------------------------------------------------------------------------------------ resume
_CHILD = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from conftest import tiny_overrides
    from test_train import Shapes
    import zegclip
    from zegclip.engine.train import TrainConfig, fit
    torch.set_num_threads(1)
    model = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    cfg = TrainConfig(iters=8, batch_size=2, num_workers=0, checkpoint_every=2, warmup_iters=2, progress=False)
    fit(model, Shapes(delay={delay}), cfg, sys.argv[1], resume=True)
""")


def _run_child(out, delay, kill_after=None):
    code = _CHILD.format(tests=str(REPO / "tests"), delay=delay)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env, cwd=REPO)
    if kill_after is None:
        assert proc.wait(timeout=300) == 0
        return
    deadline = time.time() + 240
    while not (out / "checkpoints" / kill_after).is_dir():
        assert proc.poll() is None, "child finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run_child(straight, delay=0.0)
    _run_child(killed, delay=0.3, kill_after="iter_0000002")  # slow samples: killed mid-run, whatever the load
    interrupted_at = latest_checkpoint(killed).name
    assert interrupted_at in ("iter_0000002", "iter_0000004", "iter_0000006")
    _run_child(killed, delay=0.0)  # resume
    a = load_file(str(straight / "checkpoints" / "iter_0000008" / "model.safetensors"))
    b = load_file(str(killed / "checkpoints" / "iter_0000008" / "model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    summary = json.loads((killed / "train_summary.json").read_text())["summary"]
    assert summary["resumed_from"] == int(interrupted_at[-7:])


# the child again, with the write of checkpoint 4 stalled after its weights file: a kill lands inside the write
_CHILD_STALLED_SAVE = _CHILD.replace("from zegclip.engine.train import TrainConfig, fit\n", """from zegclip.engine.train import TrainConfig, fit
import time
import zegclip.engine.checkpoint as ck
_save_file = ck.save_file
def stalled(tensors, path, metadata=None):
    _save_file(tensors, path, metadata=metadata)
    if "iter_0000004" in path:
        time.sleep(120)
ck.save_file = stalled
""")


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_then_resume(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run_child(straight, delay=0.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = _CHILD_STALLED_SAVE.format(tests=str(REPO / "tests"), delay=0.0)
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed)], env=env, cwd=REPO)
    deadline = time.time() + 240
    while not list((killed / "checkpoints").glob(".iter_0000004.*.tmp/model.safetensors")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert latest_checkpoint(killed).name == "iter_0000002"  # the half-written checkpoint is invisible
    assert list((killed / "checkpoints").glob(".iter_0000004.*.tmp"))
    _run_child(killed, delay=0.0)  # resume
    assert not list((killed / "checkpoints").glob(".*.tmp"))  # the killed writer's temp folder is gone
    assert json.loads((killed / "train_summary.json").read_text())["summary"]["resumed_from"] == 2
    a = load_file(str(straight / "checkpoints" / "iter_0000008" / "model.safetensors"))
    b = load_file(str(killed / "checkpoints" / "iter_0000008" / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(x)["iter"] for x in (killed / "log.jsonl").read_text().splitlines()]
    assert lines == sorted(set(lines))  # no iteration logged twice


def test_all_variant_never_pseudo_labels_padding(tmp_path):
    from zegclip.data.transforms import train_transforms
    from zegclip.engine.selftrain import PAD_INDEX
    from torchvision import tv_tensors

    tf = train_transforms(crop_size=64, scale=(64, 32), ratio_range=(1.0, 1.0), photometric=False, flip_prob=0.0,
                          label_pad_value=PAD_INDEX)
    image = tv_tensors.Image(torch.zeros(3, 32, 48, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.full((32, 48), 255, dtype=torch.long))
    mask[:, :10] = 16  # unseen (sheep)
    _, label = tf(image, mask)
    assert label.shape == (64, 64)
    assert (label[32:] == PAD_INDEX).all() and (label[:, 48:] == PAD_INDEX).all()
    logits = torch.zeros(1, 20, 64, 64)
    logits[:, 18] = 1.0
    target = pseudo_labels(label[None], logits, [15, 16, 17, 18, 19], "all", pad_index=PAD_INDEX)
    assert (target[0, 32:] == 255).all() and (target[0, :32, :10] == 18).all() and (target[0, :32, 10:48] == 18).all()


def test_stop_at_trains_the_first_part_of_a_schedule_and_resumes_exactly(tmp_path):
    """stop_at ends early on the full schedule (self-training's half-way start); resuming gives the full run."""
    cfg = TrainConfig(iters=4, batch_size=2, num_workers=0, checkpoint_every=2, warmup_iters=1, progress=False)
    torch.manual_seed(0)
    straight = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    torch.manual_seed(0)
    staged = zegclip.build_model("voc", random_init=True, **tiny_overrides())
    fit(straight, Shapes(), cfg, tmp_path / "a")
    first = fit(staged, Shapes(), dataclasses.replace(cfg, stop_at=2), tmp_path / "b")
    assert first["iterations"] == 2 and latest_checkpoint(tmp_path / "b").name == "iter_0000002"
    fit(staged, Shapes(), cfg, tmp_path / "b", resume=True)
    a = load_file(str(tmp_path / "a" / "checkpoints" / "iter_0000004" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "iter_0000004" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="stop_at must lie in"):
        TrainConfig(iters=4, stop_at=5)
