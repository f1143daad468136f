"""CIFAR-10 (Krizhevsky 2009): the original python tarball, verified, classes 0/1 in grayscale.

The archive ``cifar-10-python.tar.gz`` lives in ``<root>/raw/cifar-10/`` (``DataSpec.root``,
default ``data``) and is read in place: no extraction. The loader uses the **training
split** (``data_batch_1`` .. ``data_batch_5``, 50000 images, in that order; indices in the
metadata count from the first image of data_batch_1); ``test_batch`` is not read.

Each batch is a pickled dict with ``b"data"`` (10000, 3072) uint8 -- every row is the
32x32 red plane, then green, then blue, each in row-major order -- and ``b"labels"`` (a list
of 10000 ints in 0..9). As in the released code, images become 32x32 grayscale, here by ITU-R
BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, then are flattened (d = 1024) and scaled to
unit L2 norm per sample.

Unpickling runs code chosen by the file's author, so batches are only ever read from an
archive whose SHA-256 matched the pinned value (or, in tests, one the test wrote itself).
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from .core import Dataset, DataSpec
from .download import LocalFile, RemoteFile, ensure
from .labelled import check_classes, from_labelled_images

__all__ = [
    "CLASS_COUNTS",
    "CIFAR10_FILE",
    "TRAIN_BATCHES",
    "TEST_BATCH",
    "LUMA_601",
    "CifarFormatError",
    "cifar10_folder",
    "fetch_cifar10",
    "read_cifar10_batches",
    "to_grayscale",
    "load_cifar10",
]

# Pinned digests of cifar-10-python.tar.gz. SHA-256: torchvision,
# torchvision/prototype/datasets/_builtin/cifar.py (Cifar10.resources), identical to
# tensorflow/datasets url_checksums/cifar10.csv. MD5: torchvision/datasets/cifar.py
# (CIFAR10.tgz_md5), the value on the CIFAR page (https://www.cs.toronto.edu/~kriz/cifar.html).
# Size: 170498071 bytes, as recorded with that checksum by independent mirrors.
CIFAR10_FILE = RemoteFile(
    name="cifar-10-python.tar.gz",
    size=170498071,
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    md5="c58f30108f718f92721af3b95e74349a",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    dataset="CIFAR-10",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASS_COUNTS = (5000,) * 10  # images per class 0..9 in the five training batches
TEST_BATCH = "test_batch"
LUMA_601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
_PIXELS = 32 * 32
_REFETCH = "delete it and fetch it again ('overdeq data fetch --data cifar10')"


class CifarFormatError(ValueError):
    """The archive or one of its batches is not what CIFAR-10's python version contains."""


def cifar10_folder(root: str | Path) -> Path:
    return Path(root) / "raw" / "cifar-10"


def fetch_cifar10(root: str | Path = "data", *, download: bool | None = None) -> LocalFile:
    """Verify (and if missing and allowed, download) the CIFAR-10 archive; a LocalFile."""
    return ensure(CIFAR10_FILE, cifar10_folder(root), download=download)


def _unpickle_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except Exception as exc:  # any unpickling failure means a damaged member
        raise CifarFormatError(
            f"{where} cannot be unpickled ({type(exc).__name__}: {exc}); {_REFETCH}"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise CifarFormatError(
            f"{where} is not a CIFAR-10 batch (expected a dict with b'data' "
            f"and b'labels', found {keys}); {_REFETCH}"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _PIXELS:
        raise CifarFormatError(
            f"{where}: b'data' has dtype {data.dtype} and shape {data.shape}, "
            f"expected uint8 (k, {3 * _PIXELS}); {_REFETCH}"
        )
    if labels.shape != (data.shape[0],):
        raise CifarFormatError(
            f"{where}: {data.shape[0]} images but {labels.size} labels; {_REFETCH}"
        )
    return data, labels.astype(np.int64)


def read_cifar10_batches(
    path: str | Path, batches: tuple[str, ...] = TRAIN_BATCHES
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate batches read straight from the tarball: data (N, 3072) uint8, labels (N,).

    Members are matched by their base name (``cifar-10-batches-py/data_batch_1``) and
    returned in the order of ``batches``.
    """
    path = Path(path)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:  # sequential: one pass through the gzip stream
                base = PurePosixPath(member.name).name
                if member.isfile() and base in batches and base not in found:
                    fh = tar.extractfile(member)
                    found[base] = fh.read() if fh is not None else b""
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise CifarFormatError(
            f"{path}: the archive is truncated or corrupt ({type(exc).__name__}: {exc}); {_REFETCH}"
        ) from None
    missing = [b for b in batches if b not in found]
    if missing:
        raise CifarFormatError(
            f"{path} has no member(s) {missing} (expected "
            f"cifar-10-batches-py/<name>); it is not the CIFAR-10 python "
            f"archive: {_REFETCH}"
        )
    parts = [_unpickle_batch(found[b], f"{path}:{b}") for b in batches]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def to_grayscale(data: np.ndarray) -> np.ndarray:
    """Luma Y = 0.299 R + 0.587 G + 0.114 B of CIFAR rows: (k, 3072) uint8 -> (k, 1024)."""
    planes = np.asarray(data, dtype=np.float64).reshape(-1, 3, _PIXELS)  # (k, RGB, 32*32)
    return np.einsum("c,kcp->kp", np.array(LUMA_601), planes)


def load_cifar10(spec: DataSpec, *, download: bool | None = None) -> Dataset:
    """n balanced grayscale training images of ``spec.classes``: X (n, 1024), y (n,)."""
    check_classes(spec, range(10), "CIFAR-10")  # before any download
    archive = fetch_cifar10(spec.root, download=download)
    data, labels = read_cifar10_batches(archive.path)  # (50000, 3072) uint8, (50000,)
    meta = {
        "source": "CIFAR-10",
        "split": "train (data_batch_1..5)",
        "files": [archive.as_meta()],
        "image_shape": [32, 32],
        "preprocessing": "grayscale Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601), "
        "flatten, L2-normalise each row",
    }
    source = f"the CIFAR-10 training batches ({archive.path})"
    return from_labelled_images(
        data, labels, spec, name="cifar10", source=source, meta=meta, features=to_grayscale
    )
