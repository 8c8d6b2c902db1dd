"""Aggregation over seeds and formatting: a reproduced table beside the paper's numbers (:func:`table_report`), the
per-class IoU of Figure 5 (:func:`per_class_frame`), and the glue into the book."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ...engine.results import METRICS
from .paper import _paper_lookup
from .results import (QUICK_NOTE, _entries, _finite, _key, _match, _resolve, _shown, effective_params, load_results,
                      not_run_note)

TABLE_METRICS = ("pAcc", "mIoU(S)", "mIoU(U)", "hIoU")
# rows of each table: the registry parameters that tell them apart, and the metrics shown
REPORT_TABLES: dict[str, dict[str, Any]] = {
    "table2": {"by": ("dataset", "setting", "self_training"), "metrics": TABLE_METRICS},
    "table4": {"by": ("query_format",), "metrics": TABLE_METRICS},
    "table5": {"by": ("dataset", "variant"), "metrics": TABLE_METRICS},  # two halves: VOC and COCO-Stuff
    "figure1": {"by": ("variant",), "metrics": TABLE_METRICS},
    "table6": {"by": ("dataset", "loss"), "metrics": TABLE_METRICS},
    "table7": {"by": ("dataset", "eval_dataset", "setting"), "metrics": ("pAcc", "mIoU", "mAcc")},
    "alignment": {"by": ("alignment", "setting", "variant"), "metrics": ("mIoU", *TABLE_METRICS)},
}
_MAX_PROBLEMS = 12


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
    ``n_expected``, ``seeds``, per metric its mean and ``"<metric> std"`` (sample std, NaN for n < 2), ``ids`` (the
    group's entries) and ``found`` (those with a result: the runs behind the row's numbers).
    """
    if not isinstance(results, dict):
        results, _ = _match(entries, results)
    rows = []
    for p, members in _seed_groups(entries):
        have = [results[e.id] for e in members if e.id in results]
        row: dict[str, Any] = {b: p.get(b) for b in by}
        row.update(n=len(have), n_expected=len(members),
                   seeds=[r.get("seed", e.params.get("seed")) for e in members if (r := results.get(e.id))],
                   ids=[e.id for e in members], found=[e.id for e in members if e.id in results], params=p)
        for m in metrics:
            row[m], row[f"{m} std"] = _mean_std(r["metrics"].get(m) for r in have)
        rows.append(row)
    columns = [*by, "n", "n_expected", "seeds", *[c for m in metrics for c in (m, f"{m} std")], "ids", "found",
               "params"]
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
    quick: bool = False  # the -quick runs of `reproduce --quick` (random weights, tests)

    @property
    def ran(self) -> bool:
        """Whether any run of the table has a result."""
        return self.found > 0

    def status(self) -> str:
        """One line: profile, runs found, seeds per row."""
        if not self.ran:
            return self.note or not_run_note(self.profile, self.table, self.quick)
        seeds = sorted(set(self.numeric["n"][self.numeric["n"] > 0]))
        return (f"profile `{self.profile}`{' (quick runs)' if self.quick else ''}: {self.found} of {self.expected} "
                f"runs of {self.table} have results "
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

    def linked(self) -> pd.DataFrame:
        """:attr:`frame` with each reproduced cell as HTML linked to the page of its run (or of each seed's run):
        the book's run pages, ``runs/<run id>.html`` beside the report page."""
        from .runpages import run_link

        out = self.frame.copy()
        for m in self.metrics:
            out[m] = [run_link(str(text), ids) for text, ids in zip(self.frame[m], self.numeric["found"])]
        return out

    def show(self) -> None:
        """Display the status line and problems (Markdown) and the table (HTML, each reproduced cell linked to its
        run's page) in a notebook."""
        from IPython.display import HTML, Markdown, display

        display(Markdown("\n\n".join(self._head(code=True))))
        display(HTML(self.html()))

    def html(self, columns: Sequence[str] | None = None) -> str:
        """The table as HTML (``columns``: a subset, e.g. ``["variant", "n", "hIoU", "paper hIoU"]``), each
        reproduced cell linked to its run's page; the ``by`` columns form the index when all are shown."""
        frame = self.linked()
        if columns is not None:
            return frame[list(columns)].to_html(escape=False, index=False, na_rep="")
        frame = frame.set_index(list(self.by)) if self.by else frame
        return frame.to_html(escape=False, index=bool(self.by), na_rep="")

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

    def part(self, **where: Any) -> "Report":
        """The rows whose ``by`` values match ``where`` (e.g. ``dataset="mini-coco"``: one half of Table 5), as a
        report of their own (status, counts and note recomputed for those rows)."""
        mask = pd.Series(True, index=self.numeric.index)
        for k, v in where.items():
            mask &= self.numeric[k] == v
        numeric, frame = self.numeric[mask].reset_index(drop=True), self.frame[mask].reset_index(drop=True)
        expected, found = int(numeric["n_expected"].sum()), int(numeric["n"].sum())
        note = self.note if found == self.found and expected == self.expected else None
        if found == 0:
            note = not_run_note(self.profile, self.table, self.quick)
        return Report(self.table, self.profile, self.results_dir, self.metrics, self.by, numeric, frame, note,
                      [], expected, found, self.quick)

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
                 entries: Sequence | None = None, quick: bool = False) -> Report:
    """The reproduced ``table`` (table2, table4, table5, table6, table7, figure1) of ``profile`` beside the paper.

    ``entries`` replaces the registry lookup (tests). Rows follow the registry order. ``quick``: the results of
    ``reproduce --quick`` (``<id>-quick``) instead of the real runs, flagged as such in the note.
    """
    if table not in REPORT_TABLES:
        raise ValueError(f"no report for {table!r}; choose one of {sorted(REPORT_TABLES)}")
    spec = REPORT_TABLES[table]
    metrics, by = tuple(spec["metrics"]), tuple(spec["by"])
    resolved = _resolve(results_dir)
    note = None
    if entries is None:
        entries, note = _entries(profile, table, registry, quick)
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
        note = not_run_note(profile, table, quick)
    elif entries and n_found < expected:
        missing = [e.id for e in entries if e.id not in found]
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        note = (f"{len(missing)} of {expected} runs have no result yet ({shown}) — "
                f"python -m zegclip reproduce --profile {profile} --only {table}{' --quick' if quick else ''}")
    if quick and n_found:
        note = QUICK_NOTE + (f" {note}" if note else "")
    return Report(table, profile, _shown(resolved), metrics, by, numeric, frame, note, problems + stale, expected,
                  n_found, quick)


# ------------------------------------------------------------------------------------------ per-class IoU
def _read_runs(table: str, profile: str, results_dir: str | Path, registry: Any, entries: Sequence | None,
               quick: bool) -> tuple[Sequence, dict[str, dict], list[str], str | None]:
    """The registry entries of ``table`` (unless given), their results and the problems met reading them:
    (entries, found: id -> result, problems (skipped and stale files), note: why there are no entries, or None)."""
    note = None
    if entries is None:
        entries, note = _entries(profile, table, registry, quick)
    results, problems = load_results(results_dir, profile, "runs")
    found, stale = _match(entries, results)
    return entries, found, problems + stale, note


def per_class_frame(profile: str = "mini", results_dir: str | Path = "results", table: str = "figure5",
                    split: str | None = "unseen", registry: Any = None,
                    entries: Sequence | None = None, quick: bool = False) -> tuple[pd.DataFrame, list[str], str | None]:
    """Per-class IoU (mean and sample std over seeds) of the runs of ``table``: (frame, problems, note).

    Frame columns: dataset, setting, class, id, split, IoU, IoU std, n. ``split`` keeps only seen/unseen classes.
    ``note`` is the not-run line when no run has a result. ``quick``: the ``-quick`` runs (see :func:`table_report`).
    """
    entries, found, problems, missing_note = _read_runs(table, profile, results_dir, registry, entries, quick)
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
    note = missing_note or (not_run_note(profile, table, quick) if not found else None)
    return frame, problems, note


def training_curves(table: str, profile: str = "mini", results_dir: str | Path = "results", registry: Any = None,
                    entries: Sequence | None = None,
                    quick: bool = False) -> tuple[pd.DataFrame, list[str], str | None]:
    """The logged training loss of every run of ``table`` that has a result: (frame, problems, note).

    Frame, one row per logged point (every ``log_every`` iterations): the table's ``by`` columns (e.g. dataset,
    variant), ``objective`` (the loss kind the run optimised, from its resolved config: ``el`` softmax
    cross-entropy, ``plus`` sigmoid focal + dice, ``plain``...; None if the result does not say), ``seed``, ``id``,
    ``iter`` and ``loss`` (the total training loss of that iteration). It tells a row that trained badly (a loss
    that stays high) from one that trained and transferred badly. A ``by`` column named like one of the frame's own
    (Table 6's ``loss`` parameter) is left out: ``objective`` tells its rows apart. ``note`` is the not-run line
    when no run has a result; runs whose result has no training log (evaluation-only) are left out.
    """
    if table not in REPORT_TABLES:
        raise ValueError(f"no report for {table!r}; choose one of {sorted(REPORT_TABLES)}")
    own = ("objective", "seed", "id", "iter", "loss")
    by = tuple(b for b in REPORT_TABLES[table]["by"] if b not in own)
    entries, found, problems, missing_note = _read_runs(table, profile, results_dir, registry, entries, quick)
    rows = []
    for e in entries:
        r = found.get(e.id)
        log = ((r or {}).get("training") or {}).get("log") or []
        p = effective_params(e.params)
        objective = _objective(r)
        for point in log:
            if _finite(point.get("loss")) and point.get("iter") is not None:
                rows.append({**{b: p.get(b) for b in by}, "objective": objective, "seed": p.get("seed"), "id": e.id,
                             "iter": int(point["iter"]), "loss": float(point["loss"])})
    frame = pd.DataFrame(rows, columns=[*by, *own])
    note = missing_note or (not_run_note(profile, table, quick) if not found else None)
    return frame, problems, note


def _objective(result: dict | None) -> str | None:
    """The loss kind a result's run optimised (``config.model.config.loss.kind``), or None."""
    try:
        return result["config"]["model"]["config"]["loss"]["kind"]
    except (KeyError, TypeError):
        return None


def loss_summary(curves: pd.DataFrame, by: Sequence[str], last: int = 5) -> pd.DataFrame:
    """Per table row (``by``) of :func:`training_curves`: ``n`` (seeds), ``loss start`` and ``loss end`` (per seed
    the mean of its first / last ``last`` logged losses, then mean and sample std over the seeds) and ``end/start``
    (the ratio of the two means). Rows keep the order of ``curves``.

    >>> c = pd.DataFrame({"variant": ["A"] * 4, "seed": [0, 0, 1, 1], "iter": [1, 2, 1, 2], "loss": [4., 2., 6., 2.]})
    >>> loss_summary(c, ["variant"], last=1)[["variant", "n", "loss start", "loss end", "end/start"]].values.tolist()
    [['A', 2, 5.0, 2.0, 0.4]]
    """
    by = list(by)
    rows = []
    for key, sub in curves.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        starts, ends = [], []
        for _, run in sub.groupby("seed", sort=True):
            run = run.sort_values("iter")
            starts.append(float(run["loss"].head(last).mean()))
            ends.append(float(run["loss"].tail(last).mean()))
        (s, s_std), (e, e_std) = _mean_std(starts), _mean_std(ends)
        rows.append({**dict(zip(by, key)), "n": len(starts), "loss start": s, "loss start std": s_std,
                     "loss end": e, "loss end std": e_std, "end/start": e / s if s else math.nan})
    return pd.DataFrame(rows, columns=[*by, "n", "loss start", "loss start std", "loss end", "loss end std",
                                       "end/start"])


FIT_RATIO = 1.5  # a row "did not fit" when its final loss exceeds its peers' median by this factor ...
FIT_FLOOR = 0.1  # ... and by this much in absolute terms (near-zero cross-entropy losses make ratios noise)
FIT_RULE = (f"a row did not fit when its final training loss (mean over seeds of the last five logged values) is more "
            f"than {FIT_RATIO:g} times, and more than {FIT_FLOOR:g} above, the median final loss of its peers: the rows "
            f"of the same table and dataset that optimise the same loss, at least three of them")


def fit_check(curves: pd.DataFrame, by: Sequence[str] | None = None, ratio: float = FIT_RATIO,
              floor: float = FIT_FLOOR, last: int = 5) -> pd.DataFrame:
    """Which rows of :func:`training_curves` the common recipe did not fit, by one stated rule (``FIT_RULE``).

    Per row (``by``, default the columns before ``objective``, plus ``objective``): the columns of
    :func:`loss_summary`, ``peers`` (the median ``loss end`` of the rows with the same ``dataset`` (if a column) and
    ``objective``; NaN when fewer than three such rows, which are not judged), ``vs peers`` (``loss end / peers``),
    ``fitted`` (False when ``loss end > ratio * peers`` and ``loss end - peers > floor``) and ``ids`` (the run ids).
    A row that did not fit measures the recipe's failure to optimise it, not only how well its design transfers.

    >>> c = pd.DataFrame({"variant": list("ABCD"), "objective": "plus", "seed": 0, "id": list("abcd"),
    ...                   "iter": 1, "loss": [1.0, 1.1, 1.2, 2.0]})
    >>> fit_check(c, ["variant"], last=1)[["variant", "peers", "fitted"]].values.tolist()
    [['A', 1.15, True], ['B', 1.15, True], ['C', 1.15, True], ['D', 1.15, False]]
    """
    if by is None:
        by = list(curves.columns[:list(curves.columns).index("objective")]) if "objective" in curves else []
    key = [*by, *(["objective"] if "objective" in curves and "objective" not in by else [])]
    cols = [*key, "n", "loss start", "loss start std", "loss end", "loss end std", "end/start", "peers",
            "vs peers", "fitted", "ids"]
    if curves.empty:
        return pd.DataFrame(columns=cols)
    frame = curves.fillna({"objective": "?"}) if "objective" in curves else curves
    summary = loss_summary(frame, key, last=last)  # rows in the order of groupby(key, sort=False, dropna=False)
    summary["ids"] = [sorted(set(g)) for _, g in frame.groupby(key, sort=False, dropna=False)["id"]]
    group = [c for c in ("dataset", "objective") if c in summary]
    peers = summary.groupby(group or (lambda _: 0), sort=False)["loss end"]  # no such column: one group
    summary["peers"] = peers.transform("median").where(peers.transform("size") >= 3)
    summary["vs peers"] = summary["loss end"] / summary["peers"]
    summary["fitted"] = ~((summary["loss end"] > ratio * summary["peers"])
                          & (summary["loss end"] - summary["peers"] > floor))
    return summary[cols].reset_index(drop=True)


def fit_for(table: str, profile: str = "mini", results_dir: str | Path = "results", quick: bool = False,
            **kw: Any) -> pd.DataFrame:
    """:func:`fit_check` of the runs of ``table``: what a results page passes to its verdicts (``fit=``)."""
    return fit_check(training_curves(table, profile, results_dir, quick=quick, **kw)[0])


def unseen_gain(frame: pd.DataFrame, dataset: str, before: str = "inductive", after: str = "transductive") -> float:
    """Mean over the classes in ``frame`` (from :func:`per_class_frame`) of IoU(after) - IoU(before); NaN if absent."""
    wide = frame[frame["dataset"] == dataset].pivot_table(index="class", columns="setting", values="IoU")
    if not {before, after} <= set(wide.columns):
        return math.nan
    return float((wide[after] - wide[before]).mean())


# --------------------------------------------------------------------------------------------------- glue
def glue(name: str, value: Any) -> None:
    """``myst_nb.glue(name, value, display=False)`` when myst_nb is installed (a no-op otherwise)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # the book extra is not installed: nothing to glue into
        return
    _glue(name, value, display=False)
