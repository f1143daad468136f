import hashlib

import numpy as np
import pytest

from overdeq.data import DataSpec, load_dataset, mnist
from overdeq.data.download import ChecksumError, MissingFileError, RemoteFile
from overdeq.data.idx import IdxFormatError

from data_fixtures import (  # noqa: F401 (no_internet: autouse guard)
    http_server,
    no_internet,
    pin_for,
    pin_mnist,
    tiny_mnist,
    write_idx,
)

COUNTS = {0: 12, 1: 9, 2: 7}


@pytest.fixture
def root(tmp_path, monkeypatch):
    tiny_mnist(tmp_path, COUNTS)
    pin_mnist(monkeypatch, tmp_path)
    return tmp_path


def spec(root, n=10, **kw):
    return DataSpec(name="mnist", n=n, root=str(root), **kw)


def test_balanced_subset_of_requested_classes(root):
    images, labels = tiny_mnist(root, COUNTS)  # same seed: the very files in place
    ds = mnist.load_mnist(spec(root, n=11, classes=(2, 0)), download=False)
    idx = np.array(ds.meta["indices"])
    assert ds.X.shape == (11, 16)
    assert sorted(labels[idx].tolist()) == [0] * 5 + [2] * 6  # 11 = 6 + 5, first class first
    assert ds.meta["class_counts"] == {"2": 6, "0": 5}
    assert len(set(idx.tolist())) == 11
    # independent route: row i is image idx[i], flattened row-major, over its Euclidean norm
    flat = images[idx].reshape(11, -1).astype(float)
    np.testing.assert_allclose(ds.X, flat / np.sqrt((flat**2).sum(1, keepdims=True)), rtol=1e-12)


def test_subset_and_labels_are_deterministic_in_the_seeds(root):
    a = mnist.load_mnist(spec(root, seed=5, label_seed=7), download=False)
    b = mnist.load_mnist(spec(root, seed=5, label_seed=7), download=False)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    c = mnist.load_mnist(spec(root, seed=6, label_seed=7), download=False)
    assert a.meta["indices"] != c.meta["indices"]
    np.testing.assert_array_equal(a.y, c.y)  # labels do not move with the subset seed
    d = mnist.load_mnist(spec(root, seed=5, label_seed=8), download=False)
    assert a.meta["indices"] == d.meta["indices"] and not np.array_equal(a.y, d.y)


def test_labels_uniform_and_pm1(root):
    _, labels = tiny_mnist(root, COUNTS)
    u = mnist.load_mnist(spec(root, n=18), download=False)
    assert np.all((u.y >= 0) & (u.y < 1)) and len(np.unique(u.y)) == 18
    p = mnist.load_mnist(spec(root, n=18, labels="pm1"), download=False)
    cls = labels[p.meta["indices"]]
    np.testing.assert_array_equal(p.y, np.where(cls == 1, 1.0, -1.0))  # second class is +1


def test_meta_records_the_source_checksums(root):
    ds = load_dataset(spec(root))
    files = {f["name"]: f for f in ds.meta["files"]}
    assert set(files) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}
    for name, f in files.items():
        data = (root / "raw" / "mnist" / name).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() == mnist.MNIST_FILES[name].sha256
    assert ds.meta["split"] == "train" and ds.meta["classes"] == [0, 1]
    assert ds.meta["spec"]["n"] == 10  # load_dataset adds the spec


def test_class_absent_from_the_files(root):
    with pytest.raises(
        ValueError,
        match=r"class 7 does not occur in the MNIST training split "
        r"\(.*train-labels-idx1-ubyte\.gz\); classes present: "
        r"\[0, 1, 2\]",
    ):
        mnist.load_mnist(spec(root, classes=(0, 7)), download=False)


def test_n_larger_than_available(root):
    with pytest.raises(
        ValueError,
        match=r"n=20 needs 10 samples of class 1 but .*has only 9.*"
        r"lower --n",
    ):
        mnist.load_mnist(spec(root, n=20), download=False)


def test_missing_files_offline_say_where_and_what(tmp_path):
    with pytest.raises(MissingFileError) as e:
        mnist.load_mnist(spec(tmp_path), download=False)
    msg = str(e.value)
    folder = tmp_path / "raw" / "mnist"
    assert str(folder / "train-images-idx3-ubyte.gz") in msg
    assert str(folder / "train-labels-idx1-ubyte.gz") in msg
    assert "t10k" not in msg  # the loader needs only the training split
    assert "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in msg


def test_corrupted_file_fails_on_checksum_before_parsing(root):
    path = root / "raw" / "mnist" / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[20] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"train-labels-idx1-ubyte\.gz .*sha256"):
        mnist.load_mnist(spec(root), download=False)


def test_truncated_gzip_with_matching_pin_names_the_file(tmp_path, monkeypatch):
    tiny_mnist(tmp_path, COUNTS)
    path = write_idx(
        tmp_path / "raw" / "mnist" / "train-images-idx3-ubyte.gz",
        np.ones((28, 4, 4), np.uint8),
        cut=12,
    )
    pin_mnist(monkeypatch, tmp_path)  # pins that match the broken file: the parser must catch it
    with pytest.raises(IdxFormatError, match=rf"{path}: the gzip stream is truncated"):
        mnist.load_mnist(spec(tmp_path), download=False)


def test_swapped_images_and_labels_fail_on_magic(tmp_path, monkeypatch):
    tiny_mnist(tmp_path, COUNTS)
    folder = tmp_path / "raw" / "mnist"
    img, lab = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    img_bytes = img.read_bytes()
    img.write_bytes(lab.read_bytes())
    lab.write_bytes(img_bytes)
    pin_mnist(monkeypatch, tmp_path)
    with pytest.raises(
        IdxFormatError,
        match=r"train-images-idx3-ubyte\.gz: magic number "
        r"0x00000801 \(labels\), expected 0x00000803",
    ):
        mnist.load_mnist(spec(tmp_path), download=False)


def test_download_from_mirrors_then_offline_use(tmp_path, monkeypatch):
    site = tmp_path / "site"
    tiny_mnist(site, COUNTS)  # site/raw/mnist/<files>
    with http_server(site / "raw" / "mnist") as base:
        for name in list(mnist.MNIST_FILES):
            pin = pin_for(site / "raw" / "mnist" / name)
            urls = (base + "gone/" + name, base + name)  # the first mirror is broken
            monkeypatch.setitem(
                mnist.MNIST_FILES,
                name,
                RemoteFile(name, pin.size, pin.sha256, pin.md5, urls, "MNIST"),
            )
        files = mnist.fetch_mnist(tmp_path / "data", download=True)
    assert len(files) == 4
    for name, f in files.items():
        assert f.path.read_bytes() == (site / "raw" / "mnist" / name).read_bytes()
    # the server is gone: a load now must work from the files in place alone
    ds = mnist.load_mnist(spec(tmp_path / "data"), download=True)
    assert ds.n == 10
