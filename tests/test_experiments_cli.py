"""``overdeq random-deq``: tiny grids write their tables; bad parameters fail early (exit 2)
with a message naming the key and what is allowed; the workflow's schema holds the
experiments' parameter dataclasses (their one link)."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest
import yaml

from overdeq import experiments_random as E
from overdeq.cli import main
from overdeq.data import DATASETS
from overdeq.io import read_csv
from overdeq.kernels import SIGMA_W2_MAX
from overdeq.random_deq import W_NORMS

ROOT = Path(__file__).resolve().parents[1]


def run(args, capsys):
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def job(capsys, experiment, params, flags=""):
    """``overdeq random-deq EXPERIMENT --params-json PARAMS FLAGS`` -> (exit code, stderr)."""
    args = ["random-deq", experiment, "--params-json", json.dumps(params), *flags.split()]
    return run(args, capsys)


def read(path):
    return read_csv(path)  # checks the completeness marker too


TINY = {
    "e1": {
        "data": "gaussian",
        "n": 6,
        "d": 4,
        "widths": [60, 240],
        "seeds": 2,
        "untied_widths": [60],
        "max_depth": 3,
    },
    "e2": {"data": "identity", "ns": [5], "ratios": [0.6, 40], "seeds": 3},
    "e3": {"n": 6, "width": 60, "seeds": 2, "sigma_ws": [0.3, 1.6], "max_iter": 100},
    "e10": {"n": 5, "sigma_ws": [0.2, 0.4]},
}


def test_e1_writes_rows_summary_and_meta(tmp_path, capsys):
    out, summary, meta = tmp_path / "rows.csv", tmp_path / "summary.csv", tmp_path / "meta.json"
    flags = f"--out {out} --summary {summary} --meta {meta} --threads 1"
    code, err = job(capsys, "e1", TINY["e1"], flags)
    assert code == 0, err
    rows = read(out)
    assert len(rows) == 2 * 2 + 2 * 3 * 2  # DEQ: widths x seeds; untied: seeds x depths x refs
    slopes = {r["metric"]: float(r["slope"]) for r in read(summary)}
    assert set(slopes) == {"err_max", "err_rms", "err_lambda"}
    assert all(s < 0 for s in slopes.values())  # the error shrinks with the width
    info = json.loads(meta.read_text())
    assert info["params"]["widths"] == [60, 240] and info["params"]["sigma_w"] == 0.4
    assert info["rows"] == len(rows) and "git" in info


def test_e2_summary_has_probabilities_and_the_threshold_fit(tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps(TINY["e2"]))
    out, summary = tmp_path / "rows.csv", tmp_path / "summary.csv"
    code, err = run(
        ["random-deq", "e2", "--params", str(params), "--out", str(out), "--summary", str(summary)],
        capsys,
    )
    assert code == 0, err
    assert len(read(out)) == 2 * 3
    cells = read(summary)
    assert [float(c["probability"]) for c in cells] == [0.0, 1.0]  # m < n is rank deficient
    # the crossing of P = 0.9 between the two grid ratios (P 0 -> 1), interpolated in log m/n
    ratios = sorted(float(c["ratio"]) for c in cells)
    star = float(cells[0]["ratio_star"])
    assert ratios[0] < star < ratios[1]
    assert star == pytest.approx(ratios[0] * (ratios[1] / ratios[0]) ** 0.9)
    assert all(float(c["threshold_probability"]) == 0.9 for c in cells)
    assert all(math.isnan(float(c["exponent"])) for c in cells)  # one n: no fit


def test_e3_summary_separates_convergent_and_divergent(tmp_path, capsys):
    out, summary = tmp_path / "rows.csv", tmp_path / "summary.csv"
    code, err = job(capsys, "e3", TINY["e3"], f"--out {out} --summary {summary} --device cpu")
    assert code == 0, err
    by_sigma = {float(r["sigma_w"]): r for r in read(summary)}
    assert float(by_sigma[0.3]["converged_fraction"]) == 1.0
    assert float(by_sigma[1.6]["converged_fraction"]) == 0.0
    assert by_sigma[1.6]["regime"] == "divergent"


def test_e10_rows_and_no_summary(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code, err = job(capsys, "e10", TINY["e10"], f"--out {out}")
    assert code == 0, err
    rows = read(out)
    assert len(rows) == 2 * 2  # identity and Gaussian x two sigma_w
    assert all(float(r["lambda_Theta"]) >= float(r["lambda_K"]) > 0 for r in rows)
    code, err = run(
        ["random-deq", "e10", "--out", str(out), "--summary", str(tmp_path / "s.csv")], capsys
    )
    assert code == 2 and "--summary" in err


@pytest.mark.parametrize(
    "experiment, params, key, allowed",
    [
        ("e1", {"widths": [0, 10]}, "widths", "integer >= 1"),
        ("e1", {"data": "imagenet"}, "data", "'mnist'"),
        ("e1", {"sigma_w": 1.5}, "sigma_w", "sqrt(2)"),
        ("e1", {"seeds": True}, "seeds", "count >= 1"),
        ("e1", {"width": 10}, "width", "untied_widths"),  # unknown key: lists the valid ones
        ("e2", {"fraction": 0}, "fraction", "<= 1"),
        ("e2", {"ratios": []}, "ratios", "non-empty list"),
        ("e3", {"w_norm": "svd"}, "w_norm", "'power'"),
        ("e3", {"data": ["identity"]}, "data", "one of"),
        ("e10", {"dtype": "half"}, "dtype", "'float32'"),
        ("e10", {"sigma_ws": [0.4, 2.0]}, "sigma_ws", "sqrt(2)"),
    ],
)
def test_bad_params_name_the_key_and_what_is_allowed(
    experiment, params, key, allowed, tmp_path, capsys
):
    out = tmp_path / "rows.csv"
    code, err = job(capsys, experiment, params, f"--out {out}")
    assert code == 2
    assert repr(key) in err and allowed in err
    assert not out.exists()  # failed before any work


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--params-json", '{"n": 5'], "not valid JSON"),
        (["--params-json", "[1, 2]"], "JSON object"),
        (["--device", "gpu"], "--device"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_flags_exit_2(args, fragment, tmp_path, capsys):
    code, err = run(["random-deq", "e10", *args, "--out", str(tmp_path / "r.csv")], capsys)
    assert code == 2 and fragment in err


SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
BY_WORKFLOW = {"device", "data_root"}  # set by the workflow for every job, not per experiment


@pytest.mark.parametrize("name", list(E.EXPERIMENTS))
def test_the_schema_holds_the_parameter_dataclass(name):
    params = E.EXPERIMENTS[name].params
    rd = SCHEMA["properties"]["random_deq"]
    section = rd["properties"][name]
    keys = {f.name for f in fields(params)} - BY_WORKFLOW
    assert set(section["properties"]) == keys  # every field is in the config, nothing else
    assert set(section["required"]) == keys and section["additionalProperties"] is False
    # the enums and bounds are the library's
    assert rd["$defs"]["dataset"]["enum"] == list(DATASETS)
    assert rd["$defs"]["dtype"]["enum"] == list(E.DTYPES)
    assert rd["properties"]["e3"]["properties"]["w_norm"]["enum"] == list(W_NORMS)
    assert rd["$defs"]["kernel_sigma_w"]["exclusiveMaximum"] == math.sqrt(SIGMA_W2_MAX)
    # the schema accepts the dataclass defaults, and each tier's config builds the dataclass
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["random_deq"][name] = {k: v for k, v in params().to_dict().items() if k in keys}
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    for configfile in ("config/config.yaml", "config/paper.yaml", "tests/workflow/tiny.yaml"):
        section = yaml.safe_load((ROOT / configfile).read_text())["random_deq"]
        params.from_mapping({**section[name], "device": section["device"]})
