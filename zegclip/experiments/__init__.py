"""The companion: everything that turns runs into the paper's tables, figures and book.

It is the only code that knows about notebooks and the book; it finds them from the project root (the working
directory, its parents, or ``$ZEGCLIP_PROJECT``), never from ``__file__``.

    project.py    the project root (notebooks/, book/generated/), found from the working directory
    registry.py   the registry of runs (notebooks/registry.yaml): run parameters, run ids, entries per profile
    runs.py       one run: its run file, training and evaluation, sample PNGs, whether it is done
    batch.py      batch execution with papermill: ``python -m zegclip reproduce`` and its status
    report/       results, paper numbers, tables and figures for the notebooks
    controls.py   the mini world's five controls
    bench/        Table 3 (parameters, MACs, FPS, memory), the GPU check, the one MAC counter and the two-stage
                  (ZegFormer-structure) comparator
"""
