"""Class lists and seen/unseen splits for zero-shot segmentation benchmarks.

The splits are shipped as versioned JSON files under ``zegclip/data/splits``.
Class id ``k`` is the k-th name in ``classes``; the same index is the row of
the matching precomputed text-embedding file and the label id in the
(already reduced, if ``reduce_zero_label``) annotation maps.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClassSplit", "load_class_split", "available_splits", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_DATA_PACKAGE = "zegclip.data"  # the JSON files live in its "splits" folder
_REQUIRED_KEYS = (
    "name",
    "version",
    "classes",
    "unseen",
    "seen",
    "ignore_index",
    "reduce_zero_label",
    "source",
    "embedding_file",
)


def _as_int_tuple(values: Iterable[Any], what: str, name: str) -> tuple[int, ...]:
    out = []
    for v in values:
        # bool is an int subclass; reject it (and floats, strings) explicitly.
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"split {name!r}: {what} ids must be integers, got {v!r}")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class ClassSplit:
    """A class list together with its seen/unseen partition.

    ``seen`` and ``unseen`` hold class ids (indices into ``classes``); they are
    normalised to ascending order. Together they must cover every id exactly once.
    """

    name: str
    classes: tuple[str, ...]
    seen: tuple[int, ...]
    unseen: tuple[int, ...]
    ignore_index: int = 255
    reduce_zero_label: bool = False
    source: str = ""
    embedding_file: str | None = None

    def __post_init__(self) -> None:
        name = self.name
        if isinstance(self.classes, str):
            raise ValueError(f"split {name!r}: classes must be a sequence of names, not a single string")
        classes = tuple(self.classes)
        if not classes:
            raise ValueError(f"split {name!r}: class list is empty")
        for i, c in enumerate(classes):
            if not isinstance(c, str) or not c.strip():
                raise ValueError(f"split {name!r}: class name at id {i} is empty or not a string ({c!r})")
        counts: dict[str, list[int]] = {}
        for i, c in enumerate(classes):
            counts.setdefault(c, []).append(i)
        dups = {c: ids for c, ids in counts.items() if len(ids) > 1}
        if dups:
            desc = ", ".join(f"{c!r} at ids {ids}" for c, ids in dups.items())
            raise ValueError(f"split {name!r}: duplicate class names: {desc}")

        n = len(classes)
        seen = _as_int_tuple(self.seen, "seen", name)
        unseen = _as_int_tuple(self.unseen, "unseen", name)
        for what, ids in (("seen", seen), ("unseen", unseen)):
            bad = sorted({i for i in ids if not 0 <= i < n})
            if bad:
                raise ValueError(f"split {name!r}: {what} ids out of range [0, {n}): {bad}")
            rep = sorted({i for i in ids if ids.count(i) > 1})
            if rep:
                raise ValueError(f"split {name!r}: {what} ids listed more than once: {rep}")
        overlap = sorted(set(seen) & set(unseen))
        if overlap:
            raise ValueError(f"split {name!r}: ids are both seen and unseen: {overlap}")
        missing = sorted(set(range(n)) - set(seen) - set(unseen))
        if missing:
            raise ValueError(f"split {name!r}: seen and unseen do not cover all {n} classes; missing ids {missing}")
        if not seen:
            raise ValueError(f"split {name!r}: seen set is empty (at least one class must be seen)")
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int):
            raise ValueError(f"split {name!r}: ignore_index must be an integer, got {self.ignore_index!r}")
        if 0 <= self.ignore_index < n:
            raise ValueError(f"split {name!r}: ignore_index {self.ignore_index} collides with a class id (0..{n - 1})")

        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "seen", tuple(sorted(seen)))
        object.__setattr__(self, "unseen", tuple(sorted(unseen)))
        object.__setattr__(self, "reduce_zero_label", bool(self.reduce_zero_label))

    # ------------------------------------------------------------------ views
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_seen(self) -> int:
        return len(self.seen)

    @property
    def num_unseen(self) -> int:
        return len(self.unseen)

    @property
    def seen_names(self) -> tuple[str, ...]:
        return tuple(self.classes[i] for i in self.seen)

    @property
    def unseen_names(self) -> tuple[str, ...]:
        return tuple(self.classes[i] for i in self.unseen)

    def index(self, class_name: str) -> int:
        """Class id of ``class_name`` (ValueError if absent)."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise ValueError(f"split {self.name!r}: no class named {class_name!r}") from None

    # ------------------------------------------------------------ variations
    def with_unseen(self, ids: Iterable[int], *, name: str | None = None, source: str | None = None) -> ClassSplit:
        """Return a copy whose unseen set is ``ids`` and whose seen set is the complement."""
        unseen = _as_int_tuple(ids, "unseen", self.name)
        unseen_set = set(unseen)
        seen = tuple(i for i in range(self.num_classes) if i not in unseen_set)
        return dataclasses.replace(
            self,
            name=self.name if name is None else name,
            seen=seen,
            unseen=unseen,
            source=f"{self.source} [unseen set overridden: {sorted(unseen_set)}]" if source is None else source,
        )

    def fully_supervised(self) -> ClassSplit:
        """Return a copy in which every class is seen (no unseen classes)."""
        return dataclasses.replace(
            self,
            name=f"{self.name}-full",
            seen=tuple(range(self.num_classes)),
            unseen=(),
            source=f"{self.source} [fully supervised: all classes seen]",
        )

    # --------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": SCHEMA_VERSION,
            "classes": list(self.classes),
            "unseen": list(self.unseen),
            "seen": list(self.seen),
            "ignore_index": self.ignore_index,
            "reduce_zero_label": self.reduce_zero_label,
            "source": self.source,
            "embedding_file": self.embedding_file,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "<dict>") -> ClassSplit:
        """Build a split from a mapping following the JSON schema (ValueError naming ``origin`` on problems)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise ValueError(f"{origin}: missing key(s) {missing}")
        if data["version"] != SCHEMA_VERSION:
            raise ValueError(f"{origin}: unsupported schema version {data['version']!r} (expected {SCHEMA_VERSION})")
        for key in ("classes", "seen", "unseen"):
            if not isinstance(data[key], list):
                raise ValueError(f"{origin}: key {key!r} must be a list")
        if not isinstance(data["reduce_zero_label"], bool):
            raise ValueError(f"{origin}: key 'reduce_zero_label' must be true or false")
        emb = data["embedding_file"]
        if emb is not None and not isinstance(emb, str):
            raise ValueError(f"{origin}: key 'embedding_file' must be a string or null")
        try:
            return cls(
                name=str(data["name"]),
                classes=tuple(data["classes"]),
                seen=tuple(data["seen"]),
                unseen=tuple(data["unseen"]),
                ignore_index=data["ignore_index"],
                reduce_zero_label=data["reduce_zero_label"],
                source=str(data["source"]),
                embedding_file=emb,
            )
        except ValueError as e:
            raise ValueError(f"{origin}: {e}") from None


def _splits_root():
    # Anchor on the regular package zegclip.data so this works whether or not
    # "splits" itself is importable (it is a plain data folder).
    return importlib.resources.files(_DATA_PACKAGE).joinpath("splits")


def available_splits() -> list[str]:
    """Names of the splits packaged with zegclip (sorted)."""
    root = _splits_root()
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def read_text_file(path: Path, *, missing: Exception, unreadable: str) -> str:
    """The UTF-8 text of ``path``. Raises ``missing`` if it is not a file and ValueError ``"{unreadable}: {error}"``
    if it cannot be read or decoded. Shared with :func:`zegclip.data.files.read_class_names`."""
    if not path.is_file():
        raise missing
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{unreadable}: {e}") from None


def _parse_json_text(text: str, origin: str) -> ClassSplit:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{origin}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    return ClassSplit.from_dict(data, origin=origin)


def load_class_split(name_or_path: str | Path) -> ClassSplit:
    """Load a packaged split by name (``voc``, ``coco``, ``context60``, ``context59``) or a JSON file by path."""
    if isinstance(name_or_path, str) and not name_or_path.lower().endswith(".json") and "/" not in name_or_path:
        known = available_splits()
        key = name_or_path.strip().lower()
        if key not in known:
            raise ValueError(f"unknown class split {name_or_path!r}; known splits: {', '.join(known)} (or a path to a .json file)")
        resource = _splits_root().joinpath(f"{key}.json")
        return _parse_json_text(resource.read_text(encoding="utf-8"), f"packaged split {key}.json")

    path = Path(name_or_path)
    text = read_text_file(
        path,
        missing=ValueError(f"class split file {str(path)!r} does not exist"),
        unreadable=f"class split file {str(path)!r} could not be read",
    )
    return _parse_json_text(text, f"class split file {str(path)!r}")
