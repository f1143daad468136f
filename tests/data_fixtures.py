"""Builders of tiny raw data files for the data tests, written from the formats' specs.

Nothing here imports the parsers under test: IDX files are packed with ``struct`` and
CIFAR batches are pickled dicts in a gzip tarball, the way the originals are laid out. Also:
pins for tiny files (so the real pinned checksums can be swapped out), a local HTTP server
on 127.0.0.1, and a guard that fails any test that tries to reach the internet.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from overdeq.data.download import RemoteFile

IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


# ---------------------------------------------------------------- network guard


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any URL other than file:// or http://127.0.0.1 fails the test (never the internet)."""
    real = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        text = url if isinstance(url, str) else url.full_url
        parts = urllib.parse.urlsplit(text)
        if parts.scheme != "file" and parts.hostname != "127.0.0.1":
            pytest.fail(f"test tried to reach the network: {text}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


# ---------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of ``array``: magic 0x0000TTNN, big-endian dims, big-endian data."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = IDX_CODES[np.dtype(big)]
    if magic is None:
        magic = (code << 8) | array.ndim
    head = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(big).tobytes(order="C")


def write_idx(
    path: Path, array: np.ndarray, *, gz: bool = True, magic: int | None = None, cut: int = 0
) -> Path:
    """Write an IDX file (gzip by default); ``cut`` drops that many bytes from the end."""
    data = idx_bytes(array, magic)
    if gz:
        data = gzip.compress(data, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) - cut])
    return path


def tiny_mnist(
    root: Path, counts: dict[int, int], *, shape: tuple[int, int] = (4, 4), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Write the four MNIST files under root/raw/mnist; returns the training (images, labels).

    Labels are interleaved (not sorted by class) so an index mix-up shows. Pixels are
    1..255, so no image is all zero.
    """
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(k, c, dtype=np.uint8) for c, k in counts.items()])
    labels = labels[rng.permutation(labels.size)]
    images = rng.integers(1, 256, size=(labels.size, *shape), dtype=np.uint8)
    folder = root / "raw" / "mnist"
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images[:3])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[:3])
    return images, labels


# ---------------------------------------------------------------- CIFAR-10


def cifar_batch(data: np.ndarray, labels: np.ndarray, name: str) -> bytes:
    """A pickled batch as in the python version: bytes keys, data (k, 3072) uint8."""
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(data, dtype=np.uint8),
        b"filenames": [f"img{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def write_tarball(path: Path, members: dict[str, bytes], *, cut: int = 0) -> Path:
    """A .tar.gz holding ``members`` (name -> payload); ``cut`` truncates the result."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) - cut])
    return path


def tiny_cifar(
    root: Path,
    per_batch: int = 6,
    seed: int = 0,
    *,
    cut: int = 0,
    drop: str | None = None,
    replace: dict[str, bytes] | None = None,
) -> tuple[np.ndarray, np.ndarray, Path]:
    """Write root/raw/cifar-10/cifar-10-python.tar.gz with 5 training batches + test_batch.

    Labels cycle through 0..2 in each batch. Returns the training (data (N, 3072), labels
    (N,)) in data_batch_1..5 order and the archive path. ``drop`` leaves out one member,
    ``replace`` substitutes payloads.
    """
    rng = np.random.default_rng(seed)
    members, datas, labs = {}, [], []
    for i in range(1, 6):
        data = rng.integers(1, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = (np.arange(per_batch) + i) % 3
        members[f"cifar-10-batches-py/data_batch_{i}"] = cifar_batch(data, labels, f"b{i}")
        datas.append(data)
        labs.append(labels)
    members["cifar-10-batches-py/test_batch"] = cifar_batch(datas[0][:2], labs[0][:2], "t")
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"a"]})
    if drop:
        members.pop(f"cifar-10-batches-py/{drop}")
    for key, payload in (replace or {}).items():
        members[f"cifar-10-batches-py/{key}"] = payload
    path = write_tarball(root / "raw" / "cifar-10" / "cifar-10-python.tar.gz", members, cut=cut)
    return np.concatenate(datas), np.concatenate(labs), path


# ---------------------------------------------------------------- pins and servers


def pin_for(path: Path, urls: tuple[str, ...] = (), dataset: str = "MNIST") -> RemoteFile:
    """A RemoteFile whose pinned size and digests are those of ``path`` as it is now."""
    data = path.read_bytes()
    return RemoteFile(
        name=path.name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        urls=urls,
        dataset=dataset,
    )


def pin_mnist(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Swap the real MNIST pins for those of the tiny files under root/raw/mnist."""
    from overdeq.data import mnist

    for name in list(mnist.MNIST_FILES):
        monkeypatch.setitem(mnist.MNIST_FILES, name, pin_for(root / "raw" / "mnist" / name))


def pin_cifar(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    from overdeq.data import cifar10

    monkeypatch.setattr(cifar10, "CIFAR10_FILE", pin_for(path, dataset="CIFAR-10"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port); yields the base URL ending in '/'."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
