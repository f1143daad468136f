"""A reader for the IDX format of the MNIST files (LeCun et al.), gzip-compressed or raw.

Layout (all integers big-endian): a 4-byte magic number ``0x00 0x00 TT NN`` where TT is the
element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)
and NN the number of dimensions; then NN 4-byte dimension sizes; then the elements in C
order. MNIST images are ``0x00000803`` (uint8, 3 dims: count, rows, cols) and labels
``0x00000801`` (uint8, 1 dim: count).

Every check names the file and says what to do: a truncated or corrupt gzip stream, a magic
number that is not IDX or not the kind expected, and a data section whose length disagrees
with the dimensions in the header.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "IdxFormatError",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "parse_idx",
]

IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_REFETCH = "delete it and fetch it again ('overdeq data fetch --data mnist')"


class IdxFormatError(ValueError):
    """A file is not a valid IDX file of the expected kind; the message names the file."""


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # not gzip: a raw (already decompressed) IDX file
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IdxFormatError(
            f"{path}: the gzip stream is truncated or corrupt ({exc}); {_REFETCH}"
        ) from None


def parse_idx(data: bytes, source: str = "<bytes>") -> tuple[int, np.ndarray]:
    """(magic, array) from the bytes of an IDX file; the array has native byte order."""
    if len(data) < 4:
        raise IdxFormatError(
            f"{source}: {len(data)} bytes is too short for an IDX header; "
            f"the file is empty or truncated: {_REFETCH}"
        )
    magic = struct.unpack(">I", data[:4])[0]
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in _DTYPES or ndim == 0:
        raise IdxFormatError(
            f"{source}: magic number 0x{magic:08x} is not an IDX header "
            "(expected 0x0000TTNN with a known type TT and NN >= 1 "
            f"dimensions); the file is not an MNIST IDX file: {_REFETCH}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{source}: the header announces {ndim} dimensions but the file "
            f"ends after {len(data)} bytes: {_REFETCH}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        raise IdxFormatError(
            f"{source}: the header says shape {tuple(dims)} of {dtype.name} = {expected} data "
            f"bytes, but the file holds {actual}; it is truncated or damaged: {_REFETCH}"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    return magic, array.reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip detected by content, not by name); optionally check its magic."""
    path = Path(path)
    magic, array = parse_idx(_read_bytes(path), source=str(path))
    if expect_magic is not None and magic != expect_magic:
        kinds = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}
        raise IdxFormatError(
            f"{path}: magic number 0x{magic:08x} ({kinds.get(magic, 'another IDX type')}), "
            f"expected 0x{expect_magic:08x} ({kinds.get(expect_magic, 'IDX')}). Images and "
            f"labels files may be swapped or misnamed; put the original file under this name "
            f"or {_REFETCH}"
        )
    return array


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """MNIST images: uint8 array (count, rows, cols) from magic 0x00000803."""
    return read_idx(path, IDX_IMAGES_MAGIC)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """MNIST labels: uint8 array (count,) from magic 0x00000801."""
    return read_idx(path, IDX_LABELS_MAGIC)
