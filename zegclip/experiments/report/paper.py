"""The paper's numbers (``paper_numbers.yaml`` beside this module) and the paper row that matches a reproduced row."""
from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Iterable

import pandas as pd
import yaml

# the paper's dataset behind each dataset of a profile (the mini world's stand-ins included)
PAPER_DATASET = {"voc": "voc", "coco": "coco", "context": "context",
                 "mini-voc": "voc", "mini-coco": "coco", "mini-voc-b": "voc"}


# ------------------------------------------------------------------------------------------- paper numbers
@lru_cache(maxsize=1)
def _paper_yaml() -> dict:
    import importlib.resources

    path = importlib.resources.files("zegclip.experiments.report") / "paper_numbers.yaml"
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
    if key not in _paper_yaml():  # our own studies (alignment): nothing of the paper to set beside them
        return {}, ""
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
