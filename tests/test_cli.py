import json
import subprocess
import sys

import pytest

from overdeq.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, flag, value",
    [
        (["--width", "0"], "--width", "0"),
        (["--n", "-3"], "--n", "-3"),
        (["--lr", "0"], "--lr", "0"),
        (["--lr", "nan"], "--lr", "nan"),
        (["--sigma-w", "0.7"], "--sigma-w", "0.7"),
        (["--steps", "-1"], "--steps", "-1"),
        (["--data", "imagenet"], "--data", "imagenet"),
        (["--solver", "broyden"], "--solver", "broyden"),
        (["--mode", "fast"], "--mode", "fast"),
        (["--n", "50", "--d", "10"], "--d", "10"),
    ],
)
def test_bad_input_names_the_flag_and_value(args, flag, value, capsys, tmp_path):
    code, err = run_cli(["train", "--out", str(tmp_path / "r"), *args], capsys)
    assert code == 2
    assert flag in err and value in err
    assert not (tmp_path / "r").exists()  # failed before any work


def test_unknown_choices_list_what_is_allowed(capsys, tmp_path):
    _, err = run_cli(["train", "--out", str(tmp_path), "--solver", "newton"], capsys)
    assert "picard" in err and "anderson" in err


def test_train_writes_results_and_a_second_call_is_a_no_op(tmp_path, capsys):
    args = [
        "train",
        "--n",
        "10",
        "--width",
        "40",
        "--steps",
        "20",
        "--log-every",
        "5",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_console_script_entry_point(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "overdeq.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--data",
        "--n",
        "--d",
        "--width",
        "--sigma-w",
        "--lr",
        "--lr-scale",
        "--steps",
        "--log-every",
        "--seed",
        "--mode",
        "--solver",
        "--tol",
        "--precision",
        "--device",
        "--out",
    ):
        assert flag in out
