"""Finding, reading and validating result JSONs, and matching them to the experiment registry's runs.

A result file that is not valid JSON, is not a zegclip result (:func:`zegclip.engine.results.result_problem`), was
measured in another mini world or with other parameters than the registry's is reported as a problem line and never
used. Runs whose parameters differ only in ``NOT_IN_KEY`` names (the seed ...) share one :func:`_key`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from ...engine.results import result_problem

# parameters that do not make a run different (grouping ignores them; so does the staleness check)
NOT_IN_KEY = ("seed", "samples", "data_root", "weights", "results_dir", "run_id", "profile")


# ------------------------------------------------------------------------------------------------ reading
def _project() -> Path | None:
    from ..project import project_root

    try:
        return project_root()
    except FileNotFoundError:
        return None


def _resolve(results_dir: str | Path) -> Path:
    """``results_dir`` as given, or under the project root (the checkout found from the working directory, see
    :func:`zegclip.experiments.project.project_root`) when a relative path is not found here: notebooks run from their folder."""
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


# --------------------------------------------------------------------------------------------- registry
def entries_for(profile: str, table: str, registry: Any = None, quick: bool = False) -> list:
    """The registry entries a table/figure reads (``zegclip.experiments.registry.runs_for``); ``quick``: their
    ``-quick`` counterparts (the runs of ``reproduce --quick``), which a report never mixes with real runs."""
    from ..registry import runs_for

    return runs_for(profile, table, registry, quick)


def _entries(profile: str, table: str, registry: Any, quick: bool = False) -> tuple[list, str | None]:
    """Registry entries of ``table`` and, when there are none, the line that says why."""
    try:
        entries = entries_for(profile, table, registry, quick)
    except (ValueError, FileNotFoundError) as exc:
        return [], f"profile `{profile}`: no registry entries ({str(exc).splitlines()[0]})"
    if not entries:
        return [], f"profile `{profile}`: notebooks/registry.yaml lists no runs for {table}"
    return entries, None


def datasets_of(profile: str, table: str, registry: Any = None) -> list[str]:
    """The training datasets of a table's registry runs, in registry order (empty when there are none)."""
    entries, _ = _entries(profile, table, registry)
    return list(dict.fromkeys(e.params.get("dataset") for e in entries))


def not_run_note(profile: str, table: str, quick: bool = False) -> str:
    """The line a report shows when ``profile`` has no results for ``table``."""
    shown, flag = (f"`{profile}` (quick)", " --quick") if quick else (f"`{profile}`", "")
    return f"profile {shown}: not run — python -m zegclip reproduce --profile {profile} --only {table}{flag}"


QUICK_NOTE = ("**Quick runs** (`reproduce --quick`): random weights, a few iterations on tiny inputs — these numbers "
              "test the pipeline and measure nothing.")


def effective_params(params: dict) -> dict:
    """Registry parameters with a variant's own query format and loss filled in (``None`` -> e.g. ``[t*g,t]``)."""
    from ...model.presets import variant_overrides

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
    from ...mini.render import GENERATOR_VERSION

    have = (data.get("options") or {}).get("generator")
    if have != GENERATOR_VERSION:
        return f"measured in mini-world generator version {have}, this package generates version {GENERATOR_VERSION}; skipped"
    if str(result.get("run", "")).endswith("-quick"):  # tests: random mini-CLIP weights
        return None
    from ...mini.experiments import pretrain_config
    from ...mini.miniclip import result_key

    want = pretrain_config((result.get("params") or {}).get("alignment")).key()  # the alignment study's own
    if result_key(result) != want:
        return f"measured with mini-CLIP {result_key(result)}, this run's is {want}; skipped"
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
