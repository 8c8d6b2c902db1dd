"""The experiment registry, run ids, skip/resume logic and papermill batch execution (reproduce)."""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import yaml

from zegclip.experiments.batch import _ipc_kernel_manager, execute_notebook, reproduce
from zegclip.experiments.controls import controls_entries
from zegclip.experiments.project import notebooks_dir, project_root
from zegclip.experiments.registry import (RUN_DEFAULTS, Entry, expand, load_registry, normalise_params,
                                          notebook_parameters, run_id, runs_for)
from zegclip.experiments.runs import eval_spec, is_done, run_spec
from zegclip.mini.render import GENERATOR_VERSION


def test_registry_expands_every_table_of_both_profiles():
    mini = expand("mini")
    ids = [e.id for e in mini]
    assert len(ids) == len(set(ids)) == 184
    assert [(e.id, e.notebook) for e in runs_for("mini", "table5")] == [(e.id, e.notebook) for e in mini
                                                                         if "table5" in e.tables]
    assert [(e.id, e.notebook) for e in runs_for("mini", "table3")] == [("bench-cpu", "bench")]
    # Table 5's two halves: 12 variants x 5 seeds on mini-voc (VOC), x 3 seeds on mini-coco (COCO-Stuff)
    table5 = runs_for("mini", "table5")
    assert len(table5) == 96 and {e.params["seed"] for e in table5} == {0, 1, 2, 3, 4}
    assert {d: sum(e.params["dataset"] == d for e in table5) for d in ("mini-voc", "mini-coco")} == \
        {"mini-voc": 60, "mini-coco": 36}
    assert {e.params["seed"] for e in table5 if e.params["dataset"] == "mini-coco"} == {0, 1, 2}
    # every other table whose claims compare rows: 3 seeds per row
    for table in ("table2", "table4", "table6", "table7"):
        assert {e.params["seed"] for e in runs_for("mini", table)} == {0, 1, 2}, table
    assert {e.params.get("dataset", "mini-voc") for e in runs_for("mini", "figure1")} == {"mini-voc"}
    assert len(runs_for("paper", "table5")) == 24
    # the alignment study: 4 mini-CLIPs x (ZegCLIP, Baseline-Fix) x 3 seeds + 4 positive controls; its packaged
    # point (alignment 0.001 -> None) is Table 5's and the controls' runs
    study = runs_for("mini", "alignment")
    assert len(study) == 28 and sum(e.params["alignment"] is None for e in study) == 7
    assert {e.params["alignment"] for e in study} == {None, 0.0, 0.003, 0.01} and not runs_for("paper", "alignment")
    assert {e.params["dataset"] for e in runs_for("paper", "table5")} == {"voc", "coco"}
    assert len(runs_for("mini", "table4")) == 36
    # ZegCLIP seed 0 is shared by Tables 2, 4, 5, 6 and Figures 1, 4, 5 and keeps the largest sample count
    zeg = next(e for e in mini if e.id == "mini-voc-dpt-nel-rd-inductive-s0")
    assert set(zeg.tables) == {"table5", "figure1", "table4", "table6", "table2", "figure5", "figure4", "calibration",
                              "alignment"}
    assert zeg.params["samples"] == 8
    assert zeg.result_path("results") == Path("results/mini/runs/mini-voc-dpt-nel-rd-inductive-s0.json")
    paper = expand("paper")
    assert {e.params["dataset"] for e in paper if e.notebook == "run"} == {"voc", "coco", "context"}
    assert {e.id for e in runs_for("paper", "table7")} == {
        "coco-dpt-nel-rd-inductive-to-voc-s0", "coco-dpt-nel-rd-transductive-to-voc-s0",
        "coco-dpt-nel-rd-inductive-to-context-s0", "coco-dpt-nel-rd-transductive-to-context-s0"}


@pytest.mark.parametrize("params, variant, fmt, loss, ident", [
    ({"variant": "DPT+NEL+RD", "query_format": "t"}, "DPT+NEL", None, None, "mini-voc-dpt-nel-inductive-s0"),
    ({"variant": "DPT", "query_format": "[t⊙g, t]"}, "DPT+RD", None, None, "mini-voc-dpt-rd-inductive-s0"),
    ({"variant": "FT+NEL", "loss": "el"}, "FT", None, None, "mini-voc-ft-inductive-s0"),
    ({"variant": "Fix", "loss": "plus"}, "Fix+NEL", None, None, "mini-voc-fix-nel-inductive-s0"),
    ({"variant": "DPT+NEL+RD", "query_format": "|t-g|", "seed": 2}, "DPT+NEL+RD", "|t-g|", None,
     "mini-voc-dpt-nel-rd-inductive-qatmga-s2"),
    ({"variant": "DPT+NEL+RD", "loss": "plain", "dataset": "mini-coco"}, "DPT+NEL+RD", None, "plain",
     "mini-coco-dpt-nel-rd-inductive-plain-s0"),
])
def test_equal_runs_get_equal_canonical_ids(params, variant, fmt, loss, ident):
    p = normalise_params(params)
    assert (p["variant"], p["query_format"], p["loss"]) == (variant, fmt, loss)
    assert run_id(p) == ident


@pytest.mark.parametrize("params, message", [
    ({"variant": "XL"}, "unknown variant"),
    ({"setting": "semi"}, "unknown setting"),
    ({"loss": "hinge"}, "unknown loss"),
    ({"query_format": "t/g"}, "unknown query format"),
    ({"lr": 1.0}, "unknown run parameter"),
    ({"self_training": "some"}, "unknown self_training"),
    ({"self_training": "all"}, "needs setting=transductive"),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        normalise_params(params)


def _registry(tmp_path: Path, groups: list, profile: str = "mini") -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "profiles": {profile: {"defaults": {}}}, "groups": {profile: groups}}))
    return path


def test_registry_errors_name_the_problem(tmp_path):
    bad_param = _registry(tmp_path, [{"tables": ["table5"], "matrix": {"varaint": ["Fix"]}}])
    with pytest.raises(ValueError, match=r"groups.mini\[0\]: unknown parameter\(s\) \['varaint'\]"):
        load_registry(bad_param)
    bad_table = _registry(tmp_path, [{"tables": ["table9"], "matrix": {"seed": [0]}}])
    with pytest.raises(ValueError, match="table9"):
        load_registry(bad_table)
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        expand("gpu")
    with pytest.raises(ValueError, match="unknown table/figure"):
        expand("mini", only=["table8"])
    # a run id selects that run alone (`reproduce --only <run id> --force` reruns one run)
    assert [e.id for e in expand("mini", only=["mini-voc-fix-inductive-s0"])] == ["mini-voc-fix-inductive-s0"]
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        load_registry(tmp_path / "nowhere.yaml")


def test_run_notebook_parameters_match_the_package():
    params = notebook_parameters(notebooks_dir() / "run.ipynb")
    assert params == {**RUN_DEFAULTS, "results_dir": "results", "run_id": None, "force": False}


def test_self_training_variant_names_the_run_and_the_train_config():
    dagger = normalise_params({"setting": "transductive", "self_training": "dagger"})
    assert dagger["self_training"] is None and run_id(dagger) == "mini-voc-dpt-nel-rd-transductive-s0"
    every = {"setting": "transductive", "self_training": "all"}
    assert run_id(every) == "mini-voc-dpt-nel-rd-transductive-st-all-s0"
    spec = run_spec(every, "runs")
    assert spec["train"]["self_training"] == "all"
    assert spec["train"]["init_from"].startswith("runs/mini/mini-voc-dpt-nel-rd-inductive-s0/")


def test_transductive_run_starts_from_the_inductive_half_way_checkpoint():
    spec = run_spec({"setting": "transductive", "seed": 1}, "runs")
    inductive = run_spec({"setting": "inductive", "seed": 1}, "runs")
    half = inductive["train"]["iters"] // 2
    assert spec["train"]["init_from"] == f"runs/mini/mini-voc-dpt-nel-rd-inductive-s1/checkpoints/iter_{half:07d}"
    assert spec["train"]["iters"] == inductive["train"]["iters"] - half
    assert spec["train"]["self_training"] == "dagger"
    assert inductive["train"]["checkpoint_every"] == half


def test_cross_dataset_evaluation_counts_every_target_class_as_seen():
    params = {"dataset": "mini-coco", "eval_dataset": "mini-voc-b"}
    train = run_spec(params, "runs")
    ev = eval_spec(params, train)
    assert train["model"]["preset"] == "mini-coco" and train["data"]["dataset"] == "mini-coco"
    assert ev["model"]["preset"] == "mini-voc" and ev["data"]["dataset"] == "mini-voc-b"
    assert ev["model"]["unseen"] == [] and ev["model"]["encoder"]["num_prompts"] == 20


@pytest.mark.slow
def test_quick_batch_runs_skips_finished_work_and_records_failures(tmp_path, monkeypatch):
    """Two quick runs through papermill; a rerun does nothing; a failing run keeps its executed notebook."""
    monkeypatch.setenv("ZEGCLIP_PROJECT", str(project_root()))  # the notebooks of this checkout
    monkeypatch.chdir(tmp_path)
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({
        "version": 1,
        "profiles": {"mini": {"defaults": {"dataset": "mini-voc"}}, "paper": {"defaults": {"dataset": "voc"}}},
        "groups": {
            "mini": [{"tables": ["table5"], "matrix": {"variant": ["Fix"], "seed": [0]}, "params": {"samples": 1}}],
            "paper": [{"tables": ["table5"], "matrix": {"variant": ["Fix"]}, "params": {"data_root": str(tmp_path / "none")}}],
        }}))
    results = Path("results")
    summary = reproduce("mini", results_dir=results, quick=True, runs_only=True, registry=registry)
    assert summary["ran"] == ["mini-voc-fix-inductive-s0-quick"] and not summary["failed"]
    result = json.loads((results / "mini/runs/mini-voc-fix-inductive-s0-quick.json").read_text())
    assert result["params"]["variant"] == "Fix" and result["params"]["quick"] is True
    assert set(result["metrics"]) >= {"pAcc", "mIoU(S)", "mIoU(U)", "hIoU"}
    assert result["unseen"] == [0, 5, 10, 15, 16] and len(result["class_names"]) == 20
    assert result["environment"]["versions"]["torch"] and result["seed"] == 0
    # what the run page and the runs index show: the training curve, its time, the machine and the date
    training = result["training"]
    assert training["iterations"] == result["config"]["train"]["iters"] and training["seconds"] > 0
    assert training["log"][-1]["iter"] == training["iterations"] and {"loss", "lr"} <= set(training["log"][-1])
    assert result["wall_seconds"] >= training["seconds"] and result["environment"]["cpu_count"] >= 1
    assert datetime.datetime.fromisoformat(result["finished"]).tzinfo is not None
    sample = result["samples"][0]
    assert all((results / "mini" / sample[k]).is_file() for k in ("image", "label", "pred"))
    again = reproduce("mini", results_dir=results, quick=True, runs_only=True, registry=registry)
    assert again["ran"] == [] and again["skipped"] == ["mini-voc-fix-inductive-s0-quick"]
    # a result measured in another version of the mini world is redone, never reused
    path = results / "mini/runs/mini-voc-fix-inductive-s0-quick.json"
    assert result["config"]["data"]["options"]["generator"] == GENERATOR_VERSION
    stale = {**result, "config": {**result["config"], "data": {**result["config"]["data"], "options": {
        **result["config"]["data"]["options"], "generator": GENERATOR_VERSION - 1}}}}
    path.write_text(json.dumps(stale))
    assert not is_done(Entry("mini-voc-fix-inductive-s0-quick", "run", {**expand("mini", registry=registry)[0].params, "quick": True}), results)
    # a corrupt result is redone, never trusted
    (results / "mini/runs/mini-voc-fix-inductive-s0-quick.json").write_text("{not json")
    assert not is_done(Entry("mini-voc-fix-inductive-s0-quick", "run", {**expand("mini", registry=registry)[0].params, "quick": True}), results)

    failed = reproduce("paper", results_dir=results, runs_only=True, registry=registry)
    assert list(failed["failed"]) == ["voc-fix-inductive-s0"]
    assert "none" in failed["failed"]["voc-fix-inductive-s0"]  # the one-line error names the missing folder
    assert (results / "paper/failed/voc-fix-inductive-s0.ipynb").is_file()
    assert json.loads((results / "paper/reproduce.json").read_text())["failed"]


def test_cli_lists_runs_and_rejects_unknown_profiles(capsys):
    from zegclip.cli import main

    assert main(["reproduce", "--profile", "mini", "--only", "table7", "--list", "--results-dir", "/nonexistent"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"todo  mini-coco-dpt-nel-rd-{setting}-to-mini-voc-b-s{seed}  (no result)"
                   for setting in ("inductive", "transductive") for seed in (0, 1, 2)]
    assert main(["reproduce", "--profile", "laptop"]) == 2
    assert "unknown profile 'laptop'" in capsys.readouterr().err


def test_only_keeps_the_parameters_a_run_has_for_every_table():
    """--only table2 must not drop the samples that Figure 4 asks of the same run (it would redo it)."""
    full = {e.id: e.params for e in expand("mini")}
    for e in expand("mini", only=["table2"]):
        assert e.params == full[e.id]
    assert next(e for e in expand("mini", only=["table2"])
                if e.id == "mini-voc-dpt-nel-rd-inductive-s0").params["samples"] == 8


def test_controls_entries_cover_fully_inductive_and_negative_control_per_seed():
    entries = controls_entries("mini-coco", seeds=2)
    got = sorted((e.params["setting"], e.params["negative_control"], e.params["seed"]) for e in entries)
    assert got == [("fully", False, 0), ("fully", False, 1), ("inductive", False, 0), ("inductive", False, 1),
                   ("inductive", True, 0), ("inductive", True, 1)]
    assert "mini-coco-dpt-nel-rd-inductive-random-unseen-text-s1" in {e.id for e in entries}
    assert len(controls_entries("mini-voc", seeds=4)) == 12  # more seeds than the registry lists
    with pytest.raises(ValueError, match="--preset 'voc'"):
        controls_entries("voc")
    with pytest.raises(ValueError, match="--seeds must be at least 1, got 0"):
        controls_entries("mini-voc", seeds=0)


@pytest.mark.slow
def test_mini_controls_command_quick(tmp_path, monkeypatch, capsys):
    """`mini controls --quick`: three tiny runs through papermill, the table printed and written; a rerun skips."""
    from zegclip.cli import main

    monkeypatch.setenv("ZEGCLIP_PROJECT", str(project_root()))  # the notebooks of this checkout
    monkeypatch.chdir(tmp_path)  # results under tmp_path/results (given: the default is the project's results/)
    assert main(["mini", "controls", "--preset", "mini-voc", "--seeds", "1", "--quick", "--results", "results"]) == 0
    out = capsys.readouterr().out
    assert "controls of mini-voc (1 seed(s); " in out and "5 CLIP: zero-shot top-1" in out
    record = json.loads(Path("results/mini/calibration/controls-mini-voc-quick.json").read_text())
    assert sorted(record["runs"]) == ["mini-voc-dpt-nel-rd-fully-s0-quick",
                                      "mini-voc-dpt-nel-rd-inductive-random-unseen-text-s0-quick",
                                      "mini-voc-dpt-nel-rd-inductive-s0-quick"]
    assert sorted(record["ran"]) == sorted(record["runs"]) and record["failed"] == {} and record["total"] == 5
    states = {c["control"][0]: (c["n"], c["result"]) for c in record["controls"]}
    assert states["1"][0] == 1 and states["1"][1] in ("pass", "FAIL")
    assert states["3"] == (1, "not run")  # one seed has no spread
    assert states["4"][0] == 1 and states["5"] == (0, "not run")  # quick: random mini-CLIP, no zero-shot control
    neg = json.loads(Path("results/mini/runs/mini-voc-dpt-nel-rd-inductive-random-unseen-text-s0-quick.json").read_text())
    assert 0 < neg["chance_mIoU(U)"] < 100 and neg["params"]["negative_control"] is True
    assert record["environment"]["versions"]["torch"] and record["oracle"]["scenes"] == 4
    assert main(["mini", "controls", "--preset", "mini-voc", "--seeds", "1", "--quick", "--results", "results"]) == 0
    again = json.loads(Path("results/mini/calibration/controls-mini-voc-quick.json").read_text())
    assert again["ran"] == [] and again["controls"] == record["controls"]
    assert main(["mini", "controls", "--preset", "voc", "--quick"]) == 2
    assert "--preset 'voc' has no control runs" in capsys.readouterr().err


def test_notebook_kernels_run_over_ipc_without_the_tcp_warning(tmp_path, capfd):
    """The batch kernels use IPC sockets, so ipykernel's 'running over TCP without encryption' warning has no cause."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "tiny.ipynb"
    nbformat.write(nb, str(source))
    execute_notebook(source, tmp_path / "out.ipynb", {})
    executed = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "42\n"
    assert _ipc_kernel_manager()().transport == "ipc"
    assert "without encryption" not in capfd.readouterr().err


def test_a_result_of_another_mini_clip_is_not_done(tmp_path):
    """Results record their mini-CLIP (cache key, digest, dials, steps); one made with other weights is redone and
    left out of the reports. Results from before the record count as the generator-3 contrastive mini-CLIP."""
    from zegclip.experiments.report import world_mismatch
    from zegclip.mini.miniclip import LEGACY_KEY, PretrainConfig, result_key

    entry = next(e for e in expand("mini") if e.id == "mini-voc-dpt-nel-rd-fully-s0")
    committed = json.loads(Path(project_root(), "results/mini/runs", f"{entry.id}.json").read_text())
    target = tmp_path / "mini/runs" / f"{entry.id}.json"
    target.parent.mkdir(parents=True)
    current = PretrainConfig().key()
    for record, key in ((None, LEGACY_KEY), ({"key": current, "digest": "d"}, current),
                        ({"key": "another", "digest": "d"}, "another")):
        result = {k: v for k, v in committed.items() if k != "mini_clip"}
        if record is not None:
            result["mini_clip"] = record
        assert result_key(result) == key
        target.write_text(json.dumps(result))
        if key == current:
            assert world_mismatch(result) is None
        else:
            assert not is_done(entry, tmp_path) and f"mini-CLIP {key}" in world_mismatch(result)


def test_a_result_that_saved_more_samples_is_done(tmp_path):
    """Saved sample PNGs change no number: a result with at least the samples asked for is done; fewer is not."""
    from zegclip.experiments.runs import why_not_done

    source = project_root() / "results" / "mini" / "runs" / "mini-voc-dpt-nel-rd-fully-s0.json"
    if not source.is_file():
        pytest.skip("needs a committed mini result")
    result = json.loads(source.read_text())
    entry = Entry(result["run"], "run", normalise_params({**result["params"], "profile": "mini"}), ("calibration",))
    target = tmp_path / "mini" / "runs" / source.name
    target.parent.mkdir(parents=True)
    for have, want, why in ((8, 0, None), (8, 8, None), (0, 8, "saved 0 sample images, 8 wanted")):
        target.write_text(json.dumps({**result, "params": {**result["params"], "samples": have}}))
        e = Entry(entry.id, "run", {**entry.params, "samples": want}, entry.tables)
        assert why_not_done(e, tmp_path) == why, (have, want)
