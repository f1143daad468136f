"""MNIST (LeCun, Cortes, Burges): the four original IDX .gz files, verified, classes 0/1.

Files live in ``<root>/raw/mnist/`` (``DataSpec.root``, default ``data``). The loader uses
the **training split** (train-images/train-labels, 60000 images), as the released code
does; the two t10k files are fetched and verified by ``overdeq data fetch`` but not read.
Images 28x28 uint8 are flattened to d = 784 and scaled to unit L2 norm per sample.
"""

from __future__ import annotations

from pathlib import Path

from .core import Dataset, DataSpec
from .download import LocalFile, RemoteFile, ensure_all
from .idx import read_idx_images, read_idx_labels
from .labelled import check_classes, from_labelled_images

__all__ = [
    "CLASS_COUNTS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "TRAIN_FILES",
    "mnist_folder",
    "fetch_mnist",
    "load_mnist",
]

# images per class 0..9 in the training split that load_mnist reads (max n: data.max_samples)
CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)

# Tried in order. ossci-datasets is PyTorch's S3 mirror (torchvision's default); yann.lecun.com
# is the original home (often refuses downloads now); cvdf-datasets is TensorFlow's mirror.
# All three serve byte-identical files (same sizes and SHA-256 in the sources below).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# Pinned digests. SHA-256: torchvision, torchvision/prototype/datasets/_builtin/mnist.py
# (MNIST._CHECKSUMS, for the yann.lecun.com and ossci-datasets URLs), identical to
# tensorflow/datasets url_checksums/mnist.txt (which also gives the sizes). MD5: torchvision,
# torchvision/datasets/mnist.py (MNIST.resources).
_PINS = (
    (
        "train-images-idx3-ubyte.gz",
        9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
)
MNIST_FILES: dict[str, RemoteFile] = {
    name: RemoteFile(
        name=name,
        size=size,
        sha256=sha,
        md5=md5,
        urls=tuple(m + name for m in MNIST_MIRRORS),
        dataset="MNIST",
    )
    for name, size, sha, md5 in _PINS
}
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def mnist_folder(root: str | Path) -> Path:
    return Path(root) / "raw" / "mnist"


def fetch_mnist(
    root: str | Path = "data", *, download: bool | None = None, names: tuple[str, ...] | None = None
) -> dict[str, LocalFile]:
    """Verify (and if missing and allowed, download) MNIST files; file name -> LocalFile."""
    names = tuple(MNIST_FILES) if names is None else names
    return ensure_all([MNIST_FILES[n] for n in names], mnist_folder(root), download=download)


def load_mnist(spec: DataSpec, *, download: bool | None = None) -> Dataset:
    """n balanced training images of ``spec.classes``: X (n, 784) unit rows, y (n,)."""
    check_classes(spec, range(10), "MNIST")  # before any download
    files = fetch_mnist(spec.root, download=download, names=TRAIN_FILES)
    img_path, lab_path = (files[n].path for n in TRAIN_FILES)
    source = f"the MNIST training split ({lab_path})"
    images = read_idx_images(img_path)  # (60000, 28, 28) uint8
    labels = read_idx_labels(lab_path)  # (60000,) uint8
    meta = {
        "source": "MNIST",
        "split": "train",
        "files": [files[n].as_meta() for n in TRAIN_FILES],
        "image_shape": list(images.shape[1:]),
        "preprocessing": "flatten, L2-normalise each row",
    }
    return from_labelled_images(images, labels, spec, name="mnist", source=source, meta=meta)
