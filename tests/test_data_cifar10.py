import pickle

import numpy as np
import pytest

from overdeq.data import DataSpec, cifar10
from overdeq.data.download import ChecksumError, MissingFileError

from data_fixtures import no_internet, pin_cifar, tiny_cifar  # noqa: F401 (autouse guard)


def spec(root, n=8, **kw):
    return DataSpec(name="cifar10", n=n, root=str(root), **kw)


def luma_hwc(rows: np.ndarray) -> np.ndarray:
    """Independent route: rows -> (k, 32, 32, 3) images, then the BT.601 dot over channels."""
    hwc = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(float)
    return (hwc @ np.array([0.299, 0.587, 0.114])).reshape(len(rows), -1)


@pytest.fixture
def placed(tmp_path, monkeypatch):
    data, labels, path = tiny_cifar(tmp_path)
    pin_cifar(monkeypatch, path)
    return tmp_path, data, labels


def test_reads_training_batches_in_order(placed):
    root, data, labels = placed
    got, lab = cifar10.read_cifar10_batches(root / "raw" / "cifar-10" / "cifar-10-python.tar.gz")
    assert got.shape == (30, 3072) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, data)  # data_batch_1..5, test_batch left out
    np.testing.assert_array_equal(lab, labels)


def test_grayscale_weights_and_channel_layout():
    rows = np.zeros((3, 3072), dtype=np.uint8)
    rows[0, :1024] = 100  # pure red
    rows[1, 1024:2048] = 100  # pure green
    rows[2, 2048:] = 100  # pure blue
    gray = cifar10.to_grayscale(rows)
    np.testing.assert_allclose(gray[:, 0], [29.9, 58.7, 11.4])
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    np.testing.assert_allclose(cifar10.to_grayscale(rows), luma_hwc(rows), rtol=1e-12)


def test_load_balanced_grayscale_unit_rows(placed):
    root, data, labels = placed
    ds = cifar10.load_cifar10(spec(root, n=9, classes=(1, 2)), download=False)
    idx = np.array(ds.meta["indices"])
    assert ds.X.shape == (9, 1024)
    assert sorted(labels[idx].tolist()) == [1] * 5 + [2] * 4
    expected = luma_hwc(data[idx])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(ds.X, expected, rtol=1e-12)
    assert ds.meta["files"][0]["sha256"] == cifar10.CIFAR10_FILE.sha256
    assert "train" in ds.meta["split"]


def test_subset_deterministic_for_a_seed(placed):
    root, _, _ = placed
    a = cifar10.load_cifar10(spec(root, seed=3), download=False)
    b = cifar10.load_cifar10(spec(root, seed=3), download=False)
    c = cifar10.load_cifar10(spec(root, seed=4), download=False)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.meta["indices"] == b.meta["indices"] != c.meta["indices"]


def test_class_absent_and_n_too_large(placed):
    root, _, _ = placed
    with pytest.raises(
        ValueError,
        match=r"class 9 does not occur in the CIFAR-10 training "
        r"batches \(.*cifar-10-python\.tar\.gz\)",
    ):
        cifar10.load_cifar10(spec(root, classes=(0, 9)), download=False)
    with pytest.raises(ValueError, match="needs 11 samples of class 0 .* has only 10"):
        cifar10.load_cifar10(spec(root, n=22), download=False)


def test_missing_archive_offline(tmp_path):
    with pytest.raises(MissingFileError) as e:
        cifar10.load_cifar10(spec(tmp_path), download=False)
    msg = str(e.value)
    assert str(tmp_path / "raw" / "cifar-10" / "cifar-10-python.tar.gz") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce" in msg


def test_checksum_mismatch_with_the_real_pin(tmp_path):
    tiny_cifar(tmp_path)  # a tiny archive is not the real one: the real pin must refuse it
    with pytest.raises(ChecksumError, match="size .* expected 170498071 bytes"):
        cifar10.load_cifar10(spec(tmp_path), download=False)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"cut": 200}, "archive is truncated or corrupt"),
        ({"drop": "data_batch_4"}, r"no member\(s\) \['data_batch_4'\]"),
        ({"replace": {"data_batch_2": b"not a pickle"}}, r"data_batch_2 cannot be unpickled"),
        (
            {
                "replace": {
                    "data_batch_3": pickle.dumps(
                        {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
                    )
                }
            },
            r"data_batch_3: b'data' has dtype uint8 and shape \(2, 100\)",
        ),
    ],
)
def test_broken_archives_name_file_and_member(tmp_path, monkeypatch, kwargs, pattern):
    _, _, path = tiny_cifar(tmp_path, **kwargs)
    pin_cifar(monkeypatch, path)
    with pytest.raises(cifar10.CifarFormatError, match=pattern) as e:
        cifar10.load_cifar10(spec(tmp_path), download=False)
    assert str(path) in str(e.value)
