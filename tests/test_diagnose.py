"""Calibration instruments of the mini world: patch labels, the patch oracle, linear probes, lr multipliers."""
from __future__ import annotations

import pytest
import torch

from zegclip.mini.dataset import MiniSegmentation
from zegclip.mini.diagnose import linear_probe, patch_labels, patch_oracle
from zegclip.engine.train import TrainConfig, param_groups


def test_patch_labels_majority_with_and_without_background():
    lab = torch.full((1, 4, 4), 255)
    lab[0, :2, :2] = torch.tensor([[1, 1], [1, 255]])  # 3 of 4 labelled: class 1
    lab[0, :2, 2:] = torch.tensor([[2, 255], [255, 255]])  # mostly background, one pixel of class 2
    lab[0, 2:, :2] = torch.tensor([[0, 0], [3, 3]])  # a tie: the lower id wins (argmax order)
    with_bg = patch_labels(lab, 2, num_classes=4)
    assert with_bg.tolist() == [[[1, 255], [0, 255]]]
    without = patch_labels(lab, 2, num_classes=4, background=False)
    assert without.tolist() == [[[1, 2], [0, 255]]]


def test_patch_oracle_is_exact_at_pixel_resolution_and_below_one_at_8px():
    exact = patch_oracle("mini-voc", scenes=10, patch=1)
    assert exact["mIoU"] == 100.0 and exact["pAcc"] == 100.0
    coarse = patch_oracle("mini-voc", scenes=10, patch=8)
    assert 80.0 < coarse["mIoU"] < 100.0 and coarse["scenes"] == 10 and coarse["patch"] == 8


def test_calib_stream_is_disjoint_from_train_and_val():
    streams = {s: MiniSegmentation("mini-voc", s).stream for s in ("train", "val", "calib")}
    assert len(set(streams.values())) == 3
    a, b = MiniSegmentation("mini-voc", "val")[0], MiniSegmentation("mini-voc", "calib")[0]
    assert not torch.equal(a["image"], b["image"])


def test_linear_probe_on_pixels_of_a_random_model_runs_and_reports_attributes():
    from zegclip.model.factory import build_model

    model = build_model("mini-voc", random_init=True, encoder={"mode": "fix"})
    out = linear_probe(model, "mini-voc", "pixels", train_scenes=40, test_scenes=20, steps=50)
    assert out["dim"] == 3 * 8 * 8 and out["train_patches"] > 100
    for key in ("acc", "colour_acc", "shape_acc"):
        assert 0.0 <= out[key] <= 100.0
    # colour is one linear feature away in raw pixels: the probe must find it
    assert out["colour_acc"] > 90.0
    assert out["shape_acc"] >= out["acc"]


def test_lr_mult_groups_by_prefix_in_a_fixed_order():
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "decoder": torch.nn.Linear(2, 2)})
    groups = param_groups(model, TrainConfig(lr=1e-3, lr_mult={"decoder": 10}))
    assert [g["lr"] for g in groups] == [1e-2, 1e-3]
    assert [len(g["params"]) for g in groups] == [2, 2]
    assert groups[0]["params"][0] is model["decoder"].weight
    one = param_groups(model, TrainConfig(lr=1e-3))
    assert len(one) == 1 and one[0]["lr"] == 1e-3 and len(one[0]["params"]) == 4


def test_chance_miou_of_a_uniform_random_predictor():
    from zegclip.engine.evaluate import chance_miou

    # 2 classes, 30 and 10 ground-truth pixels: a coin flip gets I = n/2, U = n + 40/2 - n/2
    cm = [[30, 0], [0, 10]]
    assert abs(chance_miou(cm, [0]) - 100 * 15 / 35) < 1e-9
    assert abs(chance_miou(cm, [1]) - 100 * 5 / 25) < 1e-9
    assert abs(chance_miou(cm, [0, 1]) - 100 * (15 / 35 + 5 / 25) / 2) < 1e-9


def test_randomise_text_embeddings_changes_only_the_given_classes_and_is_seeded():
    from zegclip.engine.evaluate import randomise_text_embeddings
    from zegclip.model.factory import build_model

    model = build_model("mini-voc", random_init=True)
    before = model.class_embeddings.clone()
    randomise_text_embeddings(model, [0, 5], seed=3)
    after = model.class_embeddings
    assert torch.equal(after[1:5], before[1:5]) and torch.equal(after[6:], before[6:])
    assert not torch.allclose(after[0], before[0])
    assert torch.allclose(after[[0, 5]].norm(dim=-1), torch.ones(2))
    again = build_model("mini-voc", random_init=True)
    randomise_text_embeddings(again, [0, 5], seed=3)
    assert torch.equal(again.class_embeddings, after)


def test_attribute_accuracy_separates_colour_from_shape():
    from zegclip.mini.diagnose import attribute_accuracy
    from zegclip.mini.grammar import get_world

    w = get_world("mini-voc")
    names = list(w.classes)
    red_circle, red_square, blue_circle = (names.index(n) for n in ("red circle", "red square", "blue circle"))
    cm = torch.zeros(w.num_classes, w.num_classes, dtype=torch.long)
    cm[red_circle, red_circle] = 50  # right
    cm[red_circle, red_square] = 30  # right colour, wrong shape
    cm[red_circle, blue_circle] = 20  # right shape, wrong colour
    assert attribute_accuracy(w, cm) == {"acc": 50.0, "colour_acc": 80.0, "shape_acc": 70.0}


def test_log_frames_read_the_records_and_are_empty_without_them(tmp_path):
    import json

    from zegclip.mini.calibrate import pretrain_probe_frame
    from zegclip.mini.diagnose import diagnosis_frame

    assert pretrain_probe_frame(tmp_path).empty
    frame, lines = diagnosis_frame(tmp_path)
    assert frame.empty and lines == []
    probe = {"acc": 70.0, "colour_acc": 99.0, "shape_acc": 71.5, "train_acc": 80.0}
    (tmp_path / "mini/diagnosis").mkdir(parents=True)
    (tmp_path / "mini/diagnosis/mini-voc.json").write_text(json.dumps({
        "preset": "mini-voc", "probes": {"features": probe},
        "oracle": {"mIoU": 94.5, "pAcc": 97.0},
        "mini_clip": {"weights": "abc.safetensors", "generator_version": 3},
        "zero_shot": {"mini-voc": {"seen": 99.0, "unseen": 98.0}}}))
    frame, lines = diagnosis_frame(tmp_path)
    assert frame.to_dict("records") == [{"preset": "mini-voc", "features": "features", "class acc": 70.0,
                                         "colour acc": 99.0, "shape acc": 71.5, "train acc": 80.0}]
    assert lines == ["**mini-voc** (mini-CLIP `abc.safetensors`, generator v3): patch oracle mIoU **94.5**, pAcc 97.0;"
                     " zero-shot top-1 mini-voc seen 99.0 / unseen 98.0"]
    (tmp_path / "mini/calibration/pretrain").mkdir(parents=True)
    (tmp_path / "mini/calibration/pretrain/probes.json").write_text(json.dumps({"entries": [{
        "name": "p0", "note": "n", "generator_pattern": 3, "pattern_amp": 0.8, "pretrain_steps": 500,
        "zero_shot": {"mini-voc": {"all": 98.75, "seen": 99.0, "unseen": 98.0}},
        "probe": {"features": probe, "block1": {**probe, "shape_acc": 76.0}}}]}))
    row = pretrain_probe_frame(tmp_path).iloc[0].to_dict()
    assert row == {"probe": "p0", "what changed": "n", "pattern": "v3", "amplitude": 0.8, "steps": 500,
                   "shape acc (features)": 71.5, "shape acc (block 1)": 76.0, "colour acc": 99.0,
                   "zero-shot seen": 99.0, "zero-shot unseen": 98.0}


def test_controls_frame_pass_fail_not_run_and_skips_other_world_versions(tmp_path):
    import json

    from zegclip.experiments.controls import controls_frame
    from zegclip.mini.miniclip import PretrainConfig
    from zegclip.mini.render import GENERATOR_VERSION

    runs = tmp_path / "mini/runs"
    runs.mkdir(parents=True)

    def write(name, params, metrics, generator=GENERATOR_VERSION, **extra):
        m = {k: 0.0 for k in ("pAcc", "mAcc", "mAcc(S)", "mAcc(U)", "mIoU", "mIoU(S)", "mIoU(U)", "hIoU")}
        m.update(metrics)
        (runs / f"{name}.json").write_text(json.dumps({
            "run": name, "params": params, "metrics": m, "per_class": [], "seed": 0,
            "mini_clip": {"key": PretrainConfig().key()},  # measured with the packaged mini-CLIP
            "config": {"data": {"dataset": params["dataset"], "options": {"generator": generator}}}, **extra}))

    for seed, miou in enumerate([90.0, 86.0, 88.0]):
        write(f"f{seed}", {"dataset": "mini-voc", "setting": "fully", "seed": seed}, {"mIoU": miou, "mIoU(S)": 90.0})
    for seed, hiou in enumerate([50.0, 53.0, 56.0]):
        write(f"i{seed}", {"dataset": "mini-voc", "seed": seed}, {"mIoU(S)": 70.0 + seed, "hIoU": hiou})
    # chance of the negative control: the model's unseen-predicted pixels relabelled uniformly among the unseen
    # classes (2 and 3 here): each gets 8 of its 8 ground-truth pixels' worth / 2 = 4 right of 8 predicted -> 1/3
    write("neg", {"dataset": "mini-voc", "negative_control": True}, {"mIoU(U)": 3.0}, unseen=[2, 3],
          confmat=[[10, 0, 0, 0], [0, 10, 0, 0], [0, 0, 6, 2], [0, 0, 4, 4]], **{"chance_mIoU(U)": 3.5})
    write("old", {"dataset": "mini-coco", "setting": "fully"}, {"mIoU": 99.0}, generator=GENERATOR_VERSION - 1)
    frame, problems = controls_frame(tmp_path)
    got = {(r["control"][0], r["dataset"]): (round(r["measured"], 3), r["n"], r["result"])
           for r in frame.to_dict("records")}
    assert got[("1", "mini-voc")] == (88.0, 3, "pass")
    assert got[("2", "mini-voc")] == (round(71.0 / 90.0, 3), 3, "FAIL")
    assert got[("3", "mini-voc")] == (3.0, 3, "FAIL")
    assert got[("4", "mini-voc")] == (3.0, 1, "pass")
    detail = frame.set_index(["control", "dataset"]).loc[("4 negative: mIoU(U), random unseen text", "mini-voc"), "detail"]
    assert detail == "chance 33.3 (random among the unseen; over all classes 3.5)"
    assert got[("5", "mini-voc")][1:] == (0, "not run")
    assert got[("1", "mini-coco")][1:] == (0, "not run")  # the generator-v2 result does not count
    assert problems == ["1 results of another world (generator version or mini-CLIP) skipped"]
    # the stated noise: inductive ZegCLIP per dataset, seeds in order (an alignment-study run is not among them)
    write("i-align", {"dataset": "mini-voc", "seed": 9, "alignment": 0.01}, {"hIoU": 0.0})
    from zegclip.experiments.controls import noise_frame

    noise = noise_frame(tmp_path).set_index("dataset")
    assert noise.loc["mini-voc", "n"] == 3 and noise.loc["mini-voc", "hIoU per seed"] == "50.0 / 53.0 / 56.0"
    assert noise.loc["mini-voc", "hIoU std"] == 3.0 and noise.loc["mini-coco", "n"] == 0


def test_calibration_log_csv_lists_every_run_and_skips_control_tables(tmp_path):
    import csv
    import json

    from zegclip.mini.calibrate import calibration_frame, write_log_csv

    folder = tmp_path / "mini/calibration"
    folder.mkdir(parents=True)
    model = {"config": {"setting": "fully", "encoder": {"mode": "dpt"}}}
    for i, miou in enumerate([27.456, 31.2]):
        (folder / f"c0{i}-x.json").write_text(json.dumps({
            "name": f"c0{i}-x", "note": f"change {i}", "world": {"generator_version": 3},
            "config": {"model": model, "data": {"dataset": "mini-voc"}, "train": {"iters": 1000, "batch_size": 8}},
            "metrics": {"mIoU": miou, "mIoU(S)": 20.0, "pAcc": 40.0}, "mask_logits": {"std": 1.0},
            "seconds": {"train": 100.0 + i, "train_per_iter": 0.1}}))
    (folder / "controls-mini-voc.json").write_text(json.dumps({"preset": "mini-voc", "controls": []}))
    frame, problems = calibration_frame(tmp_path)
    assert list(frame["run"]) == ["c00-x", "c01-x"] and problems == []
    rows = list(csv.DictReader(write_log_csv(tmp_path).open()))
    assert [(r["run"], r["what changed"], r["mIoU"], r["train seconds"]) for r in rows] == [
        ("c00-x", "change 0", "27.46", "100.0"), ("c01-x", "change 1", "31.2", "101.0")]


def test_diagnose_on_tiny_settings_reports_probes_floor_and_oracle():
    from zegclip.mini.diagnose import diagnose, diagnosis_frame

    record = diagnose("mini-voc", probes=("pixels", "features"), train_scenes=12, test_scenes=6, random_clip=True)
    assert set(record["probes"]) == {"pixels", "features"} and set(record["floor"]) == {"block1", "features"}
    assert record["oracle"]["scenes"] == 6 and 0 < record["oracle"]["mIoU"] <= 100
    for probe in (*record["probes"].values(), *record["floor"].values()):
        assert probe["train_patches"] > 0 and 0 <= probe["shape_acc"] <= 100 and 0 <= probe["colour_acc"] <= 100
    # a random-init model and its floor are the same architecture with the same seed: identical features
    assert record["probes"]["features"] == record["floor"]["features"]
    assert record["mini_clip"]["generator_version"] == 3 and record["environment"]["versions"]["torch"]


def test_query_scale_shows_why_t_times_g_starts_with_classes_alike():
    """t and g are unit vectors: t's descriptor has norm 1 exactly, t*g's about 1/sqrt(d) (d = 128 here), so t*g's
    queries start nearly equal across classes; adding the shared g (t+g) leaves the spread across classes as t's."""
    from zegclip.mini.diagnose import query_scale

    scale = query_scale("mini-voc", formats=("t", "t*g", "t+g"), scenes=2, random_clip=True)
    assert set(scale) == {"t", "t*g", "t+g"} and set(scale["t"]) == {"descriptor norm", "query norm", "class spread"}
    assert scale["t"]["descriptor norm"] == pytest.approx(1.0, abs=1e-4)
    assert scale["t*g"]["descriptor norm"] < 0.25 < 1.0 < scale["t+g"]["descriptor norm"]
    assert scale["t*g"]["class spread"] < scale["t"]["class spread"] / 5
    assert scale["t+g"]["class spread"] == pytest.approx(scale["t"]["class spread"], abs=1e-3)
