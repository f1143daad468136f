import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from overdeq.data import DataSpec, load_dataset

from data_fixtures import no_internet  # noqa: F401 (autouse guard)


def test_digits_prepared_like_mnist():
    ds = load_dataset(DataSpec(name="digits", n=40, seed=11, label_seed=12))
    bunch = sk_load_digits()
    idx = np.array(ds.meta["indices"])
    assert ds.X.shape == (40, 64) and ds.name == "digits"
    assert np.bincount(bunch.target[idx]).tolist() == [20, 20]
    flat = bunch.images[idx].reshape(40, 64)
    np.testing.assert_allclose(ds.X, flat / np.linalg.norm(flat, axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(ds.X, axis=1), 1.0, rtol=1e-12)
    assert np.all((ds.y >= 0) & (ds.y < 1))
    assert len(ds.meta["files"][0]["content_sha256"]) == 64


def test_digits_capacity_is_356_for_classes_0_1():
    assert load_dataset(DataSpec(name="digits", n=356)).n == 356  # 178 zeros, 178 ones
    with pytest.raises(ValueError, match=r"n=357 needs 179 samples of class 0 but .*only 178"):
        load_dataset(DataSpec(name="digits", n=357))


def test_other_classes_and_pm1():
    ds = load_dataset(DataSpec(name="digits", n=30, classes=(3, 8), labels="pm1"))
    target = sk_load_digits().target[ds.meta["indices"]]
    assert set(target.tolist()) == {3, 8}
    np.testing.assert_array_equal(ds.y, np.where(target == 8, 1.0, -1.0))


@pytest.mark.parametrize(
    ("classes", "labels", "pattern"),
    [
        ((0, 0), "uniform", "repeats a class"),
        ((0, 10), "uniform", r"classes \[10\] do not exist"),
        ((0, 1, 2), "pm1", "needs exactly two classes"),
    ],
)
def test_bad_class_choices(classes, labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_dataset(DataSpec(name="digits", n=6, classes=classes, labels=labels))
