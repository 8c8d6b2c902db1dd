"""Batch reproduction: every registry entry of a profile executed with papermill, then the report notebooks.

Data flows one way::

    notebooks/registry.yaml --expand--> entries --papermill notebooks/run.ipynb--> results/<profile>/runs/<id>.json
    results/ --papermill notebooks/table*.ipynb, figure*.ipynb--> book/generated/*.ipynb --jupyter-book--> _build/html

``python -m zegclip reproduce --profile mini`` does both phases. A run is skipped when its result JSON exists and
holds the same parameters and the same resolved configuration; a failed run is recorded (its executed notebook
kept under ``results/<profile>/failed/``) and the others go on; rerunning finishes what is missing.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ..engine.checkpoint import write_json_atomic
from .project import generated_dir, notebooks_dir
from .registry import LEARN, REPORTS, Entry, expand, notebook_parameters
from .runs import is_done, runs_root_for, training_dirs


def _ipc_kernel_manager():
    """A jupyter_client kernel manager whose kernels talk over IPC (Unix sockets in the Jupyter runtime folder,
    beside the connection file) instead of TCP ports. ipykernel warns at every start that a TCP kernel without
    CurveZMQ keys sends everything in plain text; a local batch job needs no network socket, so the cause goes."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            # One socket prefix per kernel, in the runtime folder. jupyter_client's default is "kernel-ipc" in the
            # working directory whenever no connection file is named yet (papermill names none), and it numbers the
            # sockets by the first free names: two kernels started at once (`reproduce --jobs 2`) took the same
            # sockets and read each other's messages ("Invalid Signature", "Kernel didn't respond in 60 seconds").
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True)
            return str(runtime / f"zegclip-{uuid.uuid4().hex[:12]}-ipc")

    return IPCKernelManager


def execute_notebook(source: Path, output: Path, parameters: dict, cwd: Path | None = None) -> None:
    """Run a notebook with papermill (kernel: this Python, over IPC), writing the executed copy to ``output``."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=_kernel_name(),
                                   progress_bar=False, cwd=str(cwd or Path.cwd()), log_output=False,
                                   kernel_manager_class=_ipc_kernel_manager())
    finally:
        if output.is_file():
            _hide_injected(output)


def _hide_injected(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so that the book does not render it."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            changed = True
    if changed:
        from ..io import atomic_path

        with atomic_path(path) as tmp:
            nbformat.write(nb, str(tmp))


def _kernel_name() -> str:
    """A kernelspec that runs this interpreter (installed once per environment, user-level)."""
    name = "zegclip-python"
    spec_dir = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
    kernel_json = spec_dir / "kernel.json"
    want = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (zegclip)", "language": "python"}
    if not kernel_json.is_file() or json.loads(kernel_json.read_text()) != want:
        spec_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(kernel_json, want)
    return name


def entries_of(profile: str, only: Iterable[str] | None = None, registry: str | Path | None = None,
               quick: bool = False, data_root: str | Path | None = None, weights: str | None = None) -> list[Entry]:
    """The registry entries that ``reproduce`` executes: ``quick`` gives the ``-quick`` entries (never mixed with
    real results); ``data_root`` / ``weights`` replace the run parameters of the same names (``--data-root``,
    ``--weights``; the registry's paper default is ``data_root: data``)."""
    entries = expand(profile, only, registry, quick)
    extra = {k: str(v) for k, v in (("data_root", data_root), ("weights", weights)) if v is not None}
    return [Entry(e.id, e.notebook, {**e.params, **extra}, e.tables) if extra and e.notebook == "run" else e
            for e in entries]


def reproduce(profile: str = "mini", only: Iterable[str] | None = None, jobs: int = 1, results_dir: str | Path = "results",
              runs_only: bool = False, reports_only: bool = False, force: bool = False, quick: bool = False,
              generated: str | Path | None = None, registry: str | Path | None = None,
              data_root: str | Path | None = None, weights: str | None = None) -> dict:
    """Execute the registry's runs for ``profile`` (skipping finished ones), then its report notebooks.

    ``quick``: tiny runs under ``<id>-quick`` ids (mini: a random mini-CLIP; paper: a random ViT-B/16 on 64-px
    crops, :data:`zegclip.experiments.runs.QUICK_PAPER`), report notebooks that read only those (unless
    ``reports_only``: then they read the real results) and a tiny walkthrough.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    entries = entries_of(profile, only, registry, quick, data_root, weights)
    results_dir = Path(results_dir)
    summary: dict[str, Any] = {"profile": profile, "ran": [], "skipped": [], "failed": {}, "reports": {}}
    if not reports_only:
        todo = []
        for e in entries:
            if not force and is_done(e, results_dir):
                summary["skipped"].append(e.id)
            else:
                todo.append(e)
        if todo and profile == "mini" and not quick:
            from ..mini.experiments import pretrain_config
            from ..mini.miniclip import ensure_mini_clip

            # once, in this process with every core, before the runs start: the packaged mini-CLIP and those of
            # the alignment study's runs (one at a time: two pretrainings side by side oversubscribe the cores)
            for alignment in dict.fromkeys([None] + [e.params.get("alignment") for e in todo if e.notebook == "run"]):
                ensure_mini_clip(pretrain_config(alignment))
        # runs side by side share the cores (their kernels inherit this); only while runs execute, so that the
        # report notebooks and the walkthrough get every core again
        threads_before = os.environ.get("OMP_NUM_THREADS")
        if jobs > 1 and todo and threads_before is None:
            os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // jobs))
        bar = tqdm(total=len(todo), desc=f"reproduce {profile}", unit="run", dynamic_ncols=True)
        # entries that train the same run directory wait for each other (one lock per directory, taken in sorted
        # order); otherwise the second trainer fails on the directory's lock file
        shared = {e.id: training_dirs(e.params, runs_root_for(results_dir)) if e.notebook == "run" else [] for e in todo}
        locks = {d: threading.Lock() for dirs in shared.values() for d in dirs}

        def one(e: Entry):
            with contextlib.ExitStack() as held:
                for d in shared[e.id]:
                    held.enter_context(locks[d])
                t0 = time.perf_counter()
                err = _run_entry(e, results_dir, force)
            return e, err, time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for e, err, seconds in pool.map(one, todo):
                if err:
                    summary["failed"][e.id] = err
                    tqdm.write(f"FAILED {e.id}: {err}")
                else:
                    summary["ran"].append(e.id)
                bar.set_postfix(last=f"{e.id} {seconds:.0f}s")
                bar.update(1)
        bar.close()
        if threads_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    if not runs_only:
        generated = Path(generated) if generated is not None else generated_dir()
        tables = [t for t in REPORTS if not only or t in set(only)]
        learn = [] if only else list(LEARN)
        if learn and profile == "mini" and not quick:
            from ..mini.miniclip import ensure_mini_clip

            # the walkthrough builds a mini model: pretrain here (all cores, a progress bar in the terminal) rather
            # than silently inside its kernel, where `--jobs` may have left one thread
            ensure_mini_clip()
        for name in tables + learn:
            source = notebooks_dir() / f"{name}.ipynb"
            if not source.is_file():
                summary["reports"][name] = "missing"
                print(f"notebook {name:<12}      -  missing", flush=True)
                continue
            params = {"profile": profile, "results_dir": str(results_dir)} if name in REPORTS else {"profile": profile}
            declared = notebook_parameters(source)
            # --quick: the walkthrough goes tiny; the reports read the -quick results that this command's runs made,
            # but with --reports-only they keep reading the real ones (the book's build: real tables, tiny walkthrough)
            if quick and "quick" in declared and (name in LEARN or not reports_only):
                params["quick"] = True
            if weights is not None and "weights" in declared:
                params["weights"] = str(weights)
            t0 = time.perf_counter()
            try:
                execute_notebook(source, Path(generated) / f"{name}.ipynb", params)
                summary["reports"][name] = "ok"
            except Exception as exc:  # noqa: BLE001 - recorded, the others go on
                summary["reports"][name] = f"failed: {_one_line(exc)}"
                summary["failed"][name] = summary["reports"][name]
            print(f"notebook {name:<12} {time.perf_counter() - t0:5.0f}s  {summary['reports'][name]}", flush=True)
        if not only or tables:
            from .report.runpages import write_run_pages

            # a page per run and the runs index, after the notebooks (the index lists their execution times)
            t0 = time.perf_counter()
            pages = write_run_pages(profile, results_dir, generated, quick=quick and not reports_only,
                                    registry=registry)
            from ..io import write_text_atomic
            from .report.claims import claims_page

            # the claims of every table with their verdicts, included by the book's results page
            write_text_atomic(Path(generated) / "claims.md",
                              claims_page(profile, results_dir, quick=quick and not reports_only))
            from .report.summary import summary_page

            # three lines for the front page: controls, the verdict count, the main rows
            write_text_atomic(Path(generated) / "summary.md",
                              summary_page(profile, results_dir, quick=quick and not reports_only))
            summary["run_pages"] = len(pages)  # not a notebook: apart from summary["reports"]
            print(f"{'run pages':<21} {time.perf_counter() - t0:5.0f}s  ok ({len(pages)} run pages and the claims)",
                  flush=True)
    write_json_atomic(results_dir / profile / "reproduce.json", {**summary, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return summary


def _run_entry(entry: Entry, results_dir: Path, force: bool) -> str | None:
    """Execute one registry entry's notebook; on failure keep the executed notebook and return the error line."""
    profile_dir = results_dir / entry.params["profile"]
    failed_nb = profile_dir / "failed" / f"{entry.id}.ipynb"
    out = runs_root_for(results_dir) / entry.params["profile"] / "notebooks" / f"{entry.id}.ipynb"
    params = {**entry.params, "results_dir": str(results_dir), "run_id": entry.id}
    if entry.notebook == "run":
        params["force"] = force
    try:
        execute_notebook(notebooks_dir() / f"{entry.notebook}.ipynb", out, params)
    except Exception as exc:  # noqa: BLE001 - papermill raises PapermillExecutionError and kernel errors
        failed_nb.parent.mkdir(parents=True, exist_ok=True)
        if out.is_file():
            os.replace(out, failed_nb)
        return _one_line(exc)
    if failed_nb.is_file():
        failed_nb.unlink()
    if not entry.result_path(results_dir).is_file():
        return f"notebook finished but wrote no {entry.result_path(results_dir)}"
    return None


def _one_line(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


def status(profile: str, results_dir: str | Path = "results", only=None, quick: bool = False,
           data_root: str | Path | None = None, weights: str | None = None) -> list[tuple[str, str | None]]:
    """(id, why it has to run or None when done) for every entry that :func:`reproduce` with the same arguments
    would execute (:func:`zegclip.experiments.runs.why_not_done`)."""
    from .runs import why_not_done

    return [(e.id, why_not_done(e, results_dir)) for e in entries_of(profile, only, None, quick, data_root, weights)]


__all__ = ["reproduce", "status", "execute_notebook"]
