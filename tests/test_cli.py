import json
import subprocess
import sys

import pytest

from overdeq.cli import build_parser, main
from overdeq.config import RUN_OPTIONS, make_run_config
from overdeq.data import DataSpec


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


def _train_parser():
    (train,) = [a.choices["train"] for a in build_parser()._actions if getattr(a, "choices", None)]
    return train


def test_every_knob_flag_reaches_make_run_config():
    """A flag whose dest is not a run option would be silently dropped: none is."""
    not_knobs = {"help", "data", "data_file", "n", "d", "classes", "labels", "data_root"}
    not_knobs |= {"width", "gpu_wait", "memory_budget_gb", "threads", "out", "overwrite"}
    not_knobs |= {"quiet", "tag"}
    dests = {a.dest for a in _train_parser()._actions} - not_knobs
    assert dests <= set(RUN_OPTIONS), dests - set(RUN_OPTIONS)


def test_flags_not_given_keep_the_library_defaults():
    """Without flags the CLI builds exactly the library's default run configuration."""
    args = _train_parser().parse_args(["--out", "x"])
    assert all(getattr(args, k, None) is None for k in RUN_OPTIONS)
    spec = DataSpec(args.data or "identity", n=args.n)  # --data not given: identity
    default = make_run_config(data=spec, width=args.width)
    tuned = make_run_config(data=spec, width=args.width, tol=1e-9, backward_max_iter=77)
    assert tuned.train.forward.tol == tuned.train.backward.tol == 1e-9
    assert tuned.train.backward.max_iter == 77 != tuned.train.forward.max_iter
    assert default.train.forward.tol == 1e-6 and default.model.sigma_w == 0.4


def test_solver_flags_act_on_the_mode_preset(tmp_path, capsys):
    """--tol changes the released solver's tolerance and keeps the rest of the preset."""
    run = make_run_config(mode="legacy", data=DataSpec("identity", n=5), width=10, tol=1e-6)
    assert run.train.forward.name == "anderson" and run.train.forward.tol == 1e-6
    assert run.train.forward.criterion == "global" and run.train.backward.tol == 1e-6
