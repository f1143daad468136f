import hashlib
import importlib
import json

import numpy as np
import pytest

from overdeq import cli
from overdeq.data import Dataset
from overdeq.rundir import RunResult

from data_fixtures import no_internet, pin_cifar, pin_mnist, tiny_cifar, tiny_mnist  # noqa: F401


def run(*argv):
    """Run the CLI; returns the exit status (argparse/usage errors exit via SystemExit)."""
    try:
        return cli.main(list(argv))
    except SystemExit as exc:
        return exc.code


def test_prepare_equals_what_train_sees(tmp_path, monkeypatch):
    out = tmp_path / "digits.npz"
    prepare = "data prepare --data digits --n 24 --data-seed {seed} --out {out}"
    assert run(*prepare.format(seed=3, out=out).split()) == 0
    seen = {}

    def fake_train(run_cfg, out_dir, *, dataset, **kw):
        seen["ds"] = dataset
        return RunResult(
            summary={"status": "converged"}, history=[], resumed_from=None, skipped=True
        )

    # the module, not the package attribute overdeq.train (the function); cli imports train
    # from it when the command runs
    monkeypatch.setattr(importlib.import_module("overdeq.train"), "train", fake_train)
    assert (
        run(
            "train",
            "--data",
            "digits",
            "--n",
            "24",
            "--data-seed",
            "3",
            "--width",
            "50",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        )
        == 0
    )
    prepared = Dataset.load_npz(out)
    np.testing.assert_array_equal(prepared.X, seen["ds"].X)
    np.testing.assert_array_equal(prepared.y, seen["ds"].y)
    assert prepared.meta["indices"] == seen["ds"].meta["indices"]
    assert prepared.meta["data_seed"] == 3
    other = tmp_path / "other.npz"
    assert run(*prepare.format(seed=4, out=other).split()) == 0
    assert Dataset.load_npz(other).meta["indices"] != prepared.meta["indices"]


def test_prepare_mnist_records_checksums(tmp_path, monkeypatch, capsys):
    tiny_mnist(tmp_path, {0: 5, 1: 5, 2: 5})
    pin_mnist(monkeypatch, tmp_path)
    out = tmp_path / "prepared" / "mnist.npz"
    assert (
        run(
            "data",
            "prepare",
            "--data",
            "mnist",
            "--n",
            "6",
            "--classes",
            "1",
            "2",
            "--labels",
            "pm1",
            "--data-root",
            str(tmp_path),
            "--no-download",
            "--out",
            str(out),
        )
        == 0
    )
    ds = Dataset.load_npz(out)
    assert ds.name == "mnist" and ds.X.shape == (6, 16)
    assert sorted(ds.y.tolist()) == [-1.0] * 3 + [1.0] * 3
    shas = [f["sha256"] for f in ds.meta["files"]]
    folder = tmp_path / "raw" / "mnist"
    assert shas == [
        hashlib.sha256((folder / n).read_bytes()).hexdigest()
        for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    ]
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["source_sha256"] == shas
    assert ds.meta["spec"]["classes"] == [1, 2] and ds.meta["spec"]["labels"] == "pm1"


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "digits", "--n", "999"],  # more than the balanced pool holds
        ["--data", "digits", "--n", "10", "--classes", "0", "11"],  # a class that does not exist
        ["--data", "mnist", "--n", "10", "--no-download"],  # raw files missing
        ["--data", "cifar10", "--n", "10", "--no-download"],
    ],
)
def test_failed_prepare_keeps_the_previous_file(tmp_path, capsys, argv):
    out = tmp_path / "prepared.npz"
    assert run("data", "prepare", "--data", "digits", "--n", "10", "--out", str(out)) == 0
    before = out.read_bytes()
    capsys.readouterr()
    code = run("data", "prepare", *argv, "--data-root", str(tmp_path / "none"), "--out", str(out))
    assert code == 2
    assert "error:" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["prepared.npz"]


def test_failed_prepare_on_bad_checksum_keeps_previous_file(tmp_path, monkeypatch, capsys):
    tiny_cifar(tmp_path)  # not the real archive, and the real pin is in force
    out = tmp_path / "c.npz"
    out.write_bytes(b"previous")
    code = run(
        "data",
        "prepare",
        "--data",
        "cifar10",
        "--n",
        "4",
        "--data-root",
        str(tmp_path),
        "--out",
        str(out),
    )
    assert code == 2 and "expected 170498071 bytes" in capsys.readouterr().err
    assert out.read_bytes() == b"previous"


def test_fetch_verifies_in_place_and_prints_paths(tmp_path, monkeypatch, capsys):
    _, _, path = tiny_cifar(tmp_path)
    pin_cifar(monkeypatch, path)
    assert run("data", "fetch", "--data", "cifar10", "--data-root", str(tmp_path)) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(path)) and line.endswith("verified")
    tiny_mnist(tmp_path, {0: 2, 1: 2})
    pin_mnist(monkeypatch, tmp_path)
    (tmp_path / "raw" / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert (
        run("data", "fetch", "--data", "mnist", "--data-root", str(tmp_path), "--no-download") == 2
    )
    err = capsys.readouterr().err
    assert "t10k-labels-idx1-ubyte.gz" in err and "train-images" not in err  # only the missing one


def test_out_must_be_npz(tmp_path, capsys):
    assert (
        run("data", "prepare", "--data", "digits", "--n", "4", "--out", str(tmp_path / "x.csv"))
        == 2
    )
    assert "must end in .npz" in capsys.readouterr().err
