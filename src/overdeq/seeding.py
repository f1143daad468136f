"""Seeds: one base seed, an independent generator seed per random object.

Every random object (the weights W, U, a, the biases, the data subset, the labels, each
layer of an untied network, a power iteration's start vector) draws from its own
generator, seeded by ``derive_seed(base, name)``. Changing one seed, the width or the depth
therefore never reshuffles another object. This module imports nothing else from the
package, so every layer may use it (docs/architecture.md).
"""

from __future__ import annotations

import hashlib

__all__ = ["MODEL_OBJECTS", "derive_seed", "model_seeds", "data_seeds"]

MODEL_OBJECTS = ("W", "U", "a", "bias")  # the DEQ's random objects (model.DEQ's ``seeds``)


def derive_seed(base: int, name: str) -> int:
    """An independent 31-bit seed for the object ``name``, from one base seed."""
    return int.from_bytes(hashlib.sha256(f"{base}:{name}".encode()).digest()[:4], "little") >> 1


def model_seeds(seed: int) -> dict[str, int]:
    """The generator seeds of W, U, a and the biases for one model seed."""
    return {name: derive_seed(seed, name) for name in MODEL_OBJECTS}


def data_seeds(data_seed: int) -> dict[str, int]:
    """The seeds of the inputs (``seed``) and the labels (``label_seed``) of a DataSpec."""
    return {"seed": derive_seed(data_seed, "data"), "label_seed": derive_seed(data_seed, "labels")}
