import gzip

import numpy as np
import pytest

from overdeq.data.idx import (
    IdxFormatError,
    read_idx,
    read_idx_images,
    read_idx_labels,
)

from data_fixtures import idx_bytes, no_internet, write_idx  # noqa: F401 (autouse guard)


@pytest.mark.parametrize("gz", [True, False])
def test_images_and_labels_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)  # non-square: catches a
    labels = np.array([3, 0, 9, 1, 1], dtype=np.uint8)  # rows/cols swap
    ip = write_idx(tmp_path / "img", images, gz=gz)
    lp = write_idx(tmp_path / "lab", labels, gz=gz)
    got = read_idx_images(ip)
    assert got.dtype == np.uint8 and got.shape == (5, 3, 4)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx_labels(lp), labels)


@pytest.mark.parametrize(
    ("dtype", "big"), [(">i2", 258), (">i4", 70000), (">f4", 1.5e7), (">f8", 1e300), ("i1", 100)]
)
def test_other_element_types_are_read_big_endian(tmp_path, dtype, big):
    values = np.array([[-3, big], [7, -1]], dtype=dtype)  # multi-byte values: byte order shows
    got = read_idx(write_idx(tmp_path / "x.gz", values))
    np.testing.assert_array_equal(got, values.astype(values.dtype.newbyteorder("=")))
    assert got.dtype.isnative


def test_truncated_gzip_names_the_file(tmp_path):
    images = np.ones((20, 4, 4), dtype=np.uint8)
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, cut=10)
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte\.gz.*truncated") as e:
        read_idx_images(path)
    assert "overdeq data fetch --data mnist" in str(e.value)


def test_corrupted_gzip_payload_is_reported(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)), mtime=0))
    data[-6] ^= 0xFF  # inside the CRC/size trailer: decompression must fail its check
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(IdxFormatError, match=r"labels\.gz: the gzip stream is .*corrupt"):
        read_idx_labels(path)


def test_swapped_files_fail_on_magic(tmp_path):
    labels_as_images = write_idx(
        tmp_path / "train-images-idx3-ubyte.gz", np.zeros(7, dtype=np.uint8)
    )
    with pytest.raises(IdxFormatError, match="0x00000801.*expected 0x00000803") as e:
        read_idx_images(labels_as_images)
    assert "train-images-idx3-ubyte.gz" in str(e.value)
    images_as_labels = write_idx(tmp_path / "l.gz", np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="expected 0x00000801"):
        read_idx_labels(images_as_labels)


def test_non_idx_magic_is_rejected(tmp_path):
    path = tmp_path / "notidx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(IdxFormatError, match="not an IDX header"):
        read_idx(path)


@pytest.mark.parametrize("cut", [1, 16])
def test_data_shorter_than_header_dims(tmp_path, cut):
    images = np.ones((3, 4, 4), dtype=np.uint8)  # 48 data bytes
    path = write_idx(tmp_path / "raw-images", images, gz=False, cut=cut)
    with pytest.raises(IdxFormatError, match=rf"48 data bytes, but the file holds {48 - cut}"):
        read_idx_images(path)


def test_trailing_garbage_is_rejected(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.ones((2, 2, 2), dtype=np.uint8)) + b"\0\0")
    with pytest.raises(IdxFormatError, match="8 data bytes, but the file holds 10"):
        read_idx_images(path)
