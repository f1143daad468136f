import hashlib
import urllib.request

import pytest

from overdeq.data.download import (
    ChecksumError,
    DownloadError,
    MissingFileError,
    RemoteFile,
    downloads_allowed,
    ensure,
    ensure_all,
    fetch_file,
    network_allowed,
    verify,
)

from data_fixtures import http_server, no_internet, pin_for  # noqa: F401 (autouse guard)

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP: good/file.bin (right bytes), bad/file.bin (wrong bytes)."""
    site = tmp_path / "site"
    (site / "good").mkdir(parents=True)
    (site / "bad").mkdir()
    (site / "good" / "file.bin").write_bytes(PAYLOAD)
    (site / "bad" / "file.bin").write_bytes(PAYLOAD[:-1] + b"X")  # same size, other content
    rf = pin_for(site / "good" / "file.bin")
    with http_server(site) as base:
        yield base, rf


def _with_urls(rf, *urls):
    return RemoteFile(rf.name, rf.size, rf.sha256, rf.md5, tuple(urls), rf.dataset)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "file.bin")


def test_falls_back_after_a_missing_url(tmp_path, served, capsys):
    base, rf = served
    dest = tmp_path / "raw" / "file.bin"
    got = fetch_file(_with_urls(rf, base + "nowhere/file.bin", base + "good/file.bin"), dest)
    assert dest.read_bytes() == PAYLOAD
    assert got.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert _leftovers(dest.parent) == []  # no temporary file left behind
    assert "good/file.bin" in capsys.readouterr().err


def test_wrong_content_is_deleted_and_next_url_used(tmp_path, served):
    base, rf = served
    dest = tmp_path / "dest" / "file.bin"
    fetch_file(_with_urls(rf, base + "bad/file.bin", base + "good/file.bin"), dest)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == []


def test_all_urls_fail_reports_each_and_leaves_nothing(tmp_path, served):
    base, rf = served
    dest = tmp_path / "dest" / "file.bin"
    bad = base + "bad/file.bin"
    with pytest.raises(DownloadError) as e:
        fetch_file(_with_urls(rf, base + "nowhere/file.bin", bad), dest)
    msg = str(e.value)
    assert f"{base}nowhere/file.bin: HTTP 404" in msg
    actual = hashlib.sha256(PAYLOAD[:-1] + b"X").hexdigest()
    assert f"{bad}: wrong content (sha256 {actual}, expected {rf.sha256})" in msg
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_file_url_download(tmp_path):
    src = tmp_path / "src" / "file.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    rf = _with_urls(pin_for(src), src.as_uri())
    loc = ensure(rf, tmp_path / "dest", download=True)
    assert loc.path.read_bytes() == PAYLOAD and loc.digests.size == len(PAYLOAD)


def test_file_in_place_is_used_without_network(tmp_path, monkeypatch):
    (tmp_path / "file.bin").write_bytes(PAYLOAD)
    rf = _with_urls(pin_for(tmp_path / "file.bin"), "http://127.0.0.1:9/file.bin")
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used for a file in place")
    )
    loc = ensure(rf, tmp_path, download=True)
    assert loc.digests.md5 == hashlib.md5(PAYLOAD).hexdigest()


def test_bad_file_in_place_is_reported_and_kept(tmp_path):
    good = tmp_path / "good.bin"
    good.write_bytes(PAYLOAD)
    rf = RemoteFile(
        "file.bin",
        len(PAYLOAD),
        hashlib.sha256(PAYLOAD).hexdigest(),
        hashlib.md5(PAYLOAD).hexdigest(),
        ("https://example.org/file.bin",),
        "MNIST",
    )
    placed = tmp_path / "raw" / "mnist" / "file.bin"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(PAYLOAD[:100])  # a truncated copy
    with pytest.raises(ChecksumError) as e:
        ensure(rf, placed.parent, download=True)  # must not try to "repair" by downloading
    msg = str(e.value)
    short = hashlib.sha256(PAYLOAD[:100]).hexdigest()
    assert (
        f"size 100 bytes and sha256 {short}, expected {len(PAYLOAD)} bytes and sha256 {rf.sha256}"
    ) in msg
    assert str(placed) in msg and "https://example.org/file.bin" in msg
    assert f"--data-root {tmp_path}" in msg
    assert placed.read_bytes() == PAYLOAD[:100]  # the user's file is not deleted


def test_same_size_other_content_fails_sha256(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(PAYLOAD)
    rf = pin_for(path)
    path.write_bytes(PAYLOAD[::-1])
    with pytest.raises(ChecksumError, match=f"sha256 .*, expected {rf.sha256}"):
        verify(path, rf)


def test_missing_offline_names_every_file_and_checksum(tmp_path):
    rfs = [
        RemoteFile(
            f"f{i}.gz", 10, f"{i}" * 64, "0" * 32, (f"https://example.org/f{i}.gz",), "MNIST"
        )
        for i in range(2)
    ]
    with pytest.raises(MissingFileError) as e:
        ensure_all(rfs, tmp_path / "raw" / "mnist", download=False)
    msg = str(e.value)
    for i in range(2):
        assert str(tmp_path / "raw" / "mnist" / f"f{i}.gz") in msg
        assert f"https://example.org/f{i}.gz" in msg and f"{i}" * 64 in msg
    assert "overdeq data fetch --data mnist" in msg


def test_network_policy_order(monkeypatch):
    monkeypatch.delenv("OVERDEQ_OFFLINE", raising=False)
    assert downloads_allowed() is True
    monkeypatch.setenv("OVERDEQ_OFFLINE", "1")
    assert downloads_allowed() is False
    with network_allowed(True):
        assert downloads_allowed() is True  # the CLI flag beats the environment
        assert downloads_allowed(False) is False  # an explicit argument beats both
    assert downloads_allowed() is False
    monkeypatch.setenv("OVERDEQ_OFFLINE", "0")
    with network_allowed(False):
        assert downloads_allowed() is False
