"""Dataset metadata: class lists and seen/unseen splits (packaged as JSON)."""

from .classes import ClassSplit, available_splits, load_class_split

__all__ = ["ClassSplit", "load_class_split", "available_splits"]
