"""The experiment registry (``notebooks/registry.yaml``): its profiles and report notebooks, the run parameters in
canonical form, run ids, and the expansion of a profile into its distinct entries (one per run).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .project import notebooks_dir

PROFILES = ("mini", "paper")

# Parameters of notebooks/run.ipynb (its `parameters` cell holds the same names and defaults; a test checks it).
RUN_DEFAULTS: dict[str, Any] = {
    "profile": "mini",
    "dataset": "mini-voc",  # training preset/dataset: mini-voc, mini-coco, voc, coco, context
    "setting": "inductive",  # inductive | transductive (self-training, official †) | fully
    "self_training": None,  # transductive only: None/"dagger" (official †: unseen-GT pixels) or "all" (every unlabelled pixel)
    "variant": "DPT+NEL+RD",  # a Table 5 variant; DPT+NEL+RD is ZegCLIP
    "query_format": None,  # one of the 12 formats of Table 4 (None: the variant's own)
    "loss": None,  # el | plain | plus (None: the variant's own)
    "seed": 0,
    "iters": None,  # None: the profile's schedule
    "eval_dataset": None,  # cross-dataset evaluation (Table 7): evaluate the trained model on this dataset
    "negative_control": False,  # evaluate with the unseen classes' text embeddings replaced by random unit vectors
    "data_root": None,  # paper profile: folder holding VOCdevkit/, coco_stuff164k/, VOCdevkit/VOC2010 (Context)
    "weights": None,  # paper profile: CLIP ViT-B/16 weights file (or $ZEGCLIP_CLIP_WEIGHTS)
    "samples": 0,  # evaluation images whose prediction is saved as PNG (Figure 4)
    "quick": False,  # a few iterations with a random mini-CLIP: for tests
    "alignment": None,  # mini profile: the mini-CLIP's alignment dial (None: the packaged one; the alignment study)
}
# The type of every run parameter (registry values are converted and checked against these, as run files are).
RUN_TYPES: dict[str, Any] = {
    "profile": str, "dataset": str, "setting": str, "self_training": str | None, "variant": str,
    "query_format": str | None, "loss": str | None, "seed": int, "iters": int | None, "eval_dataset": str | None,
    "negative_control": bool, "data_root": str | None, "weights": str | None, "samples": int, "quick": bool,
    "alignment": float | None,
}
REPORTS = ("calibration", "table2", "table3", "table4", "table5", "table6", "table7", "figure1", "figure4", "figure5",
           "alignment")
LEARN = ("walkthrough",)


@dataclass(frozen=True)
class Entry:
    """One distinct run of the registry: a notebook and its complete parameters."""

    id: str
    notebook: str
    params: dict = field(hash=False)
    tables: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "runs" if self.notebook == "run" else self.notebook

    def result_path(self, results_dir: str | Path = "results") -> Path:
        return Path(results_dir) / self.params["profile"] / self.kind / f"{self.id}.json"


def load_registry(path: str | Path | None = None) -> dict:
    """Read and validate the registry YAML (default ``notebooks/registry.yaml``)."""
    path = Path(path) if path else notebooks_dir() / "registry.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"experiment registry not found: {path}")
    try:
        reg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(reg, dict) or not isinstance(reg.get("profiles"), dict) or not isinstance(reg.get("groups"), dict):
        raise ValueError(f"{path}: a registry needs `profiles` and `groups` mappings")
    for profile, groups in reg["groups"].items():
        if profile not in reg["profiles"]:
            raise ValueError(f"{path}: groups for unknown profile {profile!r}")
        for i, group in enumerate(groups or []):
            where = f"{path}: groups.{profile}[{i}]"
            unknown = sorted(set(group) - {"tables", "matrix", "params", "notebook"})
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}")
            tables = group.get("tables") or []
            bad = [t for t in tables if t not in REPORTS]
            if bad or not tables:
                raise ValueError(f"{where}: tables {bad or tables} not among {list(REPORTS)}")
            names = set((group.get("matrix") or {})) | set((group.get("params") or {}))
            known = _known_params(group.get("notebook", "run"))
            if known is not None and names - set(known):
                raise ValueError(f"{where}: unknown parameter(s) {sorted(names - set(known))}; known: {sorted(known)}")
            for key, values in (group.get("matrix") or {}).items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{where}: matrix.{key} must be a non-empty list")
    reg["_path"] = str(path)
    return reg


def _known_params(notebook: str) -> Iterable[str] | None:
    if notebook == "run":
        return RUN_DEFAULTS
    path = notebooks_dir() / f"{notebook}.ipynb"
    if not path.is_file():
        raise ValueError(f"registry names notebook {notebook!r}, but {path} does not exist")
    return [k for k in notebook_parameters(path) if k != "results_dir"]  # run_id: the entry's id


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default values of a notebook's `parameters` cell (papermill's reading of it)."""
    import papermill

    params = papermill.inspect_notebook(str(path))
    out = {}
    for name, spec in params.items():
        try:
            out[name] = eval(spec["default"], {}, {})  # literals written by us; papermill gives their source text
        except Exception:  # noqa: BLE001 - a non-literal default: keep its source text
            out[name] = spec["default"]
    return out


def _slug(text: str) -> str:
    table = {"*": "x", "+": "p", "-": "m", ",": "_", "|": "a", "[": "", "]": "", " ": "", "⊙": "x"}
    return "".join(table.get(ch, ch) for ch in str(text)).lower()


def normalise_params(params: dict) -> dict:
    """Parameters in canonical form, so that equal runs get equal ids.

    The variant name carries what it fixes: RD means "a query format other than ``t``", NEL means the ``plus`` loss.
    So ``DPT+NEL+RD`` with format ``t`` is ``DPT+NEL``, and a variant's own format/loss becomes ``None``.
    """
    from ..model.presets import variant_overrides
    from ..model.queries import DEFAULT_QUERY_FORMAT, canonical_format

    p = {**RUN_DEFAULTS, **params}
    unknown = sorted(set(p) - set(RUN_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown run parameter(s) {unknown}; known: {sorted(RUN_DEFAULTS)}")
    from ..typed import ConfigError, convert

    p = {k: convert(v, RUN_TYPES[k], f"run parameter {k}") for k, v in p.items()}
    for key, low in (("seed", 0), ("iters", 1), ("samples", 0)):
        if p[key] is not None and p[key] < low:
            raise ConfigError(f"run parameter {key}: {p[key]} is below the minimum {low}")
    if p["setting"] not in ("inductive", "transductive", "fully"):
        raise ValueError(f"unknown setting {p['setting']!r}; use inductive, transductive or fully")
    if p["loss"] is not None and p["loss"] not in ("el", "plain", "plus"):
        raise ValueError(f"unknown loss {p['loss']!r}; use el, plain or plus")
    if p["self_training"] not in (None, "dagger", "all"):
        raise ValueError(f"unknown self_training {p['self_training']!r}; use dagger (official) or all")
    if p["self_training"] is not None and p["setting"] != "transductive":
        raise ValueError(f"self_training={p['self_training']!r} needs setting=transductive, not {p['setting']!r}")
    p["self_training"] = None if p["self_training"] == "dagger" else p["self_training"]
    if p["alignment"] is not None:
        if p["profile"] != "mini":
            raise ValueError(f"run parameter alignment={p['alignment']!r} is a dial of the mini-CLIP: mini profile only")
        if p["alignment"] < 0:
            raise ConfigError(f"run parameter alignment: {p['alignment']} is below the minimum 0")
        from ..mini.miniclip import PretrainConfig

        if p["alignment"] == PretrainConfig().alignment:  # the packaged mini-CLIP: the same run as without the dial
            p["alignment"] = None
    own = variant_overrides(p["variant"])  # validates the name
    encoder = own["encoder"]["mode"]
    fmt = canonical_format(p["query_format"]) if p["query_format"] is not None else own["query_format"]
    loss = p["loss"] or own["loss"]["kind"]
    name = {"fix": "Fix", "ft": "FT", "dpt": "DPT"}[encoder] + ("+NEL" if loss == "plus" else "") + \
        ("+RD" if fmt != "t" else "")
    p["variant"] = name
    p["query_format"] = None if fmt in ("t", DEFAULT_QUERY_FORMAT) else fmt
    p["loss"] = None if loss in ("plus", "el") else loss
    if p["loss"] == "plain" and "+NEL" not in name:  # plain sigmoid loss: record it on the NEL spelling
        p["variant"] = name.replace(("+RD" if "+RD" in name else "@"), "+NEL+RD") if "+RD" in name else name + "+NEL"
    return p


def run_id(params: dict) -> str:
    """A readable id from the parameters that change a run's result, e.g. ``mini-voc-dpt-nel-rd-inductive-s0``."""
    p = normalise_params(params)
    parts = [p["dataset"], p["variant"].lower().replace("+", "-"), p["setting"]]
    if p["self_training"]:
        parts.append("st-" + p["self_training"])
    if p["query_format"] is not None:
        parts.append("q" + _slug(p["query_format"]))
    if p["loss"] is not None:
        parts.append(p["loss"])
    if p["iters"] is not None:
        parts.append(f"i{p['iters']}")
    if p["eval_dataset"]:
        parts.append("to-" + p["eval_dataset"])
    if p["negative_control"]:
        parts.append("random-unseen-text")
    if p["alignment"] is not None:
        parts.append("align" + f"{p['alignment']:g}".replace(".", "p"))  # align0p003: no dot in file names
    parts.append(f"s{p['seed']}")
    return "-".join(parts)


def quick_entry(entry: Entry) -> Entry:
    """The ``--quick`` counterpart of an entry: id ``<id>-quick`` and ``quick=True`` (tiny runs with random weights,
    for tests), so that its result never mixes with the real run's."""
    return Entry(entry.id + "-quick", entry.notebook, {**entry.params, "quick": True}, entry.tables)


def expand(profile: str, only: Iterable[str] | None = None, registry: dict | str | Path | None = None,
           quick: bool = False) -> list[Entry]:
    """The distinct runs of ``profile`` (optionally only those read by the tables in ``only``, or named there by
    run id), in registry order; ``quick``: their :func:`quick_entry` counterparts."""
    reg = registry if isinstance(registry, dict) else load_registry(registry)
    if profile not in reg["profiles"]:
        raise ValueError(f"unknown profile {profile!r}; registry profiles: {sorted(reg['profiles'])}")
    only = set(only or ())
    defaults = dict(reg["profiles"][profile].get("defaults") or {})
    entries: dict[str, Entry] = {}
    for group in reg["groups"].get(profile) or []:  # all groups first: a run's params merge over every table
        tables = tuple(group["tables"])
        notebook = group.get("notebook", "run")
        matrix = group.get("matrix") or {}
        keys = list(matrix)
        for combo in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
            params = {"profile": profile, **(defaults if notebook == "run" else {}), **(group.get("params") or {}),
                      **dict(zip(keys, combo))}
            if notebook == "run":
                params = normalise_params(params)
                ident = run_id(params)
            else:
                params = {"profile": profile, **params}
                ident = params.pop("run_id", None) or notebook + "-" + "-".join(
                    _slug(f"{k}{v}") for k, v in sorted(params.items()) if k != "profile")
            if ident in entries:  # listed by several groups: one run serves them all
                old = entries[ident]
                merged = dict(old.params)
                if "samples" in merged:
                    merged["samples"] = max(merged["samples"], params.get("samples", 0))
                entries[ident] = Entry(ident, notebook, merged, tuple(dict.fromkeys(old.tables + tables)))
            else:
                entries[ident] = Entry(ident, notebook, params, tables)
    bad = only - set(REPORTS) - set(entries)
    if bad:
        raise ValueError(f"unknown table/figure or run id {sorted(bad)}; known tables/figures: {', '.join(REPORTS)}; "
                         f"run ids of profile {profile!r}: {', '.join(entries)}")
    return [quick_entry(e) if quick else e for e in entries.values()
            if not only or only & set(e.tables) or e.id in only]


def runs_for(profile: str, table: str, registry: dict | str | Path | None = None, quick: bool = False) -> list[Entry]:
    """The registry entries that the table/figure ``table`` reads (``quick``: their ``-quick`` counterparts)."""
    return [e for e in expand(profile, [table], registry, quick) if table in e.tables]


__all__ = ["Entry", "load_registry", "notebook_parameters", "normalise_params", "run_id", "expand", "runs_for",
           "quick_entry", "PROFILES", "RUN_DEFAULTS", "RUN_TYPES", "REPORTS", "LEARN"]
