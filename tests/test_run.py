"""End to end: a run file -> train -> checkpoint -> evaluate -> result JSON -> predict, through the CLI.

The data are the 14 real PASCAL VOC val samples from ../shared (converted to the VOC layout in tmp_path), or,
when ../shared is absent, generated images in the same layout.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import SHARED_DATA, tiny_overrides
from PIL import Image

from zegclip.cli import main
from zegclip.data.palettes import voc_color_to_index
from zegclip.engine.run import load_run


def make_voc_root(root: Path, size: int = 96) -> list[str]:
    """VOCdevkit/VOC2012 with JPEGImages, SegmentationClass (raw ids 0..20, 255) and train/val lists."""
    base = root / "VOCdevkit" / "VOC2012"
    (base / "JPEGImages").mkdir(parents=True)
    (base / "SegmentationClass").mkdir()
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    samples = SHARED_DATA / "voc2012-val-samples"
    ids = []
    if samples.is_dir():
        for target in sorted(samples.glob("*_target.png")):
            sid = target.name.split("_")[0]
            image = Image.open(samples / f"{sid}_image.png").convert("RGB").resize((size, size), Image.BILINEAR)
            raw = voc_color_to_index(np.asarray(Image.open(target).convert("RGB")))
            label = Image.fromarray(raw.astype(np.uint8)).resize((size, size), Image.NEAREST)
            image.save(base / "JPEGImages" / f"{sid}.jpg", quality=95)
            label.save(base / "SegmentationClass" / f"{sid}.png")
            ids.append(sid)
    else:
        rng = np.random.default_rng(0)
        for k in range(6):
            sid = f"gen_{k}"
            label = np.zeros((size, size), np.uint8)
            label[10:60, 20:80] = rng.integers(1, 21)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(base / "JPEGImages" / f"{sid}.jpg")
            Image.fromarray(label).save(base / "SegmentationClass" / f"{sid}.png")
            ids.append(sid)
    for name in ("train", "val"):
        (base / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return ids


@pytest.fixture
def run_file(tmp_path):
    ids = make_voc_root(tmp_path / "data")
    run = {
        "name": "tiny-voc",
        "model": {"preset": "voc", **tiny_overrides()},
        "data": {"dataset": "voc", "root": str(tmp_path / "data" / "VOCdevkit"), "crop_size": 64, "scale": [256, 64],
                 "test_short_side": 64, "options": {"aug": False}},
        "train": {"iters": 4, "batch_size": 2, "num_workers": 0, "warmup_iters": 1, "log_every": 2, "progress": False},
        "random_init": True,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path, ids


def test_train_evaluate_predict_through_the_cli(run_file, tmp_path, capsys):
    path, ids = run_file
    assert main(["train", "--config", str(path), "--eval"]) == 0
    out = tmp_path / "run"
    assert (out / "checkpoints" / "iter_0000004" / "model.safetensors").is_file()
    result = json.loads((out / "result.json").read_text())
    m = result["metrics"]
    assert set(m) >= {"pAcc", "mIoU", "mIoU(S)", "mIoU(U)", "hIoU", "mAcc"}
    assert 0 <= m["pAcc"] <= 100
    assert result["timings"]["images"] == len(ids)
    assert len(result["per_class"]) == 20
    assert result["seed"] == 0 and result["environment"]["versions"]["torch"]
    assert result["config"]["model"]["config"]["clip"]["image_size"] == 64
    confmat = np.array(result["confmat"])
    assert confmat.shape == (20, 20)
    # pAcc is recomputable from the stored matrix
    assert m["pAcc"] == pytest.approx(100 * np.trace(confmat) / confmat.sum())
    s, u = m["mIoU(S)"], m["mIoU(U)"]
    if s + u > 0:
        assert m["hIoU"] == pytest.approx(2 * s * u / (s + u))
    # the saved resolved config reproduces the run: same model config, loads again
    saved = load_run(out / "config.json")
    assert saved.model_config() == load_run(path).model_config()
    # evaluate again from the checkpoint: identical numbers
    assert main(["evaluate", "--config", str(out / "config.json"), "--output", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())["metrics"]
    for key, value in m.items():
        assert (math.isnan(value) and math.isnan(again[key])) or value == pytest.approx(again[key]), key
    # predict with free-text classes
    images = tmp_path / "data" / "VOCdevkit" / "VOC2012" / "JPEGImages"
    assert main(["predict", str(images), "--run", str(out), "--classes", "sheep,grass,sky", "--out",
                 str(tmp_path / "pred")]) == 0
    masks = sorted((tmp_path / "pred").glob("*_mask.png"))
    assert len(masks) == len(ids) and (tmp_path / "pred" / "legend.png").is_file()
    labels = np.asarray(Image.open(tmp_path / "pred" / f"{ids[0]}_labels.png"))
    assert labels.shape == (96, 96) and labels.max() < 3


def test_resume_through_the_cli(run_file, tmp_path):
    path, _ = run_file
    assert main(["train", "--config", str(path), "--set", "train.iters=2"]) == 0
    assert main(["train", "--config", str(path), "--set", "train.iters=4", "--resume"]) == 0
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())["summary"]
    assert summary["resumed_from"] == 2


@pytest.mark.parametrize("args,message", [
    (["train", "--config", "/nope.yaml"], "run config not found: /nope.yaml"),
    (["train", "--set", "train.iterz=3"], "unknown field(s) ['iterz']"),
    (["train", "--set", "data.root=/nope", "--set", "random_init=true"], "/nope"),
    (["evaluate", "--set", "random_init=true"], "data.root is not set"),
])
def test_cli_errors_are_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output_dir is relative
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_evaluate_without_checkpoint(run_file, tmp_path, capsys):
    path, _ = run_file
    assert main(["evaluate", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"zegclip evaluate: error: no checkpoint in {tmp_path / 'run' / 'checkpoints'}"


def test_packaged_recipes_resolve():
    from zegclip.engine.run import available_recipes

    names = available_recipes()
    assert {"voc-inductive", "voc-st", "voc-fully", "coco-inductive", "coco-st", "coco-fully", "context-inductive",
            "coco-to-voc", "coco-to-context"} <= set(names)
    for name in names:
        run = load_run(name)
        assert run.name == name and run.train.batch_size == 16
    st = load_run("voc-st")
    assert st.model_config().setting == "transductive" and st.train.self_training == "dagger"
    assert st.train.iters == 10000 and st.train.init_from.endswith("iter_0010000")
    coco = load_run("coco-inductive")
    assert coco.model_config().encoder.num_prompts == 100 and coco.train.iters == 80000
    cross = load_run("coco-to-voc")
    assert cross.model_config().encoder.num_prompts == 100 and cross.model_config().split == "voc"
    overridden = load_run("voc-inductive", ["train.iters=100", "data.root=/data/VOCdevkit"])
    assert overridden.train.iters == 100 and overridden.data.root == "/data/VOCdevkit"


@pytest.mark.slow
def test_two_process_ddp_training_with_torchrun(run_file, tmp_path):
    """The multi-GPU path (torchrun + DDP) on two CPU processes with the gloo backend."""
    import os
    import subprocess
    import sys

    path, _ = run_file
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    import socket

    with socket.socket() as sock:  # a free port, so back-to-back runs never collide
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", port,
           "-m", "zegclip", "train", "--config", str(path), "--set", f"output_dir={out}", "--set", "train.iters=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "train_summary.json").read_text())["summary"]
    assert summary["world_size"] == 2 and summary["micro_batch"] == 1
    assert (out / "checkpoints" / "iter_0000002" / "model.safetensors").is_file()


@pytest.mark.parametrize("sets", [
    ["model.setting=fully"],
    ["model.setting=transductive", "train.self_training=dagger"],
    ["model.setting=transductive", "train.self_training=all"],
])
def test_every_setting_trains_through_the_cli(run_file, tmp_path, sets):
    path, _ = run_file
    args = ["train", "--config", str(path), "--set", "train.iters=2", "--set", f"output_dir={tmp_path / 'x'}"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    log = [json.loads(x) for x in (tmp_path / "x" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["iter"] == 2 and math.isfinite(log[-1]["loss"])
