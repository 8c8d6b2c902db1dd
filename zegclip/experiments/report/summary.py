"""The book's front-page summary (``book/generated/summary.md``, included by ``book/index.md``): three lines on what
the measured world reproduces and what it does not, with the numbers, written by ``python -m zegclip reproduce``
from the same results as every other page.

1. the instrument: the mini world's controls (``<results>/mini/calibration/controls-<preset>.json``), passed of total;
2. the verdict count over every claim of the paper (:func:`.claims.claims_overview`) and the reproduced ones;
3. the rows the paper's argument rests on: Table 5's ZegCLIP against Baseline-Fix, hIoU (mean ± std, n), per half.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .results import _resolve


def _controls(results_dir: Path) -> list[dict]:
    folder = results_dir / "mini" / "calibration"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("controls-*.json"))] if folder.is_dir() else []


def summary_lines(profile: str = "mini", results_dir: Any = "results", quick: bool = False) -> list[str]:
    """The three lines (Markdown) of the front-page summary of ``profile``'s results."""
    from .claims import claims_overview
    from .tables import table_report

    resolved = _resolve(results_dir)
    lines = []
    if profile == "mini":
        parts = []
        for record in _controls(resolved):
            failed = [c["control"].split(":")[0] for c in record["controls"] if c["result"] == "FAIL"]
            parts.append(f"{record['preset']} {record['passed']} of {record['total']} pass ({record['seeds']} seeds"
                         + (f"; failing: control {', '.join(failed)}" if failed else "") + ")")
        lines.append("**The instrument.** The mini world's controls: " + ("; ".join(parts) if parts else
                     "not measured yet (`python -m zegclip mini controls`)") + ". See {doc}`generated/calibration`.")
    else:
        lines.append(f"**The instrument.** Profile `{profile}`: the paper's own datasets and CLIP weights.")
    frame = claims_overview(profile, resolved, quick)
    if frame.empty:
        lines.append("**The claims.** None judged yet.")
    else:
        counts = frame["verdict"].value_counts()
        judged = ", ".join(f"{int(n)} {v}" for v, n in counts.items())
        shown = [f"{c} ({t})" for c, t in zip(frame.loc[frame["verdict"] == "reproduced", "claim"],
                                               frame.loc[frame["verdict"] == "reproduced", "table"])]
        unfit = int(frame["fit"].astype(bool).sum()) if "fit" in frame else 0
        judged += (f"; {unfit} of these verdicts compare a row that the common recipe did not fit (see the fit check "
                   f"on the results pages)") if unfit else ""
        lines.append(f"**The claims.** Of the paper's {len(frame)} claims, judged by the noise rule: {judged}."
                     + (f" Reproduced: {'; '.join(shown[:4])}{' and more' if len(shown) > 4 else ''}." if shown else "")
                     + " See {doc}`results`.")
    rep = table_report("table5", profile, resolved, quick=quick)
    rows = []
    for dataset in dict.fromkeys(rep.numeric["dataset"]):
        half = rep.part(dataset=dataset)
        zeg, fix = half.value("hIoU", variant="DPT+NEL+RD"), half.value("hIoU", variant="Fix")
        paper = half.row(variant="DPT+NEL+RD")
        rows.append(f"{dataset}: ZegCLIP {zeg} vs Baseline-Fix {fix}"
                    + (f" (paper {paper['paper hIoU']:.1f} vs {half.row(variant='Fix')['paper hIoU']:.1f})"
                       if paper is not None and paper["paper hIoU"] == paper["paper hIoU"] else ""))
    lines.append("**The main rows.** Table 5, inductive hIoU (mean ± std over seeds): " + "; ".join(rows)
                 + ". See {doc}`generated/table5`.")
    return lines


def summary_page(profile: str = "mini", results_dir: Any = "results", quick: bool = False) -> str:
    """MyST Markdown of the front-page summary (``book/generated/summary.md``)."""
    head = f"Profile `{profile}`{' (quick runs: they measure nothing)' if quick else ''}, as of this build:"
    return head + "\n\n" + "\n".join(f"- {line}" for line in summary_lines(profile, results_dir, quick)) + "\n"
