"""The `paper` profile end to end on a CPU: tiny stand-ins of the real downloads (mini-world scenes in the official
layouts), `prepare` on them, then `reproduce --profile paper --quick` over every registry entry and report."""
from __future__ import annotations

import json
import re

import nbformat
import numpy as np
import pytest
from PIL import Image

from zegclip.cli import main
from zegclip.data.datasets import build_dataset
from zegclip.engine.results import result_problem
from zegclip.experiments.project import project_root
from zegclip.experiments.registry import LEARN, REPORTS, expand, quick_entry
from zegclip.experiments.runs import run_spec
from zegclip.mini.grammar import get_world
from zegclip.mini.layouts import class_map, write_fake_datasets


def _prepare(data) -> dict:
    summary = write_fake_datasets(data, n=4)
    for argv in summary["prepare"]:
        assert main([*argv, "--workers", "0"]) == 0, argv
    return summary


def test_fake_downloads_prepare_into_consistent_datasets(tmp_path, capsys):
    """What `prepare` makes of the tiny downloads: the mmseg layouts, with labels that follow the scenes."""
    data = tmp_path / "data"
    summary = _prepare(data)
    voc_root = data / "VOCdevkit" / "VOC2012"
    # aug = SBD - VOC train - VOC val: the SBD ids shared with VOC are left out, as mmseg's converter does
    aug = (voc_root / "ImageSets" / "Segmentation" / "aug.txt").read_text().split()
    assert aug == ["2008_000100", "2008_000101", "2008_000200"]
    palette = Image.open(voc_root / "SegmentationClass" / f"{summary['voc']['voc val'][0]}.png")
    assert palette.mode == "P" and 255 in np.asarray(palette)  # VOC's colour-coded PNG with its void band
    for name, root, classes in (("voc", data / "VOCdevkit", 20), ("coco", data / "coco_stuff164k", 171),
                                ("context60", data / "VOCdevkit", 60), ("context59", data / "VOCdevkit", 59)):
        for split, size in (("train", 7 if name == "voc" else 4), ("val", 4)):
            ds = build_dataset(name, root, split)
            assert len(ds) == size and ds.num_classes == classes
            labels = {int(v) for i in range(len(ds)) for v in np.unique(ds[i]["label"])} - {255}
            assert labels & set(ds.class_split.unseen) and labels - set(ds.class_split.unseen)
    # the mini classes keep their split: seen -> seen, unseen -> unseen
    for world, target in (("mini-voc", "voc"), ("mini-coco", "coco"), ("mini-coco", "context60")):
        w = get_world(world)
        mapped = class_map(w, target)
        assert len(set(mapped.tolist())) == w.num_classes
        split = build_dataset(target, data / ("coco_stuff164k" if target == "coco" else "VOCdevkit"), "val").class_split
        assert {int(mapped[u]) for u in w.split.unseen} <= set(split.unseen)
        assert not {int(mapped[s]) for s in w.split.seen} & set(split.unseen)
    assert main(["mini", "fake-datasets"]) == 2
    assert "needs an output folder" in capsys.readouterr().err


@pytest.mark.slow
def test_paper_profile_quick_runs_every_entry_and_report(tmp_path, monkeypatch):
    """Every run and report of the paper profile, with a random ViT-B/16 on the tiny datasets: 51 runs (Table 5's
    COCO-Stuff half included), the bench, 10 reports and the walkthrough, about 25 minutes on 2 shared cores (about 40 s per run: kernel start, imports, two
    builds of the ViT-B/16, 2 iterations, 2 evaluation images)."""
    monkeypatch.setenv("ZEGCLIP_PROJECT", str(project_root()))  # the notebooks of this checkout
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    _prepare(data)
    results, book = tmp_path / "results", tmp_path / "book"
    argv = ["reproduce", "--profile", "paper", "--quick", "--data-root", str(data), "--results-dir", str(results),
            "--book-dir", str(book), "--jobs", "2"]
    code = main(argv)
    summary = json.loads((results / "paper" / "reproduce.json").read_text())
    assert code == 0 and summary["failed"] == {}, summary["failed"]
    entries = expand("paper", quick=True)
    assert sorted(summary["ran"]) == sorted(e.id for e in entries)
    # every entry: a valid result under its -quick id, made with the prepared data and the quick model
    numbers: dict[str, set[str]] = {t: set() for t in REPORTS}
    for e in entries:
        result = json.loads(e.result_path(results).read_text())
        if e.notebook == "run":
            assert result_problem(result, "runs", e.id) is None, e.id
            assert result["params"]["quick"] and result["params"]["data_root"] == str(data)
            assert result["config"]["random_init"] and str(data) in result["config"]["data"]["root"]
            for t in e.tables:
                numbers[t] |= {f"{v:.1f}" for v in result["metrics"].values() if v is not None}
        else:
            assert result_problem(result, "bench") is None and result["params"]["quick"], e.id
    assert not (project_root() / "results" / "paper").exists()  # nothing written into the repository
    # a real run's spec is untouched by quick mode: the recipe's 512 crops and schedule
    real = run_spec(expand("paper")[0].params)
    assert real["data"]["crop_size"] == 512 and real["train"]["iters"] == 20000 and not real.get("random_init")
    assert quick_entry(expand("paper")[0]).id == entries[0].id
    # every report notebook ran; those the paper registry feeds (all but the mini world's calibration) show the
    # quick numbers: no "not run" line, a measured value in a table
    assert summary["reports"] == {name: "ok" for name in (*REPORTS, *LEARN)}
    # a book page for every quick run, and the runs index
    assert summary["run_pages"] == sum(e.notebook == "run" for e in entries) and (book / "runs.md").is_file()
    fed = {t for e in entries for t in e.tables}
    assert fed == set(REPORTS) - {"calibration", "alignment"}  # the mini world's own pages
    for name in sorted(fed):
        cells = nbformat.read(book / f"{name}.ipynb", as_version=4).cells
        text = json.dumps([c.get("outputs", []) for c in cells if c.cell_type == "code"])
        assert not re.search(r"(?<!is )not run\b|no bench results", text), name  # Table 3's note: "is not run at"
        if name in ("table2", "table4", "table5", "table6", "table7", "figure1"):
            shown = set(re.findall(r"\d+\.\d", text))
            assert "quick runs" in text.lower() and shown & numbers[name], name
    # Table 5 shows both halves: a plot and a rank correlation per half, VOC and COCO-Stuff
    table5 = json.dumps([c.get("outputs", []) for c in nbformat.read(book / "table5.ipynb", as_version=4).cells
                         if c.cell_type == "code"])
    assert "**voc**: Spearman" in table5 and "**coco**: Spearman" in table5
    figure4 = json.dumps([c.get("outputs", []) for c in nbformat.read(book / "figure4.ipynb", as_version=4).cells
                          if c.cell_type == "code"])
    assert re.search(r"evaluation images with saved predictions: [1-9]", figure4) and "image/png" in figure4
    assert "bench-gpu-quick" in json.dumps(nbformat.read(book / "table3.ipynb", as_version=4).cells)
