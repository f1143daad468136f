"""The offline stand-in for MNIST: scikit-learn's bundled 8x8 digits (no network needed).

``sklearn.datasets.load_digits`` ships 1797 images of 8x8 pixels with values 0..16 (a
down-sampled UCI set). Classes 0 and 1 have 178 and 182 images, so a balanced subset of
the default classes holds at most n = 356. Prepared exactly like MNIST: balanced subset,
flatten (d = 64), unit L2 norm per sample, y ~ U(0, 1). There is no train/test split: all
1797 images are the pool, and the metadata's indices refer to that order.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .core import Dataset, DataSpec
from .labelled import check_classes, from_labelled_images

__all__ = ["load_digits", "CLASS_COUNTS"]

CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # images of 0..9 (1797)


def load_digits(spec: DataSpec) -> Dataset:
    """n balanced 8x8 digit images of ``spec.classes``: X (n, 64) unit rows, y (n,)."""
    import sklearn
    from sklearn.datasets import load_digits as sk_load_digits

    check_classes(spec, range(10), "scikit-learn's digits")
    bunch = sk_load_digits()
    images = np.asarray(bunch.images)  # (1797, 8, 8) float64 holding integers 0..16
    labels = np.asarray(bunch.target)  # (1797,)
    # content checksum of the bundled arrays (as uint8 / int64), so a prepared file records
    # exactly which pixels it was made from, across scikit-learn versions
    sha = hashlib.sha256(images.astype(np.uint8).tobytes() + labels.astype(np.int64).tobytes())
    meta = {
        "source": "scikit-learn digits (sklearn.datasets.load_digits)",
        "sklearn_version": sklearn.__version__,
        "split": "all (no split)",
        "files": [
            {"name": "sklearn/datasets/data/digits.csv.gz", "content_sha256": sha.hexdigest()}
        ],
        "image_shape": list(images.shape[1:]),
        "preprocessing": "flatten, L2-normalise each row",
    }
    return from_labelled_images(
        images, labels, spec, name="digits", source="scikit-learn's digits (1797 images)", meta=meta
    )
