import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from overdeq.cli import main
from overdeq.io import write_csv
from overdeq.verify import parse_claims, plain_maths, run_checks

REPO = Path(__file__).resolve().parents[1]


def claims_of(checks, claim_id="C1"):
    return {"claims": [{"id": claim_id, "statement": "a statement", "checks": checks}]}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    (root / "aggregate").mkdir(parents=True)
    table = pd.DataFrame(
        {
            "setting": ["a", "a", "b"],
            "x": [1.0, 2.0, 10.0],
            "status": ["ok", "ok", "bad"],
            "w": [100, 200, 200],
        }
    )
    write_csv(root / "aggregate" / "t.csv", table.to_dict("records"))  # with its marker
    return root


def check(**kw):
    base = {
        "id": "k",
        "what": "w",
        "table": "aggregate/t.csv",
        "value": "x",
        "reduce": "max",
        "expect": "<=",
        "threshold": 2.0,
    }
    return {**base, **kw}


@pytest.mark.parametrize(
    "spec, status",
    [
        (check(), "FAIL"),  # max over all rows is 10
        (check(where={"setting": "a"}), "PASS"),
        (check(where="setting == 'a'", reduce="mean", expect="==", threshold=1.5), "PASS"),
        (check(where={"setting": "a"}, threshold=1.9), "FAIL"),
        (check(where={"setting": "a"}, threshold=1.9, tolerance=0.2), "PASS"),
        (check(value="status == 'ok'", reduce="fraction", expect=">=", threshold=1.0), "FAIL"),
        (check(reduce="each", expect="between", threshold=[0.5, 10.0]), "PASS"),
        (check(reduce="each", expect="between", threshold=[1.5, 10.0]), "FAIL"),
        (
            check(
                where=["setting == 'a'", "w == w.max()"], reduce="min", expect=">=", threshold=2.0
            ),
            "PASS",
        ),
        (check(reduce="count", expect="==", threshold=3), "PASS"),
        (check(threshold={"quick": 20.0, "paper": 1.0}), "PASS"),
        (check(where={"setting": "zzz"}), "FAIL"),  # no rows is not a pass
        (check(value="no_such_column"), "FAIL"),
    ],
)
def test_check_semantics(tmp_path, results, spec, status):
    claims = parse_claims(claims_of([spec]))
    report = run_checks(claims, results, "quick")
    assert report.checks[0].status == status, report.checks[0]
    assert report.claims["C1"] == status


def test_missing_table_is_not_a_pass(tmp_path, results):
    claims = parse_claims(claims_of([check(table="nope.csv")]))
    report = run_checks(claims, results, "quick")
    assert report.checks[0].status == "n/a" and report.claims["C1"] == "n/a"


def test_claim_fails_if_any_check_fails(tmp_path, results):
    claims = parse_claims(claims_of([check(id="k1", where={"setting": "a"}), check(id="k2")]))
    report = run_checks(claims, results, "quick")
    assert [c.status for c in report.checks] == ["PASS", "FAIL"]
    assert report.claims["C1"] == "FAIL" and not report.to_dict()["passed"]


def test_malformed_claims_are_rejected_with_the_key(tmp_path):
    with pytest.raises(ValueError, match="claims.json: check k has unknown keys.*bogus"):
        parse_claims(claims_of([check(bogus=1)]), source="claims.json")
    with pytest.raises(ValueError, match="reduce"):
        parse_claims(claims_of([check(reduce="sum")]))


def test_cli_writes_json_and_prints_a_table(tmp_path, results, capsys):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(claims_of([check(where={"setting": "a"})])))
    out = tmp_path / "verify.json"
    assert (
        main(
            [
                "verify",
                "--claims",
                str(claims),
                "--results",
                str(results),
                "--tier",
                "quick",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "PASS" in printed and "C1" in printed
    data = json.loads(out.read_text())
    assert data["claims"] == {"C1": "PASS"} and data["passed"]
    assert main(["verify", "--show", str(out)]) == 0
    assert capsys.readouterr().out == printed


def test_cli_needs_the_claims_as_json(tmp_path, results, capsys):
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump(claims_of([check()])))
    args = ["verify", "--claims", str(claims), "--results", str(results), "--tier", "quick"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--claims" in err and "not valid JSON" in err


def test_the_project_claims_file_is_valid():
    text = (Path(__file__).resolve().parents[1] / "config" / "claims.yaml").read_text()
    claims = parse_claims(yaml.safe_load(text), source="config/claims.yaml")
    assert {c.id for c in claims} >= {"C1", "C2", "C3"}
    assert all(c.checks for c in claims)


def test_the_terminal_table_writes_the_claims_maths_in_unicode():
    assert plain_maths(r"when $\lambda_0 > 0$ holds") == "when λ₀ > 0 holds"
    assert plain_maths(r"$\|W(t)/\sqrt{m}\|_2 < 1$") == "‖W(t)/√m‖₂ < 1"
    assert plain_maths(r"$\lambda_{\min}(ZZ^\top) \ge \lambda_0/2$") == "λmin(ZZᵀ) ≥ λ₀/2"
    assert plain_maths("no maths, 5 $") == "no maths, 5 $"
    claims = yaml.safe_load((REPO / "config" / "claims.yaml").read_text())["claims"]
    texts = [c["statement"] for c in claims] + [k["what"] for c in claims for k in c["checks"]]
    for text in texts:
        plain = plain_maths(text)
        assert "\\" not in plain and "$" not in plain, (text, plain)
