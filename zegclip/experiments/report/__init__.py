"""Report layer: read result JSONs, aggregate seeds, put the paper's numbers beside, draw the figures.

The report notebooks (``notebooks/table*.ipynb``, ``figure*.ipynb``) only call this package::

    rep = table_report("table5", profile="mini", results_dir="results")
    rep.show()                      # status line, problems, reproduced "mean ± std" beside the paper's numbers
    rep.numeric                     # the same as numbers (mean, std, n per metric), for plots

Which runs a table reads comes from the experiment registry (:func:`zegclip.experiments.registry.runs_for`). Runs whose
parameters differ only in ``seed`` form one row: mean and sample standard deviation (``n - 1``) over the seeds
that have a result, with ``n`` shown. A result file that is not valid JSON, is not a zegclip result, or was made with
other parameters than the registry's is reported in ``problems`` and never averaged. A profile without results
says so (``not run``) and never shows a number that was not measured.

Modules (imports point down this list, never up):

    runpages.py         a book page per run and the runs index (configuration, curves, machine, rerun command)
    claims.py           the paper's claims (``claims.yaml``) and their verdicts by the stated noise rule
    figures.py          seaborn/matplotlib figures (Figures 1, 4, 5, bars beside the paper) and Figure 4's sample rows
    tables.py           aggregation over seeds, formatting, :class:`Report` / :func:`table_report`, per-class IoU, glue
    paper.py            the paper's numbers (``paper_numbers.yaml``) and the paper row matching a reproduced row
    results.py          finding, reading and validating result JSONs; registry entries; matching results to runs
    paper_numbers.yaml  the paper's tables as printed
"""
from __future__ import annotations

from ...engine.results import METRICS, REQUIRED  # noqa: F401  (METRICS, REQUIRED re-exported)
from .alignment import advantage_frame, alignment_frame, plot_alignment
from .claims import NOISE_RULE, claims_overview, efficiency_verdicts_markdown, verdicts, verdicts_markdown
from .figures import (PICK_RULE, pick_samples, plot_ablation, plot_per_class, plot_samples, plot_training_curves,
                      plot_vs_paper, sample_grid)
from .paper import PAPER_DATASET, paper_frame, paper_numbers, paper_table
from .results import datasets_of, effective_params, entries_for, load_results, not_run_note, world_mismatch
from .tables import (FIT_RULE, REPORT_TABLES, TABLE_METRICS, Report, aggregate, fit_check, fit_for, fmt, format_frame, glue,
                     loss_summary, per_class_frame, table_report, training_curves, unseen_gain)

__all__ = [
    "METRICS", "TABLE_METRICS", "REPORT_TABLES", "Report", "load_results", "paper_numbers", "paper_frame",
    "paper_table", "entries_for", "aggregate", "fmt", "format_frame", "not_run_note", "table_report",
    "per_class_frame", "sample_grid", "effective_params", "datasets_of", "unseen_gain", "plot_ablation",
    "plot_vs_paper", "plot_per_class", "plot_samples", "pick_samples", "PICK_RULE", "glue", "PAPER_DATASET", "world_mismatch",
    "verdicts", "verdicts_markdown", "alignment_frame", "plot_alignment", "advantage_frame", "claims_overview", "NOISE_RULE", "efficiency_verdicts_markdown",
    "training_curves", "loss_summary", "plot_training_curves", "fit_check", "fit_for", "FIT_RULE",
]
