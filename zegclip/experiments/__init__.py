"""The companion: everything that turns runs into the paper's tables, figures and book.

It is the only code that knows about notebooks and the book; it finds them from the project root (the working
directory, its parents, or ``$ZEGCLIP_PROJECT``), never from ``__file__``.

    reproduce.py  the registry of runs, one run with its samples, batch execution with papermill
    report.py     results, paper numbers, tables and figures for the notebooks
    controls.py   the mini world's five controls
    bench.py      Table 3: parameters, MACs, FPS, memory
    efficiency.py MAC counting, timing and memory helpers
    twostage.py   the two-stage (ZegFormer-structure) comparator
"""
