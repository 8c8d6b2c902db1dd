"""The paper's claims and a verdict for each, computed from the measured numbers by one stated noise rule.

The claims (``claims.yaml`` beside this module) each compare two rows of a reproduced table: "row A is higher than
row B on metric M". The **noise rule**:

- both rows need at least two seeds (``n >= 2``); with fewer there is no estimate of the seed noise and the verdict
  is ``unresolved (one seed)``;
- the difference of the means is *resolved* when Welch's two-sided t-test (unequal variances, on the per-row mean,
  sample std and n) gives p < 0.05; two rows without any spread (std 0) are resolved when their means differ;
- ``reproduced``: resolved, in the paper's direction; ``not reproduced``: resolved, against it; ``unresolved
  within noise``: not resolved. A "not lower" claim (kind ``not_lower``) is reproduced unless a drop is resolved.
- ``higher than others``: compared with the runner-up, the other row with the highest mean.

Rows without a result give ``not run``. Nothing here looks at the paper's numbers: the verdict is about the
direction the paper states, measured in whatever world the profile runs in::

    rep = table_report("table5", profile="mini")
    verdicts(rep)            # DataFrame: claim, higher, lower, means ± std (n), difference, p, verdict
"""
from __future__ import annotations

import importlib.resources
import math
import statistics
from functools import lru_cache
from typing import Any

import pandas as pd
import yaml

from .tables import FIT_RULE, fit_for, table_report

ALPHA = 0.05  # the significance level of the noise rule
VERDICTS = ("reproduced", "not reproduced", "unresolved within noise", "unresolved (one seed)", "unresolved (one repeat)",
            "not run")
# A page whose claims are judged on another table's rows (the same runs, shown another way).
JUDGED_ON = {"figure5": "table2", "figure4": "table5"}
NOISE_RULE = ("Welch's two-sided t-test at 5 % on the seeds' mean, sample std and n (n ≥ 2 per row); "
              "a difference with p < 0.05 is resolved")


@lru_cache(maxsize=1)
def _claims_yaml() -> dict:
    path = importlib.resources.files("zegclip.experiments.report") / "claims.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def claims(table: str) -> list[dict]:
    """The paper's claims about ``table`` (empty for a table without comparative claims)."""
    return list(_claims_yaml().get(table) or [])


def welch_p(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int) -> float:
    """Two-sided p-value of Welch's t-test from summary statistics (NaN when n < 2 on either side).

    >>> round(welch_p(10.0, 1.0, 3, 5.0, 1.0, 3), 4)
    0.0036
    """
    if n1 < 2 or n2 < 2:
        return math.nan
    if s1 == 0 and s2 == 0:
        return 0.0 if m1 != m2 else 1.0
    from scipy.stats import ttest_ind_from_stats

    return float(ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)


def verdict(higher: tuple[float, float, int], lower: tuple[float, float, int], kind: str = "higher") -> tuple[str, float]:
    """(verdict, p) for "``higher`` is above ``lower``" with rows given as (mean, sample std, n)."""
    (m1, s1, n1), (m2, s2, n2) = higher, lower
    if n1 == 0 or n2 == 0 or not (math.isfinite(m1) and math.isfinite(m2)):
        return "not run", math.nan
    if n1 < 2 or n2 < 2:
        return "unresolved (one seed)", math.nan
    p = welch_p(m1, s1 if math.isfinite(s1) else 0.0, n1, m2, s2 if math.isfinite(s2) else 0.0, n2)
    resolved = p < ALPHA
    if kind == "not_lower":
        return ("not reproduced" if resolved and m1 < m2 else "reproduced"), p
    if not resolved:
        return "unresolved within noise", p
    return ("reproduced" if m1 > m2 else "not reproduced"), p


def _stats(row: pd.Series | None, metric: str) -> tuple[float, float, int]:
    if row is None:
        return math.nan, math.nan, 0
    n = int(row["n"])
    return (float(row[metric]), float(row[f"{metric} std"]), n) if n else (math.nan, math.nan, 0)


def _rows_where(numeric: pd.DataFrame, where: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=numeric.index)
    for k, v in where.items():
        mask &= numeric[k].astype(object).map(lambda x, v=v: x == v or (x in (None, "-") and v is None))
    return numeric[mask]


def _cell(stats: tuple[float, float, int]) -> str:
    m, s, n = stats
    if n == 0:
        return "not run"
    return f"{m:.1f} ± {s:.1f} (n={n})" if n > 1 and math.isfinite(s) else f"{m:.1f} (n={n})"


def _label(where: dict, by: tuple[str, ...]) -> str:
    return ", ".join(str(where[k]) for k in by if k in where) or "?"


def _not_fitted(row: pd.Series | None, label: str, fit: pd.DataFrame | None) -> str:
    """"<label> did not fit (...)" when a run of ``row`` is in a row that :func:`fit_check` found unfitted."""
    if row is None or fit is None or fit.empty or "found" not in row:
        return ""
    ids = set(row["found"])
    for _, f in fit[~fit["fitted"].astype(bool)].iterrows():
        if ids & set(f["ids"]):
            return (f"{label} did not fit: its training loss ended at {f['loss end']:.2f}, "
                    f"{f['vs peers']:.1f}× its peers' median {f['peers']:.2f}")
    return ""


def verdicts(rep: Any, table: str | None = None, fit: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim of ``table`` (default ``rep.table``) judged on the rows of ``rep`` (a
    :class:`~zegclip.experiments.report.tables.Report`): claim, source, metric, the two rows (labels and
    mean ± std (n)), difference of means, p, the verdict and the direction of the means.

    ``fit``: the :func:`~zegclip.experiments.report.tables.fit_check` of the same runs. Column ``fit`` then names a
    compared row that the common recipe did not fit (empty otherwise): the verdict stands, but it measures that
    failure to optimise as much as the design the claim is about."""
    rows = []
    numeric = rep.numeric
    for c in claims(table or rep.table):
        metric, kind = c["metric"], c.get("kind", "higher")
        each = c.get("each")
        values = list(dict.fromkeys(numeric[each])) if each else [None]
        for value in values:
            scope = {each: value} if each else {}
            hi_where = {**scope, **c["higher"]}
            hi_rows = _rows_where(numeric, hi_where)
            if each and hi_rows.empty:
                continue  # this dataset has no such row (e.g. a table's other half)
            hi = hi_rows.iloc[0] if not hi_rows.empty else None
            unmeasured = 0  # "best of all rows": rows in scope without a number yet
            if c["lower"] == "others":
                others = numeric.drop(hi_rows.index)
                if each:
                    others = others[others[each] == value]
                measured = (others["n"] > 0) & others[metric].notna()
                unmeasured, others = int((~measured).sum()), others[measured]
                lo = others.loc[others[metric].idxmax()] if not others.empty else None
                lo_label = ("runner-up: " + _label(lo.to_dict(), rep.by)) if lo is not None else "the other rows"
                if lo is not None and unmeasured:
                    lo_label += f" ({unmeasured} other row{'s' if unmeasured > 1 else ''} not run)"
            else:
                lo_rows = _rows_where(numeric, {**scope, **c["lower"]})
                lo = lo_rows.iloc[0] if not lo_rows.empty else None
                lo_label = _label({**scope, **c["lower"]}, rep.by)
            a, b = _stats(hi, metric), _stats(lo, metric)
            v, p = verdict(a, b, kind)
            if unmeasured and v != "not reproduced":
                # "best of all" needs every row; a measured row that beats it refutes it even before the rest run
                v = "not run"
            fields = hi.to_dict() if hi is not None else hi_where
            unfit = "; ".join(x for x in (_not_fitted(hi, _label(hi_where, rep.by), fit),
                                          _not_fitted(lo, lo_label.removeprefix("runner-up: "), fit)) if x)
            rows.append({
                "claim": c["text"].format(**{k: fields.get(k, "?") for k in rep.by}),
                "source": c.get("source", ""), "metric": metric,
                "higher": _label(hi_where, rep.by), "higher value": _cell(a),
                "lower": lo_label, "lower value": _cell(b),
                "difference": a[0] - b[0] if a[2] and b[2] else math.nan, "p": p, "verdict": v,
                "direction": _direction(a, b, kind), "fit": unfit,
                "higher runs": list(hi["found"]) if hi is not None and "found" in hi else [],
                "lower runs": list(lo["found"]) if lo is not None and "found" in lo else [],
            })
    return pd.DataFrame(rows, columns=["claim", "source", "metric", "higher", "higher value", "lower", "lower value",
                                       "difference", "p", "verdict", "direction", "fit", "higher runs",
                                       "lower runs"])


def _direction(a: tuple[float, float, int], b: tuple[float, float, int], kind: str) -> str:
    """Whether the means point the paper's way, whatever the noise ("—" without both rows)."""
    if not (a[2] and b[2]):
        return "—"
    agrees = a[0] >= b[0] if kind == "not_lower" else a[0] > b[0]
    return "as the paper" if agrees else "against the paper"


def verdicts_markdown(rep: Any, table: str | None = None, fit: pd.DataFrame | None = None) -> str:
    """The claims of a results page as Markdown: the rule, then one line per claim with its verdict (and, given
    ``fit`` (:func:`~zegclip.experiments.report.tables.fit_check`), a warning where a compared row did not fit)."""
    frame = verdicts(rep, table, fit)
    if frame.empty:
        return f"The paper makes no comparative claim about {rep.table} that a verdict could test."
    lines = [f"**The paper's claims, judged by the noise rule** ({NOISE_RULE}):", ""]
    for _, r in frame.iterrows():
        p = f", p = {r['p']:.3g}" if math.isfinite(r["p"]) else ""
        way = "the paper's way" if r["direction"] == "as the paper" else "against the paper"
        means = f"; the means point {way}" if r["verdict"] == "unresolved (one seed)" else ""
        lines.append(f"- **{r['verdict']}**: {r['claim']} ({r['metric']}: {r['higher']} {r['higher value']} vs "
                     f"{r['lower']} {r['lower value']}{p}{means}). *{r['source']}.*")
        if r["fit"]:
            lines[-1] += (f" ⚠ {r['fit']}: the verdict measures that the common recipe did not optimise this row, "
                          f"not only its design.")
    if fit is not None and frame["fit"].astype(bool).any():
        lines += ["", f"⚠ The fit check: {FIT_RULE}."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ Table 3 (bench)
def efficiency_verdicts(results: list[dict]) -> pd.DataFrame:
    """Table 3's claims from bench results (``results/<profile>/bench/*.json``): per run and dataset, the one-stage
    model has fewer learnable parameters and fewer MACs than the two-stage one (exact counts: no noise), and runs
    faster at batch 1 (the noise rule on the repeats' times, ``times_ms``; one repeat each is unresolved)."""
    rows = []
    for result in results:
        methods = result.get("methods") or []
        two = {m.get("dataset"): m for m in methods if m.get("stage") == "two-stage"}
        for m in (m for m in methods if m.get("stage") == "one-stage"):
            ref = two.get(m.get("dataset"))
            if ref is None:
                continue
            where = f"{result.get('run')}, {m.get('dataset')}"
            for what, key in (("learnable parameters", "trainable_params"), ("multiply-accumulates", "macs")):
                a, b = m.get(key), ref.get(key)
                v = "not run" if a is None or b is None else ("reproduced" if a < b else "not reproduced")
                rows.append({"claim": f"One-stage ZegCLIP needs fewer {what} than the two-stage model ({where})",
                             "source": "Tab. 3 (23 % of the parameters, 6 % of the FLOPs)", "metric": key,
                             "higher value": f"{b:,}" if b is not None else "—", "lower value": f"{a:,}" if a is not None else "—",
                             "p": math.nan, "verdict": v,
                             "direction": "—" if "not run" == v else ("as the paper" if v == "reproduced" else "against the paper")})
            t_one = ((m.get("phases") or {}).get("forward") or {}).get("times_ms") or []
            t_two = ((ref.get("phases") or {}).get("forward") or {}).get("times_ms") or []
            stats = [(statistics.fmean(t), statistics.stdev(t) if len(t) > 1 else math.nan, len(t)) if t else (math.nan, math.nan, 0)
                     for t in (t_two, t_one)]
            v, p = verdict(stats[0], stats[1])  # the two-stage time is the higher one, as the paper says
            rows.append({"claim": f"One-stage ZegCLIP runs faster than the two-stage model at batch 1 ({where})",
                         "source": "Sec. 4.4: about 5 times faster", "metric": "forward ms",
                         "higher value": _cell(stats[0]), "lower value": _cell(stats[1]), "p": p,
                         "verdict": v.replace("(one seed)", "(one repeat)"), "direction": _direction(*stats, "higher")})
    return pd.DataFrame(rows, columns=["claim", "source", "metric", "higher value", "lower value", "p", "verdict",
                                       "direction"])


# The claims page's groups, in this order: each verdict of VERDICTS belongs to one.
GROUPS = {"Reproduced": ("reproduced",), "Not reproduced": ("not reproduced",),
          "Unresolved": ("unresolved within noise", "unresolved (one seed)", "unresolved (one repeat)"),
          "Not run yet": ("not run",)}


def efficiency_verdicts_markdown(results: list[dict]) -> str:
    """Table 3's claims as Markdown lines (see :func:`efficiency_verdicts`)."""
    frame = efficiency_verdicts(results)
    if frame.empty:
        return "No bench result compares a one-stage with a two-stage model: Table 3's claims cannot be judged."
    lines = ["**The paper's claims, judged** (counts are exact; times by the noise rule over the repeats: "
             f"{NOISE_RULE}):", ""]
    for _, r in frame.iterrows():
        p = f", p = {r['p']:.3g}" if math.isfinite(r["p"]) else ""
        lines.append(f"- **{r['verdict']}**: {r['claim']} ({r['metric']}: two-stage {r['higher value']} vs one-stage "
                     f"{r['lower value']}{p}). *{r['source']}.*")
    return "\n".join(lines)


def _bench_results(profile: str, results_dir: Any) -> list[dict]:
    from .results import load_results

    results, _ = load_results(results_dir, profile, "bench")
    return [r for r in results if r.get("methods")]


def claims_overview(profile: str = "mini", results_dir: Any = "results", quick: bool = False) -> pd.DataFrame:
    """Every table's claims with their verdicts, for the results overview (column ``table`` added; column ``fit``
    names a compared row that the fit check (:func:`~zegclip.experiments.report.tables.fit_check`) found unfitted)."""
    frames = []
    for table in _claims_yaml():
        rows_of = JUDGED_ON.get(table, table)
        frame = verdicts(table_report(rows_of, profile, results_dir, quick=quick), table,
                         fit_for(rows_of, profile, results_dir, quick))
        frame.insert(0, "table", table)
        frames.append(frame)
    if not quick:
        frame = efficiency_verdicts(_bench_results(profile, results_dir))
        frame.insert(0, "table", "table3")
        frames.insert(1, frame)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    frame["fit"] = frame["fit"].fillna("") if "fit" in frame else ""  # the bench's claims have no training
    return frame


def _run_links(ids: Any) -> str:
    ids = list(ids) if isinstance(ids, (list, tuple)) else []
    return " ".join(f"{{doc}}`{_seed(r)} </book/generated/runs/{r}>`" for r in ids) or "—"


def _seed(run_id: str) -> str:
    tail = run_id.removesuffix("-quick").rsplit("-", 1)[-1]
    return tail if tail.startswith("s") and tail[1:].isdigit() else run_id


def claims_page(profile: str = "mini", results_dir: Any = "results", quick: bool = False) -> str:
    """MyST Markdown of the claims overview (``book/generated/claims.md``, included by the results page): a count
    per verdict, then the claims grouped as reproduced, not reproduced, unresolved and not run, each row linking its
    table's page and the run pages behind both of its rows (one link per seed)."""
    frame = claims_overview(profile, results_dir, quick)
    counts = frame["verdict"].value_counts() if not frame.empty else pd.Series(dtype=int)
    summary = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS)
    lines = [f"Profile `{profile}`{' (quick runs)' if quick else ''}: {len(frame)} claims; {summary}. "
             f"The noise rule: {NOISE_RULE}.", ""]
    unfit = int(frame["fit"].fillna("").astype(bool).sum()) if "fit" in frame else 0
    if unfit:
        lines += [f"⚠ {unfit} of these verdicts compare a row that the common recipe did not fit (the fit check: "
                  f"{FIT_RULE}); they are marked below, and they measure that failure to optimise as much as the "
                  f"design the claim is about.", ""]
    if profile == "mini":
        lines += ["Every claim compares rows that the mini world measures (Table 3's on the full-size models with "
                  "random weights, whose speed does not depend on them), so none is out of its reach; what the mini "
                  "world cannot say is how large an effect is on the real benchmarks.", ""]
    for title, members in GROUPS.items():
        part = frame[frame["verdict"].isin(members)] if not frame.empty else frame
        lines += [f"### {title} ({len(part)})", ""]
        if part.empty:
            lines += ["None.", ""]
            continue
        lines += ["| table | claim | verdict | measured (mean ± std, n seeds) | runs (higher row / lower row) |",
                  "|---|---|---|---|---|"]
        for _, r in part.iterrows():
            way = f"<br>means {r['direction']}" if r["verdict"] == "unresolved (one seed)" else ""
            way += f"<br>⚠ {r['fit']}" if isinstance(r.get("fit"), str) and r["fit"] else ""
            runs = f"{_run_links(r.get('higher runs'))} / {_run_links(r.get('lower runs'))}" \
                if isinstance(r.get("higher runs"), list) else "the bench record"
            lines.append(f"| {{doc}}`{r['table']} </book/generated/{r['table']}>` | {r['claim']} | **{r['verdict']}**{way} | "
                         f"{r['metric']}<br>{r['higher value']}<br>vs {r['lower value']} | {runs} |")
        lines.append("")
    return "\n".join(lines)


__all__ = ["claims", "verdict", "verdicts", "verdicts_markdown", "claims_overview", "claims_page", "GROUPS",
           "efficiency_verdicts", "efficiency_verdicts_markdown", "welch_p", "ALPHA", "NOISE_RULE",
           "VERDICTS", "FIT_RULE"]
