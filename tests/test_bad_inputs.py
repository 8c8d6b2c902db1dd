"""Bad inputs and faults, as a new user meets them (issue 11): each case checks the exit status, that no traceback
reaches the user, a fragment of the one-line message, and that nothing was half-written."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_overrides
from test_run import make_voc_root

from zegclip.cli import main


def run_main(capsys, *args: str) -> tuple[int, str]:
    """``python -m zegclip ARGS`` in process: (exit status, stderr). argparse errors exit through SystemExit."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def tiny_run(tmp_path):
    """A tiny VOC-layout run file (random-init tiny CLIP, 2 iterations, checkpoint every iteration)."""
    make_voc_root(tmp_path / "data", size=64)
    run = {
        "name": "tiny",
        "model": {"preset": "voc", **tiny_overrides()},
        "data": {"dataset": "voc", "root": str(tmp_path / "data" / "VOCdevkit"), "crop_size": 64, "scale": [256, 64],
                 "test_short_side": 64, "options": {"aug": False}},
        "train": {"iters": 2, "batch_size": 2, "num_workers": 0, "warmup_iters": 1, "log_every": 1,
                  "checkpoint_every": 1, "progress": False},
        "random_init": True,
        "eval_limit": 2,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


# ------------------------------------------------------------------------------ typed configuration, CLI numbers
CONFIG_CASES = [
    ("train.lr=abc", "train.lr: 'abc' is not a finite number"),
    ("train.lr=.inf", "train.lr: inf is not a finite number"),
    ("train.lr=-1", "lr must be > 0, got -1.0"),
    ("train.iters=abc", "train.iters: 'abc' is not an integer"),
    ("train.iters=2.5", "train.iters: 2.5 is not an integer"),
    ("train.iters=0", "iters, batch_size and accumulation must be >= 1, got 0"),
    ("train.batch_size=-4", "must be >= 1, got 2, -4"),
    ("train.warmup_iters=-1", "warmup_iters must be >= 0, got -1"),
    ("train.progress=maybe", "train.progress: 'maybe' is not true or false"),
    ("train.amp=fast", "amp must be 'auto', 'bf16' or 'off', got 'fast'"),
    ("train.lr_mult={decoder: x}", "train.lr_mult.decoder: 'x' is not a finite number"),
    ("data.scale=[1, 2, 3]", "data.scale: [1, 2, 3] is not a list of 2 items"),
    ("data.ratio_range=[2, 1]", "ratio_range must be [low, high] with 0 < low <= high"),
    ("data.crop_size=0", "crop_size, scale and test_short_side must be >= 1"),
    ("eval_limit=0", "eval_limit must be >= 1 or null, got 0"),
    ("random_init=yes please", "random_init: 'yes please' is not true or false"),
    ("model.encoder.num_prompts=2.5", "encoder.num_prompts: 2.5 is not an integer"),
    ("model.setting=foo", "setting must be one of ('inductive', 'transductive', 'fully'), got 'foo'"),
    ("model.seen_calibration=x", "seen_calibration: 'x' is not a finite number"),
    ("train.iterz=3", "unknown field(s) ['iterz']"),
]


@pytest.mark.parametrize("override,message", CONFIG_CASES)
def test_bad_config_values_fail_before_anything_is_written(override, message, tiny_run, tmp_path, capsys):
    code, err = run_main(capsys, "train", "--config", str(tiny_run), "--set", override)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # not even config.json


def test_numbers_as_people_write_them(tiny_run, tmp_path):
    from zegclip.engine.run import load_run

    data = yaml.safe_load(tiny_run.read_text())
    data["train"].update(lr="1e-3", weight_decay=0, iters=1e1)  # what PyYAML makes of `lr: 1e-3` and `iters: 1e1`
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(data))
    run = load_run(path, ["train.warmup_iters=1e0"])
    assert (run.train.lr, run.train.weight_decay, run.train.iters, run.train.warmup_iters) == (1e-3, 0.0, 10, 1)
    assert isinstance(run.train.iters, int) and isinstance(run.train.lr, float)


@pytest.mark.parametrize("args,message", [
    (("mini", "pretrain", "--steps", "0"), "argument --steps: 0 is below the minimum 1"),
    (("mini", "controls", "--seeds", "0"), "argument --seeds: 0 is below the minimum 1"),
    (("mini", "controls", "--jobs", "-1"), "argument --jobs: -1 is below the minimum 1"),
    (("reproduce", "--jobs", "two"), "argument --jobs: 'two' is not an integer"),
    (("demo", "--size", "0"), "argument --size: 0 is below the minimum 16"),
    (("bench", "--repeats", "0"), "argument --repeats: 0 is below the minimum 1"),
    (("prepare", "voc", "/nope", "--workers", "-2"), "argument --workers: -2 is below the minimum 0"),
])
def test_cli_numbers_are_checked_not_replaced(args, message, capsys):
    code, err = run_main(capsys, *args)
    assert code == 2 and message in err


def test_pretrain_config_rejects_zero_steps():
    from zegclip.mini.miniclip import PretrainConfig

    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        PretrainConfig(steps=0)


def test_registry_parameters_are_typed():
    from zegclip.experiments.registry import RUN_DEFAULTS, RUN_TYPES, normalise_params

    assert set(RUN_TYPES) == set(RUN_DEFAULTS)
    assert normalise_params({"seed": "2", "iters": 1e2})["iters"] == 100
    with pytest.raises(ValueError, match="run parameter seed: 'abc' is not an integer"):
        normalise_params({"seed": "abc"})
    with pytest.raises(ValueError, match="run parameter iters: 0 is below the minimum 1"):
        normalise_params({"iters": 0})
    with pytest.raises(ValueError, match="run parameter negative_control: 'no' is not true or false"):
        normalise_params({"negative_control": "no"})


# ------------------------------------------------------------------------------------------- resume, lock
def test_resume_refuses_a_changed_config_and_records_safe_changes(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, "train", "--config", str(tiny_run))[0] == 0
    saved = (out / "config.json").read_text()
    code, err = run_main(capsys, "train", "--config", str(tiny_run), "--resume", "--set", "train.lr=0.5",
                         "--set", "train.seed=7")
    assert code == 2 and "train.lr: 0.0002 -> 0.5; train.seed: 0 -> 7" in err
    assert (out / "config.json").read_text() == saved  # never rewritten to claim what did not happen
    assert run_main(capsys, "train", "--config", str(tiny_run), "--resume", "--set", "train.iters=3")[0] == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["summary"]["resumed_from"] == 2 and summary["resume_changes"] == {"train.iters": [2, 3]}
    history = [json.loads(line) for line in (out / "resumes.jsonl").read_text().splitlines()]
    assert history[-1]["changed"] == {"train.iters": {"from": 2, "to": 3}}
    iters = [json.loads(line)["iter"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert iters == [1, 2, 3]  # no repeated iterations


def test_broken_latest_pointer_falls_back_and_stale_temps_are_removed(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, "train", "--config", str(tiny_run))[0] == 0
    ckpts = out / "checkpoints"
    (ckpts / "latest").write_text("iter_0000999\n")  # points at nothing
    stale = ckpts / ".iter_0000003.12345.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    with pytest.warns(UserWarning, match="using the newest complete checkpoint iter_0000002"):
        assert run_main(capsys, "train", "--config", str(tiny_run), "--resume", "--set", "train.iters=3")[0] == 0
    assert json.loads((out / "train_summary.json").read_text())["summary"]["resumed_from"] == 2
    assert not stale.exists()


def test_second_trainer_on_one_directory_fails_and_a_dead_lock_is_taken_over(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        code, err = run_main(capsys, "train", "--config", str(tiny_run))
        assert code == 2 and f"is in use by another trainer (pid {sleeper.pid}" in err
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.warns(UserWarning, match="taking over the lock of a process that is gone"):
        assert run_main(capsys, "train", "--config", str(tiny_run))[0] == 0
    assert not (out / ".lock").exists()


# ----------------------------------------------------------------------------------------- finite or fail
def test_diverging_training_stops_without_a_result(tiny_run, tmp_path, capsys):
    code, err = run_main(capsys, "train", "--config", str(tiny_run), "--eval", "--set", "train.lr=1.0e+30",
                         "--set", "train.iters=6")
    assert code == 2 and "training diverged" in err
    assert not (tmp_path / "run" / "result.json").exists()


def test_non_finite_text_embeddings_are_rejected(tiny_run, tmp_path, capsys):
    emb = np.random.default_rng(0).standard_normal((20, 32)).astype(np.float16)
    emb[3, 5] = np.nan
    np.save(tmp_path / "emb.npy", emb)
    code, err = run_main(capsys, "train", "--config", str(tiny_run), "--set", f"text_embeddings={tmp_path / 'emb.npy'}")
    assert code == 2 and "emb.npy has 1 NaN or infinite value(s)" in err
    from zegclip.model.factory import build_model

    tensor = torch.randn(20, 32)
    tensor[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"text embeddings of class\(es\) \['aeroplane'\] have NaN or infinite"):
        build_model("voc", random_init=True, text_embeddings=tensor, **tiny_overrides())


def test_non_finite_weights_are_rejected(tmp_path):
    from safetensors.torch import save_file

    from zegclip.engine.checkpoint import load_weights

    model = torch.nn.Linear(2, 2)
    save_file({"weight": torch.full((2, 2), float("nan")), "bias": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="weight weight has NaN or infinite values"):
        load_weights(model, tmp_path / "w.safetensors")


def test_json_outputs_are_strict(tmp_path):
    from zegclip.io import write_json_atomic

    with pytest.warns(UserWarning, match=r"non-finite value\(s\) written as null: metrics.hIoU"):
        bad = write_json_atomic(tmp_path / "r.json", {"metrics": {"hIoU": float("nan"), "pAcc": 1.5},
                                                       "per_class": [{"IoU": float("inf")}]})
    assert bad == ["metrics.hIoU", "per_class[0].IoU"]
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"metrics": {"hIoU": None, "pAcc": 1.5}, "per_class": [{"IoU": None}]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # expected nulls are not reported
        write_json_atomic(tmp_path / "q.json", {"per_class": [{"IoU": float("nan")}]}, expected=("per_class",))


# --------------------------------------------------------------------------------- one validity rule
def _result(**metrics):
    base = {"pAcc": 50.0, "mIoU": 40.0, "mAcc": 45.0, "mIoU(S)": 42.0, "mIoU(U)": 30.0, "hIoU": 35.0,
            "mAcc(S)": 44.0, "mAcc(U)": 33.0}
    return {"run": "r", "seed": 0, "metrics": {**base, **metrics},
            "per_class": [{"class": "a", "split": "seen", "IoU": 1.0}, {"class": "b", "split": "unseen", "IoU": 2.0}]}


@pytest.mark.parametrize("result,problem", [
    (_result(), None),
    ({**_result(), "metrics": {}}, "`metrics` lacks pAcc"),
    (_result(hIoU=None), "non-finite or non-numeric hIoU=None"),
    (_result(hIoU=float("nan")), "non-finite or non-numeric hIoU=nan"),
    (_result(mIoU="41"), "non-finite or non-numeric mIoU='41'"),
    ({**_result(**{"mIoU(U)": None, "hIoU": None, "mAcc(U)": None}),
      "per_class": [{"class": "a", "split": "seen", "IoU": 1.0}]}, None),  # cross-dataset: no unseen classes
])
def test_one_validity_rule_for_reproduce_and_reports(result, problem, tmp_path):
    from zegclip.experiments.report import load_results
    from zegclip.engine.results import result_problem

    why = result_problem(result, "runs", "r")
    assert (why is None) if problem is None else (problem in why)
    folder = tmp_path / "mini" / "runs"
    folder.mkdir(parents=True)
    (folder / "r.json").write_text(json.dumps(result))
    loaded, problems = load_results(tmp_path, "mini")
    assert len(loaded) == (1 if problem is None else 0) and len(problems) == (0 if problem is None else 1)


def test_reproduce_reruns_an_invalid_result(tmp_path):
    from zegclip.experiments.registry import expand
    from zegclip.experiments.runs import is_done

    entry = expand("mini", only=["table5"])[0]
    path = entry.result_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**_result(), "run": entry.id, "metrics": {}}))
    assert not is_done(entry, tmp_path)


# ---------------------------------------------------------------------------------------------- file modes
def test_outputs_follow_the_umask(tiny_run, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert run_main(capsys, "train", "--config", str(tiny_run))[0] == 0
    finally:
        os.umask(old)
    out = tmp_path / "run"
    assert (out / "config.json").stat().st_mode & 0o777 == 0o644
    ckpt = out / "checkpoints" / "iter_0000002"
    assert ckpt.stat().st_mode & 0o777 == 0o755
    assert (ckpt / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert (out / "checkpoints" / "latest").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------- predict, OS errors
def test_predict_skips_an_unreadable_image_and_still_writes_the_legend(tiny_run, tmp_path, capsys):
    assert run_main(capsys, "train", "--config", str(tiny_run))[0] == 0
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(images / "a.png")
    (images / "b.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.full((30, 30, 3), 200, np.uint8)).save(images / "c.png")
    code, err = run_main(capsys, "predict", str(images), "--run", str(tmp_path / "run"), "--out", str(tmp_path / "p"))
    assert code == 1
    assert f"skipped: cannot read image {images / 'b.jpg'}" in err and "1 of 3 image(s) failed" in err
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "a_labels.png", "a_mask.png", "c_labels.png", "c_mask.png", "legend.png"]


def test_predict_resizes_with_the_runs_test_pipeline(tiny_run, tmp_path, monkeypatch):
    from zegclip.engine import predict

    seen = []
    monkeypatch.setattr(predict, "load_image", lambda path: torch.zeros(3, 100, 200, dtype=torch.uint8))

    class Model(torch.nn.Module):
        num_classes, class_names = 2, ["a", "b"]

        def normalize(self, x):
            return x

        def scores(self, x):
            seen.append(tuple(x.shape[-2:]))
            return torch.zeros(1, 2, *x.shape[-2:])

    (tmp_path / "x.png").write_bytes(b"")
    records, failed = predict.predict_files(Model(), tmp_path / "x.png", tmp_path / "out", short_side=64)
    assert seen == [(64, 128)] and not failed and len(records) == 1


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_unwritable_output_fails_before_computing(command, tiny_run, tmp_path, capsys):
    assert run_main(capsys, "train", "--config", str(tiny_run))[0] == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    if command == "evaluate":
        args = ("evaluate", "--config", str(tmp_path / "run" / "config.json"), "--output", str(blocker / "r.json"))
    else:
        images = tmp_path / "data" / "VOCdevkit" / "VOC2012" / "JPEGImages"
        args = ("predict", str(images), "--run", str(tmp_path / "run"), "--out", str(blocker / "p"))
    code, err = run_main(capsys, *args)
    assert code == 2 and f"cannot write to {blocker}" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------- reproduce writes only where it is told
def test_reproduce_finds_its_project_from_the_working_directory(tmp_path, monkeypatch, capsys):
    from zegclip.experiments import batch, project

    repo = project.project_root()
    monkeypatch.chdir(tmp_path)  # e.g. an installed zegclip used outside any checkout
    monkeypatch.delenv("ZEGCLIP_PROJECT", raising=False)
    with pytest.raises(FileNotFoundError, match=f"not inside a zegclip project: no notebooks/registry.yaml in {tmp_path}"):
        project.project_root()
    code, err = run_main(capsys, "reproduce", "--list")
    assert code == 2 and "not inside a zegclip project" in err
    monkeypatch.setenv("ZEGCLIP_PROJECT", str(repo))
    assert project.notebooks_dir() == repo / "notebooks" and project.generated_dir() == repo / "book" / "generated"
    written = []
    monkeypatch.setattr(batch, "execute_notebook", lambda source, output, params, cwd=None: written.append(output))
    batch.reproduce("mini", only=["table5"], reports_only=True, results_dir=tmp_path / "results",
                    generated=tmp_path / "book-out")
    assert written == [tmp_path / "book-out" / "table5.ipynb"]
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("notebook ")]
    assert len(line) == 1 and line[0].split()[1] == "table5" and line[0].endswith("s  ok")  # one line per notebook
    # besides the (mocked) notebook: the run pages, the claims and the summary, nothing else and nowhere else
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "book-out/claims.md", "book-out/runs.md", "book-out/runs/none.md", "book-out/summary.md",
        "results/mini/reproduce.json"]


def test_non_finite_images_are_rejected():
    from zegclip.model.factory import build_model

    model = build_model("voc", random_init=True, **tiny_overrides())
    images = torch.zeros(2, 3, 64, 64)
    images[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"images \[1\] of the batch have NaN or infinite values"):
        model.scores(images)


# ------------------------------------------------------------------------------------ rough edges (issue 29)
@pytest.mark.parametrize("names,message", [
    (["red circle", None], "class name at position 1 is NoneType None, not a string"),
    (["red circle", 3], "class name at position 1 is int 3, not a string"),
    (["red circle", "  "], "class name at position 1 is empty"),
    (["red circle", "blue star", "red circle "], "duplicate class name 'red circle' at positions 0 and 2"),
    ("red circle", "class names must be a list of strings, not one string"),
    ([], "the class-name list is empty"),
])
def test_class_names_are_checked(names, message):
    from zegclip.model.factory import build_model

    model = build_model("voc", random_init=True, **tiny_overrides())
    with pytest.raises(ValueError) as err:
        model.set_classes(names)
    assert str(err.value) == message and "\n" not in str(err.value)


@pytest.mark.parametrize("shape,message", [
    ((1, 3, 0, 64), "images must be at least one patch (16 x 16 pixels) high and wide; got 0 x 64 in (1, 3, 0, 64)"),
    ((1, 3, 64, 15), "images must be at least one patch (16 x 16 pixels) high and wide; got 64 x 15 in (1, 3, 64, 15)"),
])
def test_images_smaller_than_a_patch_are_rejected(shape, message):
    from zegclip.model.factory import build_model

    model = build_model("voc", random_init=True, **tiny_overrides())
    for call in (model, model.scores):
        with pytest.raises(ValueError) as err:
            call(torch.zeros(shape))
        assert str(err.value) == message


@pytest.mark.parametrize("only,message", [
    (",", "--only ',' selects nothing; name tables/figures (calibration, table2, table3, table4, table5, table6, "
          "table7, figure1, figure4, figure5, alignment) or run ids (`reproduce --list` shows them)"),
    ("nosuchtable", "unknown table/figure or run id ['nosuchtable']; known tables/figures: calibration, table2, "
                    "table3, table4, table5, table6, table7, figure1, figure4, figure5, alignment; run ids of profile "
                    "'mini': "
                    "mini-voc-fix-inductive-s0, "),
])
def test_an_empty_or_unknown_selection_is_an_error(only, message, capsys):
    code, err = run_main(capsys, "reproduce", "--only", only, "--list")
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_results_resolve_against_the_project_from_any_subfolder(monkeypatch, capsys):
    from zegclip.experiments import project

    repo = project.project_root()
    monkeypatch.delenv("ZEGCLIP_PROJECT", raising=False)
    listings = []
    for where in (repo, repo / "notebooks", repo / "book"):
        monkeypatch.chdir(where)
        assert project.results_dir().resolve() == repo / "results"
        assert project.results_dir("elsewhere") == project.Path("elsewhere")
        capsys.readouterr()
        assert main(["reproduce", "--list", "--only", "table6"]) == 0
        listings.append(capsys.readouterr().out)
    assert listings[0] == listings[1] == listings[2] and len(listings[0].splitlines()) == 12
    monkeypatch.chdir(repo.parent)  # outside the checkout (found through $ZEGCLIP_PROJECT): the absolute folder
    monkeypatch.setenv("ZEGCLIP_PROJECT", str(repo))
    assert project.results_dir() == repo / "results"
