"""Data: class lists and splits (packaged JSON), datasets in the standard layouts, joint transforms, preparation."""

from .classes import ClassSplit, available_splits, load_class_split

__all__ = ["ClassSplit", "load_class_split", "available_splits"]
