"""Data sets: synthetic, scikit-learn's digits, MNIST and CIFAR-10 (classes 0/1)."""

from .core import (
    DATASETS,
    LABEL_KINDS,
    Dataset,
    DataSpec,
    balanced_subset,
    load_dataset,
    make_labels,
    max_samples,
    normalize_rows,
)

__all__ = [
    "DATASETS",
    "LABEL_KINDS",
    "DataSpec",
    "Dataset",
    "balanced_subset",
    "load_dataset",
    "make_labels",
    "max_samples",
    "normalize_rows",
]
