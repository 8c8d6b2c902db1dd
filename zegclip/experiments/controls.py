"""The mini world's controls: the numbers that say whether the instrument can be trusted, with absolute thresholds.

1. **Positive control** - fully supervised ZegCLIP (every class labelled) reaches mIoU >= 85 on mini-voc and >= 55
   on mini-coco (mean over seeds); the patch oracle is the ceiling beside it.
2. **Seen classes** - inductive ZegCLIP's mIoU(S) >= 0.9 x the fully supervised mIoU(S).
3. **Noise** - the sample standard deviation of inductive ZegCLIP's hIoU over seeds <= 2.0 points.
4. **Negative control** - with random unit vectors as the unseen classes' text embeddings, mIoU(U) falls to chance
   level: at most the mIoU(U) of a labelling that keeps the pixels the model gave *some* unseen class and picks
   *which* one uniformly at random (:func:`zegclip.engine.evaluate.partition_chance_miou`; issue 28). The
   seen-class shift sends "not a seen class" to the unseen classes without any unseen text, so a leak-free model
   beats a labelling random over all classes (shown beside it); only the choice among the unseen classes can
   come from the text.
5. **CLIP itself** - the mini-CLIP's image-level zero-shot top-1 >= 95 % for seen and for unseen classes.

:func:`controls_frame` measures them from the registry's results (``<results>/mini/runs/``) and the diagnosis
records (``<results>/mini/diagnosis/``); the tables are read only after these are reported.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from ..engine.evaluate import partition_chance_miou

POSITIVE = {"mini-voc": 85.0, "mini-coco": 55.0}
SEEN_RATIO = 0.9
HIOU_STD = 2.0
ZERO_SHOT = 95.0
# The runs the controls read: ZegCLIP with the packaged mini-CLIP and recipe (alignment=None: not the alignment
# study's other mini-CLIPs)
ZEGCLIP = dict(variant="DPT+NEL+RD", query_format=None, loss=None, eval_dataset=None, iters=None, alignment=None)


def _runs(results, **want) -> list[dict]:
    from .registry import RUN_DEFAULTS

    out = []
    for r in results:
        p = {**RUN_DEFAULTS, **(r.get("params") or {})}  # results written before a parameter existed have its default
        if all(p.get(k) == v for k, v in want.items()):
            out.append(r)
    return out


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    n = len(vals)
    if not n:
        return math.nan, math.nan, 0
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def controls_frame(results_dir: str | Path = "results", datasets=None, runs=None, instruments: dict | None = None):
    """One row per control and dataset: measured value, threshold, pass/fail/not run; and the problems found.

    ``datasets``: the presets to report (default both); ``runs``: only results with these run ids (default every
    result of the current world); ``instruments``: ``{preset: {"oracle_mIoU": float, "zero_shot": {"seen": %,
    "unseen": %} | None}}`` measured by the caller, else read from ``<results>/mini/diagnosis/<preset>.json``.

    Example (no results yet: every control is "not run")::

        >>> frame, _ = controls_frame("/nonexistent", datasets=["mini-voc"])
        >>> sorted(set(frame["result"])), len(frame)
        (['not run'], 5)
    """
    import pandas as pd

    from .report import load_results, world_mismatch

    loaded, problems = load_results(results_dir, "mini", "runs")
    results = [r for r in loaded if world_mismatch(r) is None]
    if len(results) < len(loaded):
        problems.append(f"{len(loaded) - len(results)} results of another world (generator version or mini-CLIP) "
                        "skipped")
    if runs is not None:
        results = [r for r in results if r.get("run") in set(runs)]
    base = ZEGCLIP
    rows = []

    def row(control, dataset, measured, n, threshold, ok, detail=""):
        state = "not run" if n == 0 or measured != measured else ("pass" if ok else "FAIL")
        rows.append({"control": control, "dataset": dataset, "measured": measured, "n": n, "threshold": threshold,
                     "result": state, "detail": detail})

    for ds in datasets or POSITIVE:
        if ds not in POSITIVE:
            raise ValueError(f"no controls are defined for {ds!r}; known: {sorted(POSITIVE)}")
        need = POSITIVE[ds]
        given = (instruments or {}).get(ds)
        fully = _runs(results, dataset=ds, setting="fully", **base)
        ind = _runs(results, dataset=ds, setting="inductive", negative_control=False, self_training=None, **base)
        m, s, n = _mean_std([r["metrics"]["mIoU"] for r in fully])
        diag = Path(results_dir) / "mini" / "diagnosis" / f"{ds}.json"
        record = json.loads(diag.read_text()) if given is None and diag.is_file() else None
        oracle = given["oracle_mIoU"] if given else record["oracle"]["mIoU"] if record else math.nan
        row("1 positive: fully supervised mIoU", ds, m, n, f">= {need:g}", m >= need,
            f"± {s:.1f}; patch oracle {oracle:.1f}" if n else "")
        fs, _, nf = _mean_std([r["metrics"]["mIoU(S)"] for r in fully])
        is_, _, ni = _mean_std([r["metrics"]["mIoU(S)"] for r in ind])
        ratio = is_ / fs if nf and ni and fs > 0 else math.nan
        row("2 seen: inductive / fully mIoU(S)", ds, ratio, min(nf, ni), f">= {SEEN_RATIO:g}", ratio >= SEEN_RATIO,
            f"{is_:.1f} / {fs:.1f}" if nf and ni else "")
        hm, hs, nh = _mean_std([r["metrics"]["hIoU"] for r in ind])
        row("3 noise: std of inductive hIoU", ds, hs, nh, f"<= {HIOU_STD:g}", hs <= HIOU_STD,
            f"hIoU {hm:.1f} over {nh} seeds" if nh else "")
        neg = _runs(results, dataset=ds, setting="inductive", negative_control=True, **base)
        um, _, nn = _mean_std([r["metrics"]["mIoU(U)"] for r in neg])
        chance, _, _ = _mean_std([partition_chance_miou(r["confmat"], r["unseen"]) if r.get("confmat") and
                                  r.get("unseen") else math.nan for r in neg])
        uniform, _, _ = _mean_std([r.get("chance_mIoU(U)", math.nan) for r in neg])
        row("4 negative: mIoU(U), random unseen text", ds, um, nn, "<= chance", um <= chance,
            f"chance {chance:.1f} (random among the unseen; over all classes {uniform:.1f})" if nn else "")
        zs = given.get("zero_shot") if given else record["zero_shot"].get(ds) if record else None
        low = min(zs["seen"], zs["unseen"]) if zs else math.nan
        row("5 CLIP: zero-shot top-1, min(seen, unseen)", ds, low, 1 if zs else 0, f">= {ZERO_SHOT:g}",
            low >= ZERO_SHOT, f"seen {zs['seen']:.1f}, unseen {zs['unseen']:.1f}" if zs else "")
    return pd.DataFrame(rows), problems


# ----------------------------------------------------------------------------------------- the command
def noise_frame(results_dir: str | Path = "results", datasets=None):
    """The seed noise of inductive ZegCLIP (the packaged mini-CLIP) per dataset, read where it lives: one row per
    dataset with the seeds measured, and mean ± sample std of hIoU, mIoU(S) and mIoU(U) over them. Control 3 reads
    the hIoU std; the split shows which classes carry the noise.

    >>> noise_frame("/nonexistent", datasets=["mini-voc"])["n"].tolist()
    [0]
    """
    import pandas as pd

    from .report import load_results, world_mismatch

    loaded, _ = load_results(results_dir, "mini", "runs")
    results = [r for r in loaded if world_mismatch(r) is None]
    base = ZEGCLIP
    rows = []
    for ds in datasets or POSITIVE:
        ind = sorted(_runs(results, dataset=ds, setting="inductive", negative_control=False, self_training=None,
                           **base), key=lambda r: r.get("seed", 0))
        row = {"dataset": ds, "n": len(ind), "seeds": [r.get("seed") for r in ind]}
        for metric in ("hIoU", "mIoU(S)", "mIoU(U)"):
            values = [r["metrics"][metric] for r in ind]
            m, sd, _ = _mean_std(values)
            row[metric] = m
            row[f"{metric} std"] = sd
            row[f"{metric} per seed"] = " / ".join(f"{v:.1f}" for v in values)
        rows.append(row)
    return pd.DataFrame(rows)


def controls_entries(preset: str, seeds: int = 3, registry: dict | str | Path | None = None) -> list:
    """The runs that measure the mini world's controls for ``preset``: the registry's ``calibration`` runs of that
    dataset, for seeds ``0..seeds-1`` (more seeds than the registry lists are made from its seed-0 entries)."""
    from .registry import Entry, normalise_params, run_id, runs_for

    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    listed = [e for e in runs_for("mini", "calibration", registry) if e.params["dataset"] == preset]
    if not listed:
        known = sorted({e.params["dataset"] for e in runs_for("mini", "calibration", registry)})
        raise ValueError(f"--preset {preset!r} has no control runs in the registry; known: {known}")
    out: dict[str, Entry] = {}
    for template in (e for e in listed if e.params["seed"] == 0):
        for seed in range(seeds):
            params = normalise_params({**template.params, "seed": seed})
            ident = run_id(params)
            out.setdefault(ident, Entry(ident, "run", params, template.tables))
    return list(out.values())


def run_controls(preset: str = "mini-voc", seeds: int = 3, results_dir: str | Path = "results", jobs: int = 1,
                 force: bool = False, quick: bool = False, registry: dict | str | Path | None = None) -> dict:
    """Measure the five controls of the mini world for ``preset`` (:mod:`zegclip.experiments.controls`).

    Runs the control runs that have no result yet (papermill, as ``reproduce``; finished ones are skipped), scores
    the patch oracle on the evaluation scenes and reads the mini-CLIP's zero-shot accuracy, then writes
    ``<results>/mini/calibration/controls-<preset>.json`` (the control table, the runs it read, the environment)
    and returns it. ``quick``: tiny runs with a random mini-CLIP under their own ``-quick`` ids (tests); the
    zero-shot control is then not measured.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from ..io import write_json_atomic
    from .batch import _run_entry
    from .runs import _json_ready, is_done
    from ..engine.results import environment
    from ..mini.diagnose import patch_oracle

    from .registry import quick_entry

    results_dir = Path(results_dir)
    entries = controls_entries(preset, seeds, registry)
    if quick:
        entries = [quick_entry(e) for e in entries]
    todo = [e for e in entries if force or not is_done(e, results_dir)]
    zero_shot = None
    if not quick:
        from ..mini.miniclip import ensure_mini_clip

        _, record = ensure_mini_clip()  # before the runs (each would otherwise wait for it); control 5 reads it
        zero_shot = record["zero_shot"].get(preset)
    if jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // jobs)))
    failed: dict[str, str] = {}
    # negative-control entries evaluate the inductive run's checkpoint: train everything else first
    first = [e for e in todo if not e.params["negative_control"]]
    second = [e for e in todo if e.params["negative_control"]]
    bar = tqdm(total=len(todo), desc=f"controls {preset}", unit="run", dynamic_ncols=True)
    for batch in (first, second):
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for e, err in pool.map(lambda e: (e, _run_entry(e, results_dir, force)), batch):
                if err:
                    failed[e.id] = err
                    tqdm.write(f"FAILED {e.id}: {err}")
                bar.update(1)
    bar.close()
    oracle = patch_oracle(preset, scenes=4 if quick else 300)
    frame, problems = controls_frame(results_dir, datasets=[preset], runs={e.id for e in entries},
                                     instruments={preset: {"oracle_mIoU": oracle["mIoU"], "zero_shot": zero_shot}})
    record = {
        "preset": preset, "seeds": seeds, "quick": quick,
        "controls": json.loads(frame.to_json(orient="records")),
        "passed": int((frame["result"] == "pass").sum()), "total": len(frame),
        "runs": [e.id for e in entries], "ran": [e.id for e in todo if e.id not in failed], "failed": failed,
        "problems": problems, "oracle": oracle, "zero_shot": zero_shot,
        "environment": environment(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    name = f"controls-{preset}{'-quick' if quick else ''}.json"
    write_json_atomic(results_dir / "mini" / "calibration" / name, _json_ready(record))
    return record
