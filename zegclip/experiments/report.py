"""Report layer: read result JSONs, aggregate seeds, put the paper's numbers beside, draw the figures.

The report notebooks (``notebooks/table*.ipynb``, ``figure*.ipynb``) only call this module::

    rep = table_report("table5", profile="mini", results_dir="results")
    rep.show()                      # status line, problems, reproduced "mean ± std" beside the paper's numbers
    rep.numeric                     # the same as numbers (mean, std, n per metric), for plots

Which runs a table reads comes from the experiment registry (:func:`zegclip.experiments.reproduce.runs_for`). Runs whose
parameters differ only in ``seed`` form one row: mean and sample standard deviation (``n - 1``) over the seeds
that have a result, with ``n`` shown. A result file that is not valid JSON, is not a zegclip result, or was made with
other parameters than the registry's is reported in ``problems`` and never averaged. A profile without results
says so (``not run``) and never shows a number that was not measured.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import yaml

from ..engine.results import METRICS, REQUIRED, result_problem  # noqa: F401  (METRICS, REQUIRED re-exported)

__all__ = [
    "METRICS", "TABLE_METRICS", "REPORT_TABLES", "Report", "load_results", "paper_numbers", "paper_frame",
    "paper_table", "entries_for", "aggregate", "fmt", "format_frame", "not_run_note", "table_report",
    "per_class_frame", "sample_grid", "effective_params", "datasets_of", "unseen_gain", "plot_ablation",
    "plot_vs_paper", "plot_per_class", "plot_samples", "glue", "PAPER_DATASET",
]

TABLE_METRICS = ("pAcc", "mIoU(S)", "mIoU(U)", "hIoU")
# parameters that do not make a run different (grouping ignores them; so does the staleness check)
NOT_IN_KEY = ("seed", "samples", "data_root", "weights", "results_dir", "run_id", "profile")
# the paper's dataset behind each dataset of a profile (the mini world's stand-ins included)
PAPER_DATASET = {"voc": "voc", "coco": "coco", "context": "context",
                 "mini-voc": "voc", "mini-coco": "coco", "mini-voc-b": "voc"}
# rows of each table: the registry parameters that tell them apart, and the metrics shown
REPORT_TABLES: dict[str, dict[str, Any]] = {
    "table2": {"by": ("dataset", "setting", "self_training"), "metrics": TABLE_METRICS},
    "table4": {"by": ("query_format",), "metrics": TABLE_METRICS},
    "table5": {"by": ("variant",), "metrics": TABLE_METRICS},
    "figure1": {"by": ("variant",), "metrics": TABLE_METRICS},
    "table6": {"by": ("dataset", "loss"), "metrics": TABLE_METRICS},
    "table7": {"by": ("dataset", "eval_dataset", "setting"), "metrics": ("pAcc", "mIoU", "mAcc")},
}
_MAX_PROBLEMS = 12


# ------------------------------------------------------------------------------------------------ reading
def _project() -> Path | None:
    from .reproduce import project_root

    try:
        return project_root()
    except FileNotFoundError:
        return None


def _resolve(results_dir: str | Path) -> Path:
    """``results_dir`` as given, or under the project root (the checkout found from the working directory, see
    :func:`zegclip.experiments.reproduce.project_root`) when a relative path is not found here: notebooks run from their folder."""
    path = Path(results_dir)
    if not path.is_absolute() and not path.exists():
        root = _project()
        if root is not None and (root / path).exists():
            return root / path
    return path


def _shown(path: Path) -> str:
    """``path`` relative to the project when it lies inside it (for display)."""
    root = _project() or Path.cwd()
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _invalid(data: Any, kind: str, stem: str) -> str | None:
    """Why ``data`` is not a usable result of ``kind`` (None when it is): :func:`zegclip.engine.results.result_problem`."""
    return result_problem(data, kind, stem)


def load_results(results_dir: str | Path = "results", profile: str = "mini",
                 kind: str = "runs") -> tuple[list[dict], list[str]]:
    """Every valid result in ``results_dir/profile/kind/*.json`` and one line per file that was skipped.

    Each result dict gets ``"_path"`` (its file). Unreadable or corrupt JSON, a foreign JSON (not a zegclip result,
    missing keys, a run id other than the file name) is reported as ``"<file>: <why>; skipped"`` and left out.
    """
    folder = _resolve(results_dir) / profile / kind
    results: list[dict] = []
    problems: list[str] = []
    if not folder.is_dir():
        return results, problems
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{_shown(path)}: unreadable JSON ({str(exc).splitlines()[0]}); skipped")
            continue
        why = _invalid(data, kind, path.stem)
        if why:
            problems.append(f"{_shown(path)}: {why}; skipped")
            continue
        data["_path"] = str(path)
        results.append(data)
    return results, problems


# ------------------------------------------------------------------------------------------- paper numbers
@lru_cache(maxsize=1)
def _paper_yaml() -> dict:
    import importlib.resources

    path = importlib.resources.files("zegclip.experiments") / "paper_numbers.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping keyed by table name")
    return data


def paper_numbers(table: str) -> dict:
    """The paper's entry for ``table`` (``"table2"``, ``"table4"`` ... ``"figure5"``) from ``paper_numbers.yaml``."""
    data = _paper_yaml()
    if table not in data:
        raise KeyError(f"paper_numbers.yaml has no {table!r}; it has {sorted(data)}")
    return json.loads(json.dumps(data[table]))  # a copy: callers may not change the cached file


def _row_values(entry: dict, row: dict) -> Iterable[tuple[str | None, str, float | None]]:
    """(column group, metric, value) of one paper row."""
    metrics = entry["metrics"]
    groups = entry.get("columns")
    if groups:
        for group in groups:
            for m, v in zip(metrics, row.get(group) or [None] * len(metrics)):
                yield group, m, v
    else:
        for m, v in zip(metrics, row["values"]):
            yield None, m, v


def paper_frame(table: str) -> pd.DataFrame:
    """The paper's numbers of ``table``, one per row, with ``source`` "Table N / row / column / metric"."""
    entry = paper_numbers(table)
    if "rows" not in entry:
        return pd.DataFrame(columns=["row", "column", "metric", "value", "source"])
    name = entry["source"].split(":")[0]
    out = []
    for row in entry["rows"]:
        extra = {k: v for k, v in row.items() if k not in ("row", "values") and k not in (entry.get("columns") or {})}
        for group, metric, value in _row_values(entry, row):
            col = entry["columns"][group] if group else None
            where = " / ".join(x for x in (name, row.get("section"), row["row"], col, metric) if x)
            out.append({**extra, "row": row["row"], "column": group, "metric": metric, "value": value,
                        "source": where})
    return pd.DataFrame(out)


def paper_table(table: str) -> pd.DataFrame:
    """The paper's table as printed: one row per printed row, columns (group, metric); NaN for "-"."""
    entry = paper_numbers(table)
    index, rows = [], []
    for row in entry["rows"]:
        index.append((row["section"], row["row"]) if "section" in row else row["row"])
        rows.append({(entry["columns"][g] if g else "", m): (math.nan if v is None else v)
                     for g, m, v in _row_values(entry, row)})
    frame = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index) if index and isinstance(index[0], tuple)
                         else index)
    if not entry.get("columns"):
        frame.columns = [m for _, m in frame.columns]
    else:
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def _paper_lookup(table: str, p: dict) -> tuple[dict[str, float | None], str]:
    """The paper's numbers for the row with effective parameters ``p`` and where they come from ("" if none)."""
    dataset = PAPER_DATASET.get(p.get("dataset"))
    key = {"figure1": "table5"}.get(table, table)
    entry = paper_numbers(key)
    name = entry["source"].split(":")[0]

    def found(row: dict, group: str | None = None) -> tuple[dict, str]:
        values = row[group] if group else row["values"]
        col = f" / {entry['columns'][group]}" if group else ""
        return dict(zip(entry["metrics"], values)), f"{name} / {row['row']}{col}"

    for row in entry.get("rows", []):
        if (key == "table2" and row.get("setting") == p.get("setting") and dataset in entry["columns"]
                and row.get("self_training", "-") == p.get("self_training")):
            return found(row, dataset)
        if key == "table4" and dataset == "voc" and row["format"] == p.get("query_format"):
            return found(row)
        if key == "table5" and row["variant"] == p.get("variant") and dataset in entry["columns"]:
            return found(row, dataset)
        if key == "table6" and row["dataset"] == dataset and row["loss"] == p.get("loss"):
            return found(row)
        if (key == "table7" and row.get("setting") == p.get("setting") and row["source_dataset"] == dataset
                and row["target"] == PAPER_DATASET.get(p.get("eval_dataset"))):
            return found(row)
    return {}, ""


# --------------------------------------------------------------------------------------------- registry
def entries_for(profile: str, table: str, registry: Any = None) -> list:
    """The registry entries a table/figure reads (``zegclip.experiments.reproduce.runs_for``)."""
    from .reproduce import runs_for

    return runs_for(profile, table, registry)


def _entries(profile: str, table: str, registry: Any) -> tuple[list, str | None]:
    """Registry entries of ``table`` and, when there are none, the line that says why."""
    try:
        entries = entries_for(profile, table, registry)
    except (ValueError, FileNotFoundError) as exc:
        return [], f"profile `{profile}`: no registry entries ({str(exc).splitlines()[0]})"
    if not entries:
        return [], f"profile `{profile}`: notebooks/registry.yaml lists no runs for {table}"
    return entries, None


def datasets_of(profile: str, table: str, registry: Any = None) -> list[str]:
    """The training datasets of a table's registry runs, in registry order (empty when there are none)."""
    entries, _ = _entries(profile, table, registry)
    return list(dict.fromkeys(e.params.get("dataset") for e in entries))


def unseen_gain(frame: pd.DataFrame, dataset: str, before: str = "inductive", after: str = "transductive") -> float:
    """Mean over the classes in ``frame`` (from :func:`per_class_frame`) of IoU(after) - IoU(before); NaN if absent."""
    wide = frame[frame["dataset"] == dataset].pivot_table(index="class", columns="setting", values="IoU")
    if not {before, after} <= set(wide.columns):
        return math.nan
    return float((wide[after] - wide[before]).mean())


def effective_params(params: dict) -> dict:
    """Registry parameters with a variant's own query format and loss filled in (``None`` -> e.g. ``[t*g,t]``)."""
    from ..model.presets import variant_overrides

    p = dict(params)
    if "setting" in p:  # which pixels self-training labels: the official † ("dagger") unless "all"; "-" otherwise
        p["self_training"] = (p.get("self_training") or "dagger") if p["setting"] == "transductive" else "-"
    if p.get("variant"):
        own = variant_overrides(p["variant"])
        if p.get("query_format") is None:
            p["query_format"] = own["query_format"]
        if p.get("loss") is None:
            p["loss"] = own["loss"]["kind"]
    return p


def _key(params: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in params.items() if k not in NOT_IN_KEY))


def world_mismatch(result: dict) -> str | None:
    """Why a mini-world result was measured in another world than this package generates, or None (also for
    results on real data)."""
    data = (result.get("config") or {}).get("data") or {}
    if not str(data.get("dataset", "")).startswith("mini-"):
        return None
    from ..mini.world import GENERATOR_VERSION

    have = (data.get("options") or {}).get("generator")
    if have != GENERATOR_VERSION:
        return f"measured in mini-world generator version {have}, this package generates version {GENERATOR_VERSION}; skipped"
    return None


def _stale(result: dict, entry_params: dict) -> str | None:
    """Why a result does not belong to the registry entry (another world, other recorded parameters), or None."""
    why = world_mismatch(result)
    if why:
        return why
    have = result.get("params")
    if not isinstance(have, dict):
        return None  # results written before parameters were recorded: their id names the run
    want = {k: v for k, v in entry_params.items() if k not in NOT_IN_KEY}
    diff = [f"{k}: {have.get(k)!r} != {v!r}" for k, v in want.items() if k in have and have[k] != v]
    if diff:
        return "made with other parameters than the registry's (" + ", ".join(diff) + "); skipped"
    return None


def _match(entries: Sequence, results: Sequence[dict]) -> tuple[dict[str, dict], list[str]]:
    """Results of ``entries`` by entry id (by file name, then by ``run``); stale ones go to problems."""
    by_id: dict[str, dict] = {}
    for r in results:
        by_id.setdefault(Path(r.get("_path", "")).stem or str(r.get("run")), r)
    found, problems = {}, []
    for e in entries:
        r = by_id.get(e.id)
        if r is None:
            continue
        why = _stale(r, e.params)
        if why:
            problems.append(f"{_shown(Path(r['_path'])) if '_path' in r else e.id}: {why}")
            continue
        found[e.id] = r
    return found, problems


# ------------------------------------------------------------------------------------------- aggregation
def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN when none / fewer than two)."""
    finite = [float(v) for v in values if _finite(v)]
    mean = statistics.fmean(finite) if finite else math.nan
    std = statistics.stdev(finite) if len(finite) > 1 else math.nan
    return mean, std


def _seed_groups(entries: Sequence) -> list[tuple[dict, list]]:
    """Entries grouped by their effective parameters minus seed: [(params, members)], in registry order."""
    groups: dict[tuple, list] = {}
    for e in entries:
        groups.setdefault(_key(effective_params(e.params)), []).append(e)
    return [(effective_params(members[0].params), members) for members in groups.values()]


def aggregate(entries: Sequence, results: Sequence[dict] | dict[str, dict], metrics: Sequence[str] = METRICS,
              by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per group of entries whose parameters differ only in seed (or other ``NOT_IN_KEY`` names).

    ``results``: loaded results (matched to entries by file name) or a dict id -> result. Columns: the ``by``
    parameters (effective values, e.g. the variant's own query format), ``n`` (seeds with a result),
    ``n_expected``, ``seeds``, and per metric its mean and ``"<metric> std"`` (sample std, NaN for n < 2).
    """
    if not isinstance(results, dict):
        results, _ = _match(entries, results)
    rows = []
    for p, members in _seed_groups(entries):
        have = [results[e.id] for e in members if e.id in results]
        row: dict[str, Any] = {b: p.get(b) for b in by}
        row.update(n=len(have), n_expected=len(members),
                   seeds=[r.get("seed", e.params.get("seed")) for e in members if (r := results.get(e.id))],
                   ids=[e.id for e in members], params=p)
        for m in metrics:
            row[m], row[f"{m} std"] = _mean_std(r["metrics"].get(m) for r in have)
        rows.append(row)
    columns = [*by, "n", "n_expected", "seeds", *[c for m in metrics for c in (m, f"{m} std")], "ids", "params"]
    return pd.DataFrame(rows, columns=columns)


def fmt(mean: float, std: float = math.nan, n: int = 1, digits: int = 1) -> str:
    """``"84.3 ± 1.2"`` (n > 1), ``"84.3"`` (one seed), ``"n/a"`` (undefined) or ``"not run"`` (n = 0)."""
    if n == 0:
        return "not run"
    if not _finite(mean):
        return "n/a"
    if n > 1 and _finite(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def format_frame(numeric: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = (),
                 digits: int = 1) -> pd.DataFrame:
    """Strings ``"mean ± std"`` per metric from :func:`aggregate`'s frame, with the ``by`` columns and ``n``."""
    out = numeric[list(by)].copy() if by else pd.DataFrame(index=numeric.index)
    out["n"] = numeric["n"].astype(int)
    for m in metrics:
        out[m] = [fmt(a, s, int(n), digits) for a, s, n in zip(numeric[m], numeric[f"{m} std"], numeric["n"])]
    return out


def not_run_note(profile: str, table: str) -> str:
    """The line a report shows when ``profile`` has no results for ``table``."""
    return f"profile `{profile}`: not run — python -m zegclip reproduce --profile {profile} --only {table}"


# ------------------------------------------------------------------------------------------------ reports
@dataclass
class Report:
    """A reproduced table beside the paper's numbers (see :func:`table_report`)."""

    table: str
    profile: str
    results_dir: str
    metrics: tuple[str, ...]
    by: tuple[str, ...]
    numeric: pd.DataFrame  # aggregate() + "paper <metric>" + "paper source"
    frame: pd.DataFrame  # display strings: by, n, reproduced metrics, paper metrics
    note: str | None = None
    problems: list[str] = field(default_factory=list)
    expected: int = 0
    found: int = 0

    @property
    def ran(self) -> bool:
        """Whether any run of the table has a result."""
        return self.found > 0

    def status(self) -> str:
        """One line: profile, runs found, seeds per row."""
        if not self.ran:
            return self.note or not_run_note(self.profile, self.table)
        seeds = sorted(set(self.numeric["n"][self.numeric["n"] > 0]))
        return (f"profile `{self.profile}`: {self.found} of {self.expected} runs of {self.table} have results "
                f"(seeds per row: {', '.join(map(str, seeds))}; mean ± sample std where n > 1), "
                f"read from {self.results_dir}")

    def _head(self, code: bool = False) -> list[str]:
        """Markdown paragraphs: status, note, skipped files (at most a dozen listed)."""
        parts = [f"**{self.status()}**"]
        if self.note and self.ran:
            parts.append(self.note)
        if self.problems:
            shown = self.problems[:_MAX_PROBLEMS]
            more = len(self.problems) - len(shown)
            quote = "`" if code else ""
            parts.append("Skipped result files:\n" + "\n".join(f"- {quote}{p}{quote}" for p in shown)
                         + (f"\n- … and {more} more" if more > 0 else ""))
        return parts

    def markdown(self) -> str:
        """Status, note, problems and the table as Markdown."""
        return "\n\n".join([*self._head(), _markdown_table(self.frame)])

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def show(self) -> None:
        """Display the status line and problems (Markdown) and the table (a DataFrame) in a notebook."""
        from IPython.display import Markdown, display

        display(Markdown("\n\n".join(self._head(code=True))))
        display(self.frame.set_index(list(self.by)) if self.by else self.frame)

    def row(self, **where: Any) -> pd.Series | None:
        """The numeric row whose ``by`` values match ``where`` (None if absent)."""
        mask = pd.Series(True, index=self.numeric.index)
        for k, v in where.items():
            mask &= self.numeric[k] == v
        hits = self.numeric[mask]
        return None if hits.empty else hits.iloc[0]

    def value(self, metric: str, **where: Any) -> str:
        """The formatted reproduced value of one cell (``"not run"`` when absent)."""
        r = self.row(**where)
        return "not run" if r is None else fmt(r[metric], r[f"{metric} std"], int(r["n"]))

    def rank_agreement(self, metric: str = "hIoU") -> float:
        """Spearman rank correlation of reproduced means and the paper's numbers over rows with both (NaN if < 3)."""
        both = self.numeric[[metric, f"paper {metric}"]].astype(float).dropna()
        return float(both[metric].corr(both[f"paper {metric}"], method="spearman")) if len(both) >= 3 else math.nan


def _markdown_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join("" if _isnan(v) else str(v) for v in r.tolist()) + " |")
    return "\n".join(lines)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def table_report(table: str, profile: str = "mini", results_dir: str | Path = "results", registry: Any = None,
                 entries: Sequence | None = None) -> Report:
    """The reproduced ``table`` (table2, table4, table5, table6, table7, figure1) of ``profile`` beside the paper.

    ``entries`` replaces the registry lookup (tests). Rows follow the registry order.
    """
    if table not in REPORT_TABLES:
        raise ValueError(f"no report for {table!r}; choose one of {sorted(REPORT_TABLES)}")
    spec = REPORT_TABLES[table]
    metrics, by = tuple(spec["metrics"]), tuple(spec["by"])
    resolved = _resolve(results_dir)
    note = None
    if entries is None:
        entries, note = _entries(profile, table, registry)
    results, problems = load_results(resolved, profile, "runs")
    found, stale = _match(entries, results)
    numeric = aggregate(entries, found, metrics, by)
    paper_rows = [_paper_lookup(table, p) for p in numeric["params"]]
    for m in metrics:
        numeric[f"paper {m}"] = [(math.nan if vals.get(m) is None else vals[m]) for vals, _ in paper_rows]
    numeric["paper source"] = [src for _, src in paper_rows]
    frame = format_frame(numeric, metrics, by)
    for m in metrics:
        frame[f"paper {m}"] = ["—" if _isnan(v) else f"{v:.1f}" for v in numeric[f"paper {m}"]]
    expected, n_found = len(entries), len(found)
    if entries and n_found == 0:
        note = not_run_note(profile, table)
    elif entries and n_found < expected:
        missing = [e.id for e in entries if e.id not in found]
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        note = (f"{len(missing)} of {expected} runs have no result yet ({shown}) — "
                f"python -m zegclip reproduce --profile {profile} --only {table}")
    return Report(table, profile, _shown(resolved), metrics, by, numeric, frame, note, problems + stale, expected,
                  n_found)


# ------------------------------------------------------------------------------------------ per-class IoU
def per_class_frame(profile: str = "mini", results_dir: str | Path = "results", table: str = "figure5",
                    split: str | None = "unseen", registry: Any = None,
                    entries: Sequence | None = None) -> tuple[pd.DataFrame, list[str], str | None]:
    """Per-class IoU (mean and sample std over seeds) of the runs of ``table``: (frame, problems, note).

    Frame columns: dataset, setting, class, id, split, IoU, IoU std, n. ``split`` keeps only seen/unseen classes.
    ``note`` is the not-run line when no run has a result.
    """
    missing_note = None
    if entries is None:
        entries, missing_note = _entries(profile, table, registry)
    results, problems = load_results(results_dir, profile, "runs")
    found, stale = _match(entries, results)
    rows = []
    for p, members in _seed_groups(entries):
        have = [found[e.id] for e in members if e.id in found]
        classes: dict[str, list[dict]] = {}
        for r in have:
            for c in r["per_class"]:
                if split is None or c.get("split") == split:
                    classes.setdefault(c["class"], []).append(c)
        for name, cs in classes.items():
            mean, std = _mean_std(c.get("IoU") for c in cs)
            rows.append({"dataset": p.get("dataset"), "setting": p.get("setting"), "class": name,
                         "id": cs[0].get("id"), "split": cs[0].get("split"), "IoU": mean, "IoU std": std,
                         "n": len(cs)})
    frame = pd.DataFrame(rows, columns=["dataset", "setting", "class", "id", "split", "IoU", "IoU std", "n"])
    note = missing_note or (not_run_note(profile, table) if not found else None)
    return frame, problems + stale, note


# --------------------------------------------------------------------------------------- qualitative grid
def sample_grid(profile: str = "mini", results_dir: str | Path = "results", table: str = "figure4",
                baseline: str = "DPT", ours: str = "DPT+NEL+RD", registry: Any = None,
                entries: Sequence | None = None) -> tuple[list[dict], dict, list[str], str | None]:
    """Rows of Figure 4 from the runs' saved samples: (rows, classes, problems, note).

    Each row: ``{"image", "label", "baseline", "ours"}`` absolute PNG paths (the label is the ground truth).
    ``classes``: ``{"names": [...], "seen": [...], "unseen": [...]}`` of the ZegCLIP run (empty if unknown).
    """
    if entries is None:
        entries, why = _entries(profile, table, registry)
        if why:
            return [], {}, [], why
    resolved = _resolve(results_dir)
    results, problems = load_results(resolved, profile, "runs")
    found, stale = _match(entries, results)
    problems = problems + stale
    by_variant = {e.params.get("variant"): found.get(e.id) for e in entries}
    base, zeg = by_variant.get(baseline), by_variant.get(ours)
    if base is None or zeg is None:
        missing = [v for v, r in ((baseline, base), (ours, zeg)) if r is None]
        note = not_run_note(profile, table) if not found else (
            f"profile `{profile}`: no result yet for variant(s) {', '.join(missing)} of {table} — "
            f"python -m zegclip reproduce --profile {profile} --only {table}")
        return [], {}, problems, note
    root = resolved / profile
    rows = []
    base_samples, zeg_samples = base.get("samples") or [], zeg.get("samples") or []
    for k, (b, z) in enumerate(zip(base_samples, zeg_samples)):
        paths = {"image": root / z["image"], "label": root / z["label"], "baseline": root / b["pred"],
                 "ours": root / z["pred"]}
        absent = [str(p) for p in paths.values() if not p.is_file()]
        if absent:
            problems.append(f"sample {k}: missing PNG {', '.join(absent)}; skipped")
            continue
        rows.append({k2: str(v) for k2, v in paths.items()})
    ids = {split: [c.get("id", i) for i, c in enumerate(zeg["per_class"]) if c["split"] == split]
           for split in ("seen", "unseen")}
    classes = {"names": list(zeg.get("class_names") or [c["class"] for c in zeg["per_class"]]),
               "seen": list(zeg.get("seen") or ids["seen"]), "unseen": list(zeg.get("unseen") or ids["unseen"])}
    note = None if rows else f"profile `{profile}`: the {table} runs saved no sample images (registry `samples`)"
    return rows, classes, problems, note


# ------------------------------------------------------------------------------------------------ figures
def _style():
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def _bars(ax, labels, mine, err, paper, mine_label: str, paper_label: str, colours) -> None:
    """Reproduced bars (error bars only where a sample std exists) beside hatched paper bars; "not run" marks."""
    import numpy as np

    x = np.arange(len(labels))
    mine, err, paper = (np.asarray(v, dtype=float) for v in (mine, err, paper))
    ax.bar(x - 0.2, np.nan_to_num(mine), 0.4, color=colours[0], label=mine_label)
    has = np.isfinite(mine) & np.isfinite(err)
    if has.any():
        ax.errorbar(x[has] - 0.2, mine[has], yerr=err[has], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.bar(x + 0.2, paper, 0.4, color=colours[1], alpha=0.7, hatch="//", label=paper_label)
    for xi, v in zip(x, mine):
        if not np.isfinite(v):
            ax.text(xi - 0.2, 1, "not run", rotation=90, ha="center", va="bottom", fontsize=8)
    rotate = len(labels) > 4
    ax.set_xticks(x, labels, rotation=35 if rotate else 0, ha="right" if rotate else "center")


def plot_ablation(rep: Report, metric: str = "hIoU"):
    """Figure 1: the five steps of the paper's Figure 1 (left) and all 12 variants (right), reproduced mean with
    sample-std error bars beside the paper's Table 5 (VOC) bars. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    sns = _style()
    steps = paper_numbers("figure1")["steps"]
    colours = sns.color_palette("deep", 2)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [5, 12]})
    data = rep.numeric.set_index("variant")
    panels = [([s["variant"] for s in steps], [s["label"] for s in steps], "Figure 1 steps"),
              (list(data.index), list(data.index), "all Table 5 variants")]
    for ax, (variants, labels, title) in zip(axes, panels):
        _bars(ax, labels, [data[metric].get(v, np.nan) for v in variants],
              [data[f"{metric} std"].get(v, np.nan) for v in variants],
              [data[f"paper {metric}"].get(v, np.nan) for v in variants],
              f"reproduced ({rep.profile}, mean ± std)", "paper (Table 5, VOC)", colours)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(title)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_vs_paper(rep: Report, metric: str = "hIoU", title: str | None = None):
    """Grouped bars per table row: reproduced mean (sample-std error bars) beside the paper's number. Returns the
    matplotlib Figure."""
    import matplotlib.pyplot as plt

    sns = _style()
    colours = sns.color_palette("deep", 2)
    data = rep.numeric
    labels = [" / ".join(str(r[b]) for b in rep.by) for _, r in data.iterrows()]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.65 * len(labels) + 2), 3.8))
    _bars(ax, labels, data[metric], data[f"{metric} std"], data[f"paper {metric}"],
          f"reproduced ({rep.profile}, mean ± std)", "paper", colours)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title or f"{rep.table}: {metric}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_per_class(frame: pd.DataFrame, settings: Sequence[str] = ("inductive", "transductive")):
    """Figure 5: per-class IoU of the unseen classes, one panel per dataset, bars per setting. Returns the Figure."""
    import matplotlib.pyplot as plt

    sns = _style()
    frame = frame[frame["setting"].isin(settings)]
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.5 * max(1, len(datasets)), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sub = frame[frame["dataset"] == ds]
        order = [s for s in settings if s in set(sub["setting"])]
        sns.barplot(data=sub, x="class", y="IoU", hue="setting", hue_order=order, ax=ax, errorbar=None)
        ax.set_title(f"{ds}: unseen classes")
        ax.set_ylabel("IoU (%)")
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.tight_layout()
    return fig


def plot_samples(rows: Sequence[dict], classes: dict, max_rows: int = 4, baseline: str = "DPT",
                 ours: str = "DPT+NEL+RD"):
    """Figure 4: image, baseline, ZegCLIP, ground truth per row, unseen classes outlined in red and listed in red
    in the legend (class colours from the PNG palette). Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from PIL import Image

    _style()
    rows = list(rows)[:max_rows]
    titles = ["(a) image", f"(b) baseline ({baseline})", f"(c) ZegCLIP ({ours})", "(d) ground truth"]
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows) + 0.8), squeeze=False)
    names, unseen = classes.get("names", []), set(classes.get("unseen", []))
    present: dict[int, tuple] = {}
    for i, row in enumerate(rows):
        for j, key in enumerate(("image", "baseline", "ours", "label")):
            img = Image.open(row[key])
            ax = axes[i][j]
            if img.mode == "P":
                ids = np.asarray(img)
                pal = np.asarray(img.getpalette() or [0] * 768, dtype=float).reshape(-1, 3) / 255.0
                for c in np.unique(ids):
                    if c != 255 and c < len(pal):
                        present.setdefault(int(c), tuple(pal[c]))
                rgb = np.asarray(img.convert("RGB")).copy()
                rgb[ids == 255] = 255  # ignore: white, whatever the palette says
                ax.imshow(rgb, interpolation="nearest")
                mask = np.isin(ids, list(unseen))
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors="red", linewidths=1.0)
            else:
                ax.imshow(img.convert("RGB"), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
    handles = [Patch(facecolor=col, edgecolor="black",
                     label=(names[c] if c < len(names) else str(c)) + (" (unseen)" if c in unseen else ""))
               for c, col in sorted(present.items())]
    if handles:
        legend = fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
        for text, (c, _) in zip(legend.get_texts(), sorted(present.items())):
            if c in unseen:
                text.set_color("red")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(handles) // 6), 1, 1))
    return fig


# --------------------------------------------------------------------------------------------------- glue
def glue(name: str, value: Any) -> None:
    """``myst_nb.glue(name, value, display=False)`` when myst_nb is installed (a no-op otherwise)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # the book extra is not installed: nothing to glue into
        return
    _glue(name, value, display=False)
