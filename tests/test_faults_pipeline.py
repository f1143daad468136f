"""Fault injection on the pipeline (docs/reliability.md): intermediate files, configs, data.

Each test breaks one thing the way a crash, a full disk, a hand edit or a wrong config would,
then checks both halves of "no corrupted number reaches the paper": the message names the
file (or the key), says what is wrong and how to recover, AND nothing already computed
changed (a snapshot of the files before and after). The training runs' own faults (run
folder lock, --out, checkpoints) are in the tests of `overdeq train`.
"""

from __future__ import annotations

import fcntl
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from snakemake.exceptions import WorkflowError

from overdeq import DataSpec, cli, make_run_config, train
from overdeq.config import ConfigError
from overdeq.data import load_dataset, max_samples
from overdeq.data import mnist as mnist_module
from overdeq.data.download import DataFileError, ensure, fetch_file, remove_stale_parts
from overdeq.io import ResultFileError, read_csv, read_json, read_table, write_csv, write_json
from overdeq.model import DEQConfig

from data_fixtures import http_server, no_internet, pin_for, tiny_mnist  # noqa: F401
from workflow_helpers import REPO, run_snakemake, scratch_repo, snapshot

TINY = REPO / "tests" / "workflow" / "tiny.yaml"
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def run(capsys, *argv) -> tuple[int, str]:
    """``overdeq ARGV`` in-process -> (exit status, stderr)."""
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def cut(path: Path, keep: float) -> None:
    """Keep the first ``keep`` fraction of the file's bytes (a copy or write cut short)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


ROWS = [{"width": w, "seed": s, "err": 1.0 / w + s * 1e-3} for w in (10, 20) for s in (0, 1)]


@pytest.fixture
def table(tmp_path):
    """results/quick/random_deq/e1/rows.csv with four rows, as the job writes it."""
    path = tmp_path / "results" / "quick" / "random_deq" / "e1" / "rows.csv"
    write_csv(path, ROWS)
    return path


# ---------------------------------------------------------------- tables


def test_a_table_cut_mid_row_is_refused_naming_maker_and_rebuild(table):
    """The issue's first case: rows.csv cut in half, its last row cut mid-number."""
    data = table.read_bytes()
    table.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 6])  # into the last row
    before = snapshot(table.parent)
    with pytest.raises(ResultFileError) as exc:
        read_table(table, made_by="rule random_deq")
    msg = str(exc.value)
    assert msg.startswith(f"{table} is truncated (its marker says 4 rows, 4 found, the last")
    assert "rule random_deq" in msg and f"snakemake --cores all --forcerun {table}" in msg
    assert snapshot(table.parent) == before  # a reader never touches what it reads


def test_a_table_cut_at_a_row_boundary_counts_the_rows(table):
    lines = table.read_bytes().split(b"\n")
    table.write_bytes(b"\n".join(lines[:4]) + b"\n")  # marker, header, 2 of 4 rows
    with pytest.raises(ResultFileError, match=r"truncated \(its marker says 4 rows, 2 found\)"):
        read_csv(table)


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda b: b + b"30,0,0.1\n", "has 5 rows but its marker says 4"),
        (lambda b: b.replace(b"20,1,", b"20,2,"), "was changed after it was written"),
        (lambda b: b.split(b"\n", 1)[1], "has no completeness marker"),  # an older file
        (lambda b: b.replace(b"rows=4", b"rows=x"), "has a damaged completeness marker"),
        (lambda b: b"", "is empty"),
    ],
    ids=["rows-added", "edited", "unmarked", "marker-damaged", "empty"],
)
def test_a_damaged_table_is_refused(table, damage, expected):
    table.write_bytes(damage(table.read_bytes()))
    with pytest.raises(ResultFileError, match=re.escape(expected)) as exc:
        read_table(table)
    assert "Rebuild it with: snakemake --cores all --forcerun" in str(exc.value)


def test_a_folder_in_place_of_a_table_is_named(tmp_path):
    (tmp_path / "rows.csv").mkdir()
    with pytest.raises(ResultFileError, match="rows.csv is a folder, not a file"):
        read_csv(tmp_path / "rows.csv")
    with pytest.raises(ResultFileError, match="does not exist"):
        read_csv(tmp_path / "other.csv")


def test_expected_columns_and_types_are_checked(table):
    assert len(read_csv(table, columns={"width": int, "err": float})) == 4
    with pytest.raises(ResultFileError, match=r"lacks the column\(s\) \['lambda'\]"):
        read_csv(table, columns=["width", "lambda"])
    write_csv(table, [*ROWS, {"width": "wide", "seed": 0, "err": 0.5}])
    with pytest.raises(ResultFileError, match="holds 'wide' in column 'width' of row 5"):
        read_csv(table, columns={"width": int})


def test_a_marked_table_reads_with_the_documented_pandas_option(table):
    """Other programs skip the marker line: pandas.read_csv(path, skiprows=1)."""
    pd.testing.assert_frame_equal(read_table(table), pd.read_csv(table, skiprows=1))
    assert read_table(table)["err"].tolist() == [r["err"] for r in ROWS]  # full precision


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "text, keys, expected",
    [
        (None, (), "is cut short (its JSON stops at line"),
        ('{"status": "finished",, "config": {}}\n', (), "is not valid JSON"),
        ('["status"]\n', ("status",), "holds a JSON list, not an object"),
        ('{"status": "finished"}\n', ("status", "config_hash"), "lacks the key(s) ['config_hash']"),
    ],
    ids=["cut", "invalid", "not-an-object", "missing-key"],
)
def test_a_damaged_json_file_is_refused(tmp_path, text, keys, expected):
    path = tmp_path / "summary.json"
    write_json(path, {"status": "finished", "config": {"a": [1, 2, 3]}, "config_hash": "x"})
    if text is None:
        cut(path, 0.5)
    else:
        path.write_text(text)
    with pytest.raises(ResultFileError, match=re.escape(expected)) as exc:
        read_json(path, keys=keys, made_by="rule train")
    assert str(exc.value).startswith(str(path)) and "It is made by rule train" in str(exc.value)


# ---------------------------------------------------------------- training runs, aggregate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished paper-mode run (with spectrum.npz) and a legacy run with the released
    readouts, in the workflow's run-folder layout, and their aggregate."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: threads only contend on a shared machine
    try:
        for setting, kw in {
            "calibrated": {},
            "released": {"mode": "legacy", "lr": 1e-3, "legacy_readouts": True},
        }.items():
            cfg = make_run_config(
                data=DataSpec("identity", n=6), width=40, steps=40, log_every=10, **kw
            )
            out = root / "train" / "identity" / setting / "m40" / "seed0"
            train(cfg, out, progress=False, tags={"dataset": "identity", "setting": setting})
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def runs(trained, tmp_path, capsys):
    """A copy of the trained runs with their aggregate tables already made."""
    root = tmp_path / "results"
    shutil.copytree(trained, root)
    dirs = sorted(root.glob("train/*/*/*/*"))
    code, err = run(
        capsys,
        "aggregate",
        *dirs,
        "--out-runs",
        root / "aggregate" / "runs.csv",
        "--out-history",
        root / "aggregate" / "history.csv",
    )
    assert code == 0, err
    return SimpleNamespace(root=root, dirs=dirs, paper=dirs[0], legacy=dirs[1])


def aggregate(capsys, runs) -> tuple[int, str]:
    agg = runs.root / "aggregate"
    return run(
        capsys,
        "aggregate",
        *runs.dirs,
        "--out-runs",
        agg / "runs.csv",
        "--out-history",
        agg / "history.csv",
    )


@pytest.mark.parametrize(
    "file, damage, expected",
    [
        ("history.csv", 0.5, "is truncated"),  # the second case
        ("history.csv", "unmarked", "has no completeness marker"),
        ("summary.json", 0.6, "is cut short"),
        ("spectrum.npz", 0.5, "is not a readable spectrum"),
        ("spectrum.npz", "delete", "is missing, but"),
    ],
    ids=["history-cut", "history-unmarked", "summary-cut", "spectrum-cut", "spectrum-gone"],
)
def test_aggregate_refuses_a_damaged_run_and_keeps_its_tables(capsys, runs, file, damage, expected):
    path = runs.paper / file
    if damage == "delete":
        path.unlink()
    elif damage == "unmarked":
        path.write_bytes(path.read_bytes().split(b"\n", 1)[1])
    else:
        cut(path, damage)
    before = snapshot(runs.root)
    code, err = aggregate(capsys, runs)
    assert code == 2 and expected in err, err
    assert str(path) in err and "rule train" in err
    if file == "spectrum.npz":  # rerunning the run rewrites it from its checkpoint
        assert "rerunning the run rewrites it from the run's checkpoint" in err
        assert f"--forcerun {runs.paper / 'summary.json'}" in err
    else:
        assert f"--forcerun {path}" in err
    assert snapshot(runs.root) == before  # both aggregate tables as they were


def test_aggregate_reads_the_released_readouts_of_a_marked_history(capsys, runs):
    rows = read_csv(runs.root / "aggregate" / "runs.csv", columns={"max_readout_error": float})
    by_setting = {r["setting"]: r for r in rows}
    assert by_setting["released"]["max_readout_error"] != ""  # read from history.csv
    assert by_setting["calibrated"]["predicted_rate"] != ""  # from spectrum.npz


def test_train_redoes_a_finished_run_whose_history_is_cut(runs):
    """`overdeq train` on a run folder whose summary is fine but history.csv is cut short
    (the rebuild the aggregate's message asks for) redoes the run instead of skipping it."""
    history = runs.legacy / "history.csv"
    good = history.read_bytes()
    cut(history, 0.5)
    cfg = make_run_config(
        data=DataSpec("identity", n=6),
        width=40,
        steps=40,
        log_every=10,
        mode="legacy",
        lr=1e-3,
        legacy_readouts=True,
    )
    result = train(cfg, runs.legacy, progress=False, tags={"dataset": "identity"})
    assert not result.skipped
    assert history.read_bytes() == good  # the same history, from the final checkpoint


# ---------------------------------------------------------------- verify, latex-values


def claims_json(tmp_path: Path, table: str) -> Path:
    check = {
        "id": "k",
        "what": "w",
        "table": table,
        "value": "err",
        "reduce": "max",
        "expect": "<",
        "threshold": 1.0,
    }
    path = tmp_path / "claims.json"
    path.write_text(json.dumps({"claims": [{"id": "C", "statement": "s", "checks": [check]}]}))
    return path


def test_verify_refuses_a_cut_table_and_keeps_its_report(tmp_path, capsys, table):
    results = tmp_path / "results" / "quick"
    claims, report = claims_json(tmp_path, "random_deq/e1/rows.csv"), results / "verify.json"
    args = ("verify", "--claims", claims, "--results", results, "--tier", "quick")
    code, err = run(capsys, *args, "--out", report)
    assert code == 0 and json.loads(report.read_text())["claims"] == {"C": "PASS"}, err
    cut(table, 0.7)
    before = snapshot(tmp_path)
    code, err = run(capsys, *args, "--out", report)
    assert code == 2 and f"{table} is truncated" in err and "--forcerun" in err
    assert snapshot(tmp_path) == before


def test_verify_refuses_a_folder_where_a_table_should_be(tmp_path, capsys):
    results = tmp_path / "results"
    (results / "random_deq" / "e1" / "rows.csv").mkdir(parents=True)
    claims = claims_json(tmp_path, "random_deq/e1/rows.csv")
    code, err = run(capsys, "verify", "--claims", claims, "--results", results, "--tier", "q")
    assert code == 2 and "rows.csv is a folder, not a file" in err  # never a silent n/a


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("cut", "is cut short"),
        ("checks", "does not hold a verify report"),
        ("keys", "lacks the key(s) ['statements']"),
    ],
)
def test_verify_show_refuses_a_damaged_report(tmp_path, capsys, damage, expected):
    """tab_claims and `snakemake verify` read verify.json: name it and its rule."""
    report = tmp_path / "verify.json"
    good = {"tier": "q", "claims": {"C": "PASS"}, "statements": {"C": "s"}, "checks": []}
    write_json(
        report,
        {**good, "checks": [{"claim": "C", "check": "k"}]}
        if damage == "checks"
        else {k: v for k, v in good.items() if k != "statements"}
        if damage == "keys"
        else good,
    )
    if damage == "cut":
        cut(report, 0.5)
    code, err = run(capsys, "verify", "--show", report)
    assert code == 2 and expected in err and "rule verify_claims" in err, err


def test_verify_refuses_claims_that_lack_a_key(tmp_path, capsys, table):
    claims = claims_json(tmp_path, "random_deq/e1/rows.csv")
    data = json.loads(claims.read_text())
    del data["claims"][0]["checks"][0]["expect"]
    claims.write_text(json.dumps(data))
    code, err = run(capsys, "verify", "--claims", claims, "--results", tmp_path, "--tier", "q")
    assert code == 2 and "check k" in err and "expect" in err  # not a TypeError traceback
    claims.write_text('{"claims": [')
    code, err = run(capsys, "verify", "--claims", claims, "--results", tmp_path, "--tier", "q")
    assert code == 2 and "--claims" in err and "cut short" in err and "rule claims_json" in err


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "is cut short"),
        ('{"lossRate": 3, "bad-name": "1"}', "not macro name -> text: ['bad-name']"),
        ('["x"]', "holds a JSON list"),
    ],
    ids=["cut", "bad-macro", "not-an-object"],
)
def test_latex_values_refuses_a_damaged_values_file(tmp_path, capsys, content, expected):
    values = tmp_path / "values"
    write_json(values / "fig_rate.json", {"rateMedian": "0.91", "rateCount": "12"})
    write_json(values / "fig_loss.json", {"lossFinal": "1e-6"})
    out = tmp_path / "values.tex"
    code, err = run(capsys, "latex-values", *sorted(values.iterdir()), "--tier", "q", "--out", out)
    assert code == 0 and "\\newcommand{\\rateMedian}{0.91}" in out.read_text(), err
    if content is None:
        cut(values / "fig_rate.json", 0.5)
    else:
        (values / "fig_rate.json").write_text(content)
    before = snapshot(tmp_path)
    code, err = run(capsys, "latex-values", *sorted(values.iterdir()), "--tier", "q", "--out", out)
    assert code == 2 and expected in err and "rule fig_rate (scripts/fig_rate.py)" in err, err
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- prepared data, parameters


@pytest.mark.parametrize("damage", ["cut", "garbled", "empty", "folder"])
def test_a_damaged_prepared_data_file_is_named(tmp_path, capsys, damage):
    path = tmp_path / "results" / "quick" / "data" / "identity_n6_seed0.npz"
    load_dataset(DataSpec("identity", n=6)).save_npz(path)
    data = path.read_bytes()
    if damage == "folder":
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes(
            {
                "cut": data[: len(data) // 2],
                "garbled": data[:300] + b"\0" * 64 + data[364:],
                "empty": b"",
            }[damage]
        )
    for argv in (
        ["gradient-error", "--data-file", path, "--width", 20, "--out", tmp_path / "g.csv"],
        ["train", "--data-file", path, "--n", 6, "--width", 20, "--out", tmp_path / "run"],
    ):
        code, err = run(capsys, *argv)
        assert code == 2 and str(path) in err, err
        assert ("is a folder" if damage == "folder" else "rule prepare_data") in err
    assert not (tmp_path / "g.csv").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["missing", "folder", "binary"])
def test_random_deq_params_file_that_cannot_be_read(tmp_path, capsys, kind):
    params = tmp_path / "p.json"
    if kind == "folder":
        params.mkdir()
    elif kind == "binary":
        params.write_bytes(b"\xff\xfe\x00")
    code, err = run(capsys, "random-deq", "e10", "--params", params, "--out", tmp_path / "r.csv")
    assert code == 2 and f"--params {params}: cannot read it" in err, err
    assert not (tmp_path / "r.csv").exists()


# ---------------------------------------------------------------- raw data and downloads


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if anything tries to download."""

    def refuse(*args, **kwargs):
        pytest.fail("a download was attempted")

    monkeypatch.setattr("overdeq.data.download.fetch_file", refuse)


@pytest.mark.parametrize("command", ["fetch", "prepare"])
def test_offline_environment_is_honoured_by_data_commands(
    tmp_path, capsys, monkeypatch, no_download, command
):
    monkeypatch.setenv("OVERDEQ_OFFLINE", "1")
    extra = ["--n", 4, "--out", tmp_path / "m.npz"] if command == "prepare" else []
    code, err = run(capsys, "data", command, "--data", "mnist", "--data-root", tmp_path, *extra)
    assert code == 2 and "downloading is switched off" in err and "OVERDEQ_OFFLINE=1" in err
    assert "train-images-idx3-ubyte.gz" in err
    assert list(tmp_path.iterdir()) == []


def test_download_flag_beats_the_offline_environment(tmp_path, capsys, monkeypatch):
    site = tmp_path / "site"
    tiny_mnist(site, {0: 3, 1: 3})
    with http_server(site / "raw" / "mnist") as base:
        for name in list(mnist_module.MNIST_FILES):
            pin = pin_for(site / "raw" / "mnist" / name, urls=(base + name,))
            monkeypatch.setitem(mnist_module.MNIST_FILES, name, pin)
        monkeypatch.setenv("OVERDEQ_OFFLINE", "1")
        code, err = run(
            capsys, "data", "fetch", "--data", "mnist", "--data-root", tmp_path / "d", "--download"
        )
    assert code == 0, err
    assert snapshot(tmp_path / "d" / "raw" / "mnist") == snapshot(site / "raw" / "mnist")


@pytest.mark.parametrize("offline", [True, False])
def test_a_folder_where_a_raw_file_belongs_is_named(tmp_path, capsys, monkeypatch, offline):
    folder = tmp_path / "raw" / "mnist" / "train-images-idx3-ubyte.gz"
    (folder / "inside").mkdir(parents=True)
    (folder / "inside" / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    monkeypatch.setattr("overdeq.data.download.fetch_file", lambda *a, **k: pytest.fail("fetch"))
    flag = "--no-download" if offline else "--download"
    code, err = run(capsys, "data", "fetch", "--data", "mnist", "--data-root", tmp_path, flag)
    assert code == 2 and f"{folder} is a folder, but the MNIST file" in err and "missing" not in err
    assert snapshot(tmp_path) == before


def test_a_file_where_the_data_folder_belongs_is_named(tmp_path, capsys):
    (tmp_path / "raw").write_text("not a folder")
    code, err = run(capsys, "data", "fetch", "--data", "cifar10", "--data-root", tmp_path)
    assert code == 2 and f"{tmp_path / 'raw'} is a file" in err, err


def test_a_killed_downloads_part_file_is_removed_by_the_next_attempt(tmp_path):
    payload = bytes(range(256)) * 16
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "file.bin").write_bytes(payload)
    dest = tmp_path / "raw" / "file.bin"
    dest.parent.mkdir()
    stale = dest.parent / ".file.bin.k1ll3d.part"  # what a killed download leaves
    stale.write_bytes(payload[:1000])
    live = dest.parent / ".file.bin.l1v3.part"  # another process's download, still running
    live.write_bytes(payload[:10])
    with open(live, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with http_server(tmp_path / "site") as base:
            rf = pin_for(tmp_path / "site" / "file.bin", urls=(base + "nowhere", base + "file.bin"))
            fetch_file(rf, dest)
        assert dest.read_bytes() == payload
        assert sorted(p.name for p in dest.parent.iterdir()) == [live.name, "file.bin"]
    assert remove_stale_parts(dest) == [live]  # its holder is gone now
    # a handled failure (every URL wrong) leaves no temporary file either
    dest.unlink()
    with http_server(tmp_path / "site") as base:
        bad = pin_for(tmp_path / "site" / "file.bin", urls=(base + "nowhere",))
        with pytest.raises(DataFileError, match="every URL failed"):
            ensure(bad, dest.parent)
    assert list(dest.parent.iterdir()) == []


# ---------------------------------------------------------------- the config check

CHECK = REPO / "workflow" / "rules" / "config_check.smk"


def config_problems(config: dict) -> str | None:
    """The workflow's config check on ``config``: its message, or None when it passes."""
    fake = SimpleNamespace(basedir=str(REPO), configfiles=["config/config.yaml"])
    try:
        runpy.run_path(str(CHECK), init_globals={"config": config, "workflow": fake})
    except WorkflowError as exc:
        return str(exc)
    return None


def edited(**changes):
    """A deep copy of config/config.yaml with ``changes`` (dotted key -> value, or None to
    delete the key)."""
    config = json.loads(json.dumps(CONFIG))
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return config


def merged(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, mappings merged key by key (as Snakemake's --configfile)."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merged(base[key], value) if both else value
    return out


def test_the_shipped_configs_pass_the_check():
    assert config_problems(CONFIG) is None
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert config_problems(merged(CONFIG, paper)) is None
    assert config_problems(yaml.safe_load(TINY.read_text())) is None
    # a setting's own precision where it does something is accepted
    assert config_problems(edited(**{"training.settings.released.precision": "tf32"})) is None
    assert config_problems(edited(**{"training.settings.calibrated.precision": "mixed"})) is None


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"trainng": {}}, "trainng: not a known key; the config's top level takes ablations,"),
        ({"ablations": None}, "(top level): 'ablations' is a required property"),
        ({"compute.precision": "fp8"}, "compute.precision: 'fp8' is not one of"),
        (
            {"training.settings.calibrated.sigma_w": 0.6},
            "training.settings.calibrated: sigma_w 0.6 in paper mode gives 2 sigma_w sqrt(m / "
            "m_scale) = 1.20 >= 1 at width 640 (grid main)",
        ),
        (
            {"training.datasets.digits": {"n": 400}},
            "training.datasets.digits.n: n = 400 is more than digits has: at most 356",
        ),
        ({"random_deq.e10.n": 360}, "random_deq.e10.n: n = 360 is more than digits has"),
        (
            {"training.datasets.gaussian": {"n": 10}},
            "training.datasets.gaussian: gaussian data needs its input dimension d",
        ),
        (
            {"training.datasets.identity": {"n": 40, "d": 20}},
            "identity data has at most d = 20 distinct rows, but n = 40",
        ),
        (
            {"training.settings.released.precision": "mixed"},
            "training.settings.released.precision: mixed does nothing with the released gradient",
        ),
        ({"training.settings.released.precision": "fp8"}, "'fp8' is not one of"),
    ],
    ids=[
        "unknown-key",
        "no-ablations",
        "bad-enum",
        "expansive",
        "n-digits",
        "n-e10",
        "gaussian-no-d",
        "identity-d",
        "mixed-legacy-setting",
        "setting-precision-enum",
    ],
)
def test_the_config_check_refuses_with_the_key(changes, expected):
    message = config_problems(edited(**changes))
    assert message is not None and expected in message, message
    assert "nothing was run" in message and "config/config.yaml" in message
    assert len(message.splitlines()) < 12  # one line per problem, not the schema dump


def test_the_contraction_check_agrees_with_the_library():
    """The workflow refuses a paper-mode sigma_w exactly when overdeq train would."""
    assert CONFIG["training"]["grids"]["main"]["widths"][-1] == 640
    for sigma_w in (0.3, 0.49, 0.5, 0.6):
        config = edited(**{"training.settings.calibrated.sigma_w": sigma_w})
        try:
            make_run_config(data=DataSpec("identity", n=40), width=640, sigma_w=sigma_w)
            library_refuses = False
        except ConfigError:
            library_refuses = True
        assert (config_problems(config) is not None) == library_refuses, sigma_w
    allowed = edited(**{"training.settings.calibrated.sigma_w": 0.6})
    allowed["training"]["settings"]["calibrated"]["allow_expansive"] = True
    assert config_problems(allowed) is None
    legacy = edited(**{"training.settings.released.sigma_w": 0.6})  # legacy promises nothing
    assert config_problems(legacy) is None
    assert (
        runpy.run_path(
            str(CHECK),
            init_globals={
                "config": CONFIG,
                "workflow": SimpleNamespace(basedir=str(REPO), configfiles=[]),
            },
        )["DEFAULT_SIGMA_W"]
        == DEQConfig.sigma_w
    )


def test_the_sample_limits_are_the_loaders():
    limits = runpy.run_path(
        str(CHECK),
        init_globals={
            "config": CONFIG,
            "workflow": SimpleNamespace(basedir=str(REPO), configfiles=[]),
        },
    )["MAX_N"]
    assert limits == {name: max_samples(name) for name in ("digits", "mnist", "cifar10")}
    docs = (REPO / "docs" / "data.md").read_text()
    for name, n in limits.items():
        assert re.search(rf"^\| `{name}`.*\| {n} +\|$", docs, re.M), name
    load_dataset(DataSpec("digits", n=limits["digits"]))  # the bundled set really has them
    with pytest.raises(ValueError, match="lower --n"):
        load_dataset(DataSpec("digits", n=limits["digits"] + 1))


def snakemake(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake(*args, cwd=repo, timeout=300)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A scratch copy of the repository (for workflow dry runs)."""
    return scratch_repo(tmp_path_factory.mktemp("repo"), REPO / "config" / "config.yaml")


@pytest.mark.parametrize(
    "old, new, expected",
    [
        # a tab is reported on its own line
        (
            "\n    sigma_u: 1.0",
            "\n\t    sigma_u: 1.0",
            "line {at}, column 1: found character '\\t'",
        ),
        # an unclosed bracket where YAML notices it: the next line
        ("ns: [15, 30, 60]", "ns: [15, 30, 60", "line {after}, column 5: expected ',' or ']'"),
    ],
    ids=["tab", "bracket"],
)
def test_a_yaml_error_in_the_config_names_file_and_line(repo, old, new, expected):
    config = repo / "config" / "config.yaml"
    good = config.read_text()
    at = good[: good.index(old) + (1 if old.startswith("\n") else 0)].count("\n") + 1
    try:
        config.write_text(good.replace(old, new, 1))
        out = snakemake(repo, "-n")
    finally:
        config.write_text(good)
    text = out.stdout + out.stderr
    message = "config/config.yaml, " + expected.format(at=at, after=at + 1)
    assert out.returncode != 0 and message in text, text[-2000:]
    assert "not valid JSON or YAML" not in text  # Snakemake's message, which names neither


def test_a_yaml_error_in_a_configfile_is_named_by_the_checker(tmp_path, repo):
    """Snakemake reads --configfile before any workflow code: ./reproduce checks it with
    tools/check_yaml.py first; plain snakemake still fails before any job, with its own
    message."""
    bad = tmp_path / "mine.yaml"
    bad.write_text("tier: mine\ntraining:\n\tlog_every: 5\n")
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "check_yaml.py"), str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and f"{bad}, line 3, column 1" in out.stderr
    assert "replace the tab with spaces" in out.stderr
    plain = snakemake(repo, "-n", "--configfile", str(bad))
    assert plain.returncode != 0 and "not valid JSON or YAML" in plain.stdout + plain.stderr
    assert "./reproduce" in (REPO / "docs" / "reliability.md").read_text()
    assert "tools/check_yaml.py" in (REPO / "reproduce").read_text()


def test_a_config_without_ablations_fails_the_schema_not_common_smk(repo, tmp_path):
    config = repo / "config" / "config.yaml"
    good = config.read_text()
    try:
        config.write_text(yaml.safe_dump(edited(ablations=None)))
        out = snakemake(repo, "-n")
    finally:
        config.write_text(good)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "'ablations' is a required property" in text
    assert "KeyError" not in text and len(text.splitlines()) < 15, text[-3000:]


# ---------------------------------------------------------------- the workflow (slow)


def _plan(out: subprocess.CompletedProcess) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^([a-z_0-9]+)\s+(\d+)$", out.stdout, re.M)}


@pytest.mark.slow
def test_workflow_rebuilds_what_is_missing_and_stops_on_what_is_corrupt(tmp_path):
    """The tiny tier up to verify.json (every compute job, no figure script): a missing
    history.csv or meta.json is rebuilt (never "Nothing to be done"); a table cut short stops
    the job that reads it, with the message; the command it prints rebuilds it and the
    verdicts come back byte-identical."""
    repo = scratch_repo(tmp_path / "repo", TINY)
    res = repo / "results" / "tiny"
    target = "results/tiny/verify.json"
    first = snakemake(repo, "--cores", "2", target, "results/tiny/random_deq/e10/meta.json")
    assert first.returncode == 0, first.stderr[-3000:]
    history = res / "train" / "identity" / "calibrated" / "m160" / "seed0" / "history.csv"
    rows = res / "random_deq" / "e1" / "rows.csv"
    good_history, good_rows = history.read_bytes(), rows.read_bytes()

    meta = "results/tiny/random_deq/e10/meta.json"
    history.unlink()
    (repo / meta).unlink()
    plan = _plan(snakemake(repo, "-n", "--quiet", "rules"))  # the default target, all
    assert plan.get("train") == 1 and plan.get("random_deq_e10") == 1, plan
    # (the default target would also draw the figures; these are the jobs it plans here)
    again = snakemake(repo, "--cores", "2", str(history.relative_to(repo)), meta)
    assert again.returncode == 0, again.stderr[-3000:]
    assert history.read_bytes() == good_history  # resumed from its final checkpoint
    assert (repo / meta).is_file()
    refresh = snakemake(repo, "--cores", "2", target)  # the new summary's provenance
    assert refresh.returncode == 0, refresh.stderr[-3000:]
    report = (res / "verify.json").read_bytes()

    rows.write_bytes(good_rows[: len(good_rows) * 2 // 3])
    broken = snakemake(repo, "--cores", "2", target)
    log = (repo / "logs" / "tiny" / "verify.log").read_text()
    assert broken.returncode != 0 and "rows.csv is truncated" in log, log
    assert rows.read_bytes() == good_rows[: len(good_rows) * 2 // 3]  # nothing rebuilt silently
    hint = re.search(r"[Rr]ebuild it with: (snakemake [^\n]+)", log)[1]
    assert hint == "snakemake --cores all --forcerun results/tiny/random_deq/e1/rows.csv"
    # the printed command, for one target (named first: --forcerun takes every later word)
    fixed = snakemake(repo, target, *hint.split()[1:])
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert rows.read_bytes() == good_rows and (res / "verify.json").read_bytes() == report
    assert "Nothing to be done" in snakemake(repo, "-n", target).stdout
