"""From a labelled image collection to a :class:`Dataset`, the same way for every source.

digits, MNIST and CIFAR-10 share the preparation of the paper's experiments (docs/science.md,
The released code and The experiments): pick a class-balanced subset of n images of ``spec.classes``
with ``spec.seed``, map each image to a feature vector (identity, or grayscale for colour),
flatten, scale each row to unit L2 norm, and draw targets y ~ U(0, 1) with
``spec.label_seed`` (or +-1 by class).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .core import Dataset, DataSpec, balanced_subset, make_labels, normalize_rows

__all__ = ["from_labelled_images", "check_classes"]


def check_classes(spec: DataSpec, available: range, source: str) -> None:
    """Refuse repeated classes, classes outside the label range, and pm1 with != 2 classes."""
    classes = spec.classes
    if len(set(classes)) != len(classes):
        raise ValueError(f"--classes {list(classes)} repeats a class; give each class once")
    outside = [c for c in classes if c not in available]
    if outside:
        raise ValueError(
            f"classes {outside} do not exist in {source}: its labels are "
            f"{available.start}..{available.stop - 1}; choose --classes among them"
        )
    if spec.labels == "pm1" and len(classes) != 2:
        raise ValueError(
            f"--labels pm1 needs exactly two classes (-1 for the first, +1 for "
            f"the second), got --classes {list(classes)}"
        )


def from_labelled_images(
    images: np.ndarray,
    labels: np.ndarray,
    spec: DataSpec,
    *,
    name: str,
    source: str,
    meta: dict[str, Any],
    features: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Dataset:
    """Balanced subset, features, flatten, unit rows, targets; meta records the selection.

    images: (N, ...) pixel arrays; labels: (N,) integer classes. ``features`` maps the
    selected images (n, ...) to (n, d) before normalisation (applied to the subset only, so
    colour-to-grayscale never touches the whole collection). With ``labels='pm1'`` the
    first of ``spec.classes`` gets -1 and the second +1.
    Returns X (n, d) float64 with unit rows, y (n,), meta + classes, indices, class counts.
    """
    labels = np.asarray(labels).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{source}: {images.shape[0]} images but {labels.shape[0]} labels; "
            "the images and labels files do not belong together"
        )
    idx = balanced_subset(labels, spec.classes, spec.n, spec.seed, source=source)  # (n,)
    picked = images[idx]
    feats = features(picked) if features is not None else picked.reshape(len(idx), -1)
    X = normalize_rows(np.asarray(feats, dtype=np.float64).reshape(len(idx), -1))  # (n, d)
    positive = spec.classes[1] if spec.labels == "pm1" else None
    y = make_labels(
        spec.n, spec.labels, seed=spec.label_seed, classes=labels[idx], positive=positive
    )
    counts = {str(c): int(np.sum(labels[idx] == c)) for c in spec.classes}
    meta = {
        **meta,
        "classes": list(spec.classes),
        "class_counts": counts,
        "indices": idx.tolist(),
        "available": int(labels.shape[0]),
    }
    return Dataset(X=X, y=y, name=name, meta=meta)
