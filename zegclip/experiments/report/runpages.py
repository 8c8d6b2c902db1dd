"""A page per run and the runs index: every number of the book traceable to the run that measured it.

:func:`write_run_pages` turns each result JSON of a profile into a MyST Markdown page of the book::

    book/generated/runs.md              the runs index: every registry run with its tables, status, wall time,
                                        machine and date, then every executed notebook's time
    book/generated/runs/<run id>.md     one run: how to rerun it, its metrics, the configuration (the difference
                                        from the profile's default run first, then all of it), the machine and
                                        library versions, the loss and learning-rate curves, per-class IoU and the
                                        confusion matrix as a heat map (PNG files beside the page)

The table notebooks link their cells to these pages (:func:`run_link`). The pages are written by
``python -m zegclip reproduce`` after the report notebooks, into a fresh folder that replaces the old one, so that a
page never outlives its result.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

RUNS_DIR = "runs"  # the folder of run pages beside the report notebooks (book/generated/runs/)


# ------------------------------------------------------------------------------------------------ links
def run_href(run_id: str) -> str:
    """The URL of a run's page relative to a report page of ``book/generated/`` (the built HTML)."""
    return f"{RUNS_DIR}/{run_id}.html"


def run_link(text: str, run_ids: Sequence[str]) -> str:
    """HTML for one table cell: ``text`` linked to its run's page, or, for a mean over seeds, ``text`` followed by
    one small link per seed's page (``s0 s1 s2``). ``run_ids`` are the runs behind the cell (with results)."""
    import html

    shown = html.escape(text)
    if not run_ids:
        return shown
    if len(run_ids) == 1:
        return f'<a href="{run_href(run_ids[0])}" title="{run_ids[0]}">{shown}</a>'
    seeds = " ".join(f'<a href="{run_href(r)}" title="{r}">{_seed_label(r)}</a>' for r in run_ids)
    return f'{shown} <sup class="zc-seeds">{seeds}</sup>'


def _seed_label(run_id: str) -> str:
    tail = run_id.removesuffix("-quick").rsplit("-", 1)[-1]
    return tail if tail.startswith("s") and tail[1:].isdigit() else run_id


# ----------------------------------------------------------------------------------------------- config
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 1e-3, ...}``: nested dicts flattened with dotted keys (lists stay values)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


def config_diff(config: dict, default: dict) -> list[tuple[str, Any, Any]]:
    """``[(field, this run's value, the default's value)]`` for every flattened field that differs."""
    a, b = _flatten(config), _flatten(default)
    missing = object()
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            rows.append((key, "—" if va is missing else va, "—" if vb is missing else vb))
    return rows


def default_config(profile: str, registry: Any = None) -> dict | None:
    """The resolved configuration of the profile's default run (the registry's profile defaults, seed 0): what a
    run page compares its configuration with. None when it cannot be resolved (e.g. an unknown profile)."""
    from ...engine.run import run_from_dict
    from ..registry import load_registry, normalise_params
    from ..runs import run_spec

    try:
        reg = registry if isinstance(registry, dict) else load_registry(registry)
        params = normalise_params({"profile": profile, **(reg["profiles"][profile].get("defaults") or {})})
        return json.loads(json.dumps(run_from_dict(run_spec(params, "runs")).to_dict(), default=str))
    except (KeyError, ValueError, FileNotFoundError):
        return None


# ------------------------------------------------------------------------------------------------ pages
def _md_value(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _num(v: Any, digits: int = 1) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "—"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def machine(result: dict) -> str:
    """One line naming the machine of a result: GPUs or CPU model, cores, torch threads."""
    env = result.get("environment") or {}
    if env.get("gpus"):
        return ", ".join(env["gpus"])
    cpu = env.get("cpu") or env.get("processor") or "CPU"
    cores = f", {env['cpu_count']} cores" if env.get("cpu_count") else ""
    threads = f", {env['torch_threads']} thread{'s' if env['torch_threads'] != 1 else ''}" if env.get("torch_threads") else ""
    return f"{cpu}{cores}{threads}"


def _rerun(entry, profile: str) -> str:
    base = entry.id.removesuffix("-quick")
    quick = " --quick" if entry.params.get("quick") else ""
    return f"python -m zegclip reproduce --profile {profile} --only {base} --force{quick}"


def _plot_curves(log: list[dict], path: Path) -> bool:
    """Loss terms and learning rate against iteration (PNG); False when there is no log."""
    if not log:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters = [r["iter"] for r in log]
    terms = [k for k in log[0] if k not in ("iter", "lr", "time")]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(9, 3), dpi=100)
    for k in terms:
        ax_loss.plot(iters, [r.get(k) for r in log], label=k, marker="." if len(log) < 30 else None)
    ax_loss.set(xlabel="iteration", ylabel="loss", title="training loss")
    ax_loss.legend(fontsize=8)
    ax_lr.plot(iters, [r["lr"] for r in log], color="tab:gray")
    ax_lr.set(xlabel="iteration", ylabel="learning rate", title="learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _plot_confusion(result: dict, path: Path) -> bool:
    """The confusion matrix, each ground-truth row normalised to 100 %, as a heat map (PNG)."""
    import numpy as np

    conf = np.asarray(result.get("confmat") or [], dtype=float)
    if conf.ndim != 2 or conf.size == 0:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    names = list(result.get("class_names") or range(len(conf)))
    unseen = set(result.get("unseen") or [])
    labels = [f"{n} *" if i in unseen else str(n) for i, n in enumerate(names)]
    rows = conf.sum(1, keepdims=True)
    share = np.divide(conf * 100, rows, out=np.zeros_like(conf), where=rows > 0)
    side = min(12, 3 + 0.28 * len(conf))
    fig, ax = plt.subplots(figsize=(side + 1.5, side), dpi=100)
    small = len(conf) <= 24
    sns.heatmap(share, ax=ax, cmap="viridis", vmin=0, vmax=100, square=True, xticklabels=labels if small else False,
                yticklabels=labels if small else False, cbar_kws={"label": "% of the class's pixels"})
    ax.set(xlabel="predicted class", ylabel="ground-truth class (* unseen)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def run_page(entry, result: dict, default: dict | None, folder: Path) -> str:
    """The MyST Markdown page of one run (its figures are written into ``folder``)."""
    rid, p = entry.id, entry.params
    m = result.get("metrics") or {}
    env = result.get("environment") or {}
    training = result.get("training") or {}
    lines = [f"# {rid}", ""]  # plain text: the sidebar and narrow screens wrap it at its hyphens
    lines += [_table(["profile", "read by", "seed", "finished (UTC)", "wall time", "machine"],
                     [[f"`{p.get('profile')}`", ", ".join(entry.tables) or "—", result.get("seed"),
                       str(result.get("finished") or "—")[:19].replace("T", " "), _duration(result.get("wall_seconds")),
                       machine(result)]]), "",
              "Wall time is training and evaluation together, in the run's papermill kernel.", ""]
    lines += ["Rerun it (the result file is replaced; add nothing else):", "", "```bash", _rerun(entry, p["profile"]),
              "```", ""]
    lines += ["## Metrics", "", _table(list(m), [[_num(v) for v in m.values()]]), ""]
    timings = result.get("timings") or {}
    if timings:
        lines += [f"Evaluation: {timings.get('images')} images in {_num(timings.get('seconds'))} s.", ""]

    lines += ["## Training curves", ""]
    curves = folder / f"{rid}-curves.png"
    if _plot_curves(training.get("log") or [], curves):
        lines += [f"![loss and learning rate of {rid}]({curves.name})", "",
                  f"{training.get('iterations')} iterations in {_duration(training.get('seconds'))} on "
                  f"`{training.get('device')}` (mixed precision: {training.get('amp')}).", ""]
    else:
        lines += ["This result was written before runs kept their training log (or the run was only evaluated); "
                  "rerunning it adds the curves.", ""]

    lines += ["## Configuration", ""]
    config = result.get("config") or {}
    if default is not None:
        diff = config_diff(config, default)
        lines += [f"What differs from the profile's default run ({len(diff)} fields; `—`: absent):", ""]
        lines += [_table(["field", "this run", "profile default"],
                         [[f"`{k}`", _md_value(a), _md_value(b)] for k, a, b in diff]) if diff
                  else "Nothing: this is the profile's default run.", ""]
    # (no backticks in the title: a backtick fence's info string may not hold any)
    lines += ["````{dropdown} The full resolved configuration (a run file for python -m zegclip train --config)",
              "```json", json.dumps(config, indent=2, default=str), "```", "````", ""]
    lines += ["## Machine and libraries", "",
              _table(["field", "value"], [["machine", machine(result)], ["platform", env.get("platform", "—")],
                                          ["python", env.get("python", "—")]]
                     + [[name, v or "—"] for name, v in (env.get("versions") or {}).items()]), ""]

    lines += ["## Per-class IoU", ""]
    per_class = result.get("per_class") or []
    lines += [_table(["class", "split", "IoU", "Acc", "pixels"],
                     [[c.get("class"), c.get("split"), _num(c.get("IoU")), _num(c.get("Acc")), c.get("pixels", "—")]
                      for c in per_class]) if per_class else "No per-class values.", ""]
    heat = folder / f"{rid}-confusion.png"
    if _plot_confusion(result, heat):
        lines += ["## Confusion matrix", "", f"![confusion matrix of {rid}]({heat.name})", "",
                  "Each row is one ground-truth class, normalised to 100 % of its pixels; unseen classes carry `*`.",
                  ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ index
def _notebook_times(generated: Path) -> list[list[str]]:
    """[name, seconds, finished] of every executed notebook in ``generated`` (papermill's own record)."""
    rows = []
    for nb in sorted(generated.glob("*.ipynb")):
        try:
            meta = json.loads(nb.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
        except (OSError, json.JSONDecodeError):
            continue
        rows.append([f"[{nb.stem}]({nb.stem}.ipynb)", _duration(meta.get("duration")),
                     str(meta.get("end_time") or "—")[:19].replace("T", " ")])
    return rows


def runs_index(profile: str, entries: Sequence, found: dict[str, dict], stale: dict[str, str],
               generated: Path) -> str:
    """The runs index page: every run entry of the profile, then the executed notebooks' times."""
    done = sum(e.id in found for e in entries)
    timed = [found[e.id]["wall_seconds"] for e in entries if e.id in found and found[e.id].get("wall_seconds")]
    lines = ["# Runs and their times", "",
             f"Profile `{profile}`: {done} of {len(entries)} runs have a result ("
             + (f"{_duration(sum(timed))} of wall time in all for the {len(timed)} that recorded it"
                if timed else "none recorded its wall time") + "). Each run links to its page: configuration, "
             "curves, per-class IoU and the command that reruns it. Wall time is that of training and evaluation "
             "together; runs measured before wall times were kept show `—`.", ""]
    rows = []
    for e in entries:
        r = found.get(e.id)
        status = "done" if r else (f"stale ({stale[e.id]})" if e.id in stale else "not run")
        name = f"[`{e.id}`]({RUNS_DIR}/{e.id}.md)" if r else f"`{e.id}`"
        rows.append([name, ", ".join(e.tables), status, _duration(r.get("wall_seconds")) if r else "—",
                     machine(r) if r else "—", str(r.get("finished") or "—")[:10] if r else "—"])
    lines += [_table(["run", "tables", "status", "wall time", "machine", "date"], rows), ""]
    times = _notebook_times(generated)
    if times:
        lines += ["## Notebooks", "", "Execution time of each report notebook of this build (papermill's record):",
                  "", _table(["notebook", "time", "finished (UTC)"], times), ""]
    return "\n".join(lines)


def write_run_pages(profile: str = "mini", results_dir: str | Path = "results",
                    generated: str | Path | None = None, quick: bool = False, registry: Any = None) -> list[Path]:
    """Write ``<generated>/runs.md`` and one page per run with a result into ``<generated>/runs/``; returns the
    pages written. The folder is replaced as a whole (pages of removed results disappear)."""
    from ...io import atomic_dir
    from ..project import generated_dir
    from ..registry import expand
    from ...mini.render import GENERATOR_VERSION
    from .results import _resolve, _shown, _stale, load_results, world_mismatch

    generated = Path(generated) if generated is not None else generated_dir()
    entries = [e for e in expand(profile, registry=registry, quick=quick) if e.notebook == "run"]
    results, _ = load_results(_resolve(results_dir), profile, "runs")
    by_id = {Path(r["_path"]).stem: r for r in results}
    found, stale = {}, {}
    for e in entries:
        r = by_id.get(e.id)
        if r is None:
            continue
        if world_mismatch(r):
            have = ((r.get("config") or {}).get("data") or {}).get("options", {}).get("generator")
            stale[e.id] = f"mini world v{have}, now v{GENERATOR_VERSION}"
        elif _stale(r, e.params):
            stale[e.id] = "other parameters"
        else:
            found[e.id] = r
    default = default_config(profile, registry)
    generated.mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_dir(generated / RUNS_DIR) as tmp:
        for e in entries:
            if e.id in found:
                page = tmp / f"{e.id}.md"
                page.write_text(run_page(e, found[e.id], default, tmp), encoding="utf-8")
                written.append(generated / RUNS_DIR / page.name)
        if not written:  # the toc's glob needs one page; say why there is nothing
            (tmp / "none.md").write_text(f"# No runs yet\n\nProfile `{profile}` has no run results in "
                                         f"{_shown(_resolve(results_dir))}.\n", encoding="utf-8")
    (generated / "runs.md").write_text(runs_index(profile, entries, found, stale, generated), encoding="utf-8")
    return written


__all__ = ["write_run_pages", "run_page", "runs_index", "run_link", "run_href", "config_diff", "default_config",
           "machine", "RUNS_DIR"]
