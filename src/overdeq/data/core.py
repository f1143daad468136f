"""The data interface: a frozen ``Dataset`` and a registry of loaders keyed by name.

Every loader takes a :class:`DataSpec` and returns a :class:`Dataset` whose rows are unit-norm
float64 inputs and whose targets follow ``spec.labels``. The trainer only ever sees a
``Dataset``, so a new source plugs in by adding one loader to :data:`LOADERS`.

Randomness is split by purpose (docs/science.md, Numerics): ``spec.seed`` drives the
choice of inputs (subset, Gaussian draws) and ``spec.label_seed`` the random labels, so
changing one never reshuffles the other, and nothing here depends on the model's width.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DataSpec",
    "Dataset",
    "LOADERS",
    "DATASETS",
    "LABEL_KINDS",
    "load_dataset",
    "normalize_rows",
    "make_labels",
    "balanced_subset",
    "max_samples",
]

LABEL_KINDS = ("uniform", "pm1")


@dataclass(frozen=True)
class DataSpec:
    """Which data, how many samples, which seeds."""

    name: str
    n: int
    d: int | None = None  # input dimension (synthetic sets only)
    seed: int = 0  # inputs: subset choice / Gaussian draws
    label_seed: int = 1  # targets: U(0, 1) draws
    labels: str = "uniform"  # "uniform": y ~ U(0, 1) as in the paper; "pm1": +-1 by class
    classes: tuple[int, ...] = (0, 1)
    root: str = "data"  # where raw files live (real data sets)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"unknown data set {self.name!r}; valid data sets: {list(DATASETS)}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.labels not in LABEL_KINDS:
            raise ValueError(f"labels must be one of {list(LABEL_KINDS)}, got {self.labels!r}")
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))


@dataclass(frozen=True)
class Dataset:
    """Inputs X (n, d) with unit-norm rows, targets y (n,), and where they came from."""

    X: np.ndarray
    y: np.ndarray
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or self.y.shape != (self.X.shape[0],):
            raise ValueError(f"expected X (n, d) and y (n,), got {self.X.shape} and {self.y.shape}")

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def tensors(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        """(X, y) as torch tensors."""
        return (
            torch.as_tensor(self.X, dtype=dtype, device=device),
            torch.as_tensor(self.y, dtype=dtype, device=device),
        )

    def save_npz(self, path: str | Path) -> None:
        """Write X, y and the metadata (as JSON) to an .npz file, atomically."""
        import io as _io
        import json

        from ..io import atomic_write_bytes

        buf = _io.BytesIO()
        np.savez(
            buf,
            X=self.X,
            y=self.y,
            name=np.array(self.name),
            meta=np.array(json.dumps(self.meta, sort_keys=True, default=str)),
        )
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load_npz(cls, path: str | Path) -> Dataset:
        """A prepared data file; a missing, cut or garbled one is a ValueError naming it."""
        import json
        import zipfile

        from ..io import ResultFileError, rebuild_hint

        path = Path(path)
        how = (  # the file's maker, and how to remake it
            "it is made by 'overdeq data prepare ... --out FILE.npz' (in the workflow: rule "
            f"prepare_data; {rebuild_hint(path)})"
        )
        if not path.exists():
            raise FileNotFoundError(f"prepared data file {path} does not exist; {how}")
        if not path.is_file():
            raise ResultFileError(f"{path} is a folder, not a prepared data file; move it away")
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ResultFileError(
                f"{path} is not a prepared overdeq data file (.npz): {exc or 'empty'}; it is cut "
                f"short, corrupt or another kind of file; {how}"
            ) from None
        if not hasattr(z, "files"):
            raise ResultFileError(
                f"{path} holds a bare array, not a prepared overdeq data file; {how}"
            )
        with z:
            missing = {"X", "y", "name", "meta"} - set(z.files)
            if missing:
                raise ResultFileError(
                    f"{path} is not a prepared overdeq data file (missing arrays "
                    f"{sorted(missing)}); {how}"
                )
            try:
                return cls(
                    X=z["X"].astype(np.float64),
                    y=z["y"].astype(np.float64),
                    name=str(z["name"]),
                    meta=json.loads(str(z["meta"])),
                )
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise ResultFileError(
                    f"{path} is corrupt ({type(exc).__name__}: {exc}); {how}"
                ) from None


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Scale every row to unit L2 norm; an all-zero row is an error, not a NaN."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1)
    if np.any(norms == 0):
        bad = np.flatnonzero(norms == 0)[:5].tolist()
        raise ValueError(f"rows {bad} are all zero and cannot be normalised to unit length")
    return X / norms[:, None]


def make_labels(
    n: int, kind: str, *, seed: int, classes: np.ndarray | None = None, positive: int | None = None
) -> np.ndarray:
    """Targets: y ~ U(0, 1) (``uniform``, the paper's random labels) or +-1 by class."""
    if kind == "uniform":
        return np.random.default_rng(seed).uniform(0.0, 1.0, size=n)
    if kind == "pm1":
        if classes is None or positive is None:
            raise ValueError("labels='pm1' needs a data set with classes (digits, mnist, cifar10)")
        return np.where(np.asarray(classes) == positive, 1.0, -1.0)
    raise ValueError(f"labels must be one of {list(LABEL_KINDS)}, got {kind!r}")


def balanced_subset(
    labels: np.ndarray, classes: tuple[int, ...], n: int, seed: int, source: str = "the data"
) -> np.ndarray:
    """Indices of n samples, as equal as possible across ``classes``, chosen by ``seed``.

    The result is sorted by class then by original index, so it is deterministic given seed.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = []
    for c in classes:
        pool = np.flatnonzero(labels == c)
        if pool.size == 0:
            present = sorted(np.unique(labels).tolist())
            raise ValueError(f"class {c} does not occur in {source}; classes present: {present}")
        pools.append(pool)
    k = len(classes)
    want = [n // k + (1 if i < n % k else 0) for i in range(k)]
    for c, pool, w in zip(classes, pools, want, strict=True):
        if w > pool.size:
            total = sum(p.size for p in pools)
            raise ValueError(
                f"n={n} needs {w} samples of class {c} but {source} has only "
                f"{pool.size} (of {total} in classes {list(classes)}); lower --n"
            )
    picked = [
        np.sort(rng.choice(pool, size=w, replace=False))
        for pool, w in zip(pools, want, strict=True)
    ]
    return np.concatenate(picked)


Loader = Callable[[DataSpec], Dataset]

# name -> "module:function" (imported on first use, so optional formats cost nothing)
DATASETS: dict[str, str] = {
    "identity": "overdeq.data.synthetic:load_identity",
    "gaussian": "overdeq.data.synthetic:load_gaussian",
    "digits": "overdeq.data.digits:load_digits",
    "mnist": "overdeq.data.mnist:load_mnist",
    "cifar10": "overdeq.data.cifar10:load_cifar10",
}
LOADERS: dict[str, Loader] = {}


def _loader(name: str) -> Loader:
    if name not in LOADERS:
        module, func = DATASETS[name].split(":")
        LOADERS[name] = getattr(importlib.import_module(module), func)
    return LOADERS[name]


def max_samples(name: str, classes: tuple[int, ...] = DataSpec.classes) -> int | None:
    """The largest n a class-balanced subset of ``classes`` can have (None: no limit).

    A loader module that draws from a fixed collection declares ``CLASS_COUNTS`` (images per
    class); :func:`balanced_subset` gives class i ``n // k`` samples, plus one for the first
    ``n % k`` classes.
    """
    module = importlib.import_module(DATASETS[name].split(":")[0])
    counts = getattr(module, "CLASS_COUNTS", None)
    if counts is None:
        return None
    have = [counts[c] for c in classes]
    k = len(have)
    n = k * min(have) + k  # an upper bound: every class gives at most min(have) + 1
    while any(n // k + (1 if i < n % k else 0) > c for i, c in enumerate(have)):
        n -= 1
    return n


def load_dataset(spec: DataSpec) -> Dataset:
    """Load the data set ``spec.name`` as the spec says; metadata records the spec."""
    ds = _loader(spec.name)(spec)
    if ds.n != spec.n:
        raise RuntimeError(f"loader for {spec.name!r} returned {ds.n} samples, expected {spec.n}")
    meta = {"spec": {**asdict(spec), "classes": list(spec.classes)}, **ds.meta}
    return Dataset(X=ds.X, y=ds.y, name=ds.name, meta=meta)
