import argparse
import io
import json
import re
import shlex
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from overdeq.cli import build_parser, main
from overdeq.config import RUN_OPTIONS, TrainConfig, make_run_config
from overdeq.data import DataSpec
from overdeq.model import DEQConfig
from overdeq.solvers import SolverConfig
from overdeq.train import _Progress


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
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "already holds this run, finished at step 20 of 20" in err
    assert "nothing to do" in err and f"Results in {tmp_path}/ (summary.json" in err


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


# --- help, version, start-up ---------------------------------------------------------------


def _parsers(parser=None, path=("overdeq",)):
    """Every parser of the command line, with its command path (all commands built)."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_version_is_the_package_metadata():
    out = subprocess.run(
        [sys.executable, "-m", "overdeq.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout == f"overdeq {metadata.version('overdeq')}\n"


def test_help_version_and_light_modules_do_not_import_torch():
    code = textwrap.dedent(
        """
        import contextlib, io, sys
        import overdeq.values
        from overdeq.cli import main
        for argv in (["--help"], ["--version"], []):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    main(argv)
                except SystemExit:
                    pass
        print(sorted(m for m in ("torch", "numpy") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_lazy_package_names_behave_like_eager_imports():
    code = textwrap.dedent(
        """
        import overdeq.train  # the submodule first: the package attribute stays the function
        import overdeq
        from overdeq import DEQ, train
        assert train is overdeq.train and train.__module__ == "overdeq.train", overdeq.train
        assert DEQ.__module__ == "overdeq.model"
        assert set(overdeq.__all__) <= set(dir(overdeq))
        try:
            overdeq.no_such_name
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError("no AttributeError")
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_every_flag_has_help_that_shows_its_default():
    missing = []
    for path, parser in _parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS:
                continue  # positional arguments, --help, --version
            text = formatter._get_help_string(action)
            if not action.help or not (action.required or "(default: " in text):
                missing.append(f"{' '.join(path)} {action.option_strings[0]}: {text!r}")
    assert not missing, "\n".join(missing)


def test_help_is_plain_text_not_rst():
    for path, parser in _parsers():
        text = parser.format_help()
        assert not re.search(r"``|:(math|func|class|data|mod):`", text), " ".join(path)


def _examples(parser):
    """The command lines in a parser's epilog (a trailing backslash continues a line)."""
    lines, current = [], ""
    for raw in (parser.epilog or "").splitlines():
        line = raw.strip()
        if not (current or line.startswith("overdeq ")):
            continue
        current += line.rstrip("\\") + " "
        if not line.endswith("\\"):
            lines.append(shlex.split(current)[1:])
            current = ""
    return lines


def test_examples_in_the_help_parse():
    parser = build_parser()
    examples = [e for _, p in _parsers() for e in _examples(p)]
    assert len(examples) >= 10
    commands = {e[0] for e in examples}
    assert {"train", "data", "random-deq", "verify"} <= commands
    for argv in examples:
        assert parser.parse_args(argv).func is not None, argv


def test_train_help_shows_each_modes_defaults():
    """The defaults shown are the run configuration's, e.g. training's 300 solver iterations
    (not SolverConfig's), and the legacy mode's where it differs."""
    actions = {a.dest: a for a in _train_parser()._actions}
    formatter = _train_parser()._get_formatter()

    def shown(dest):
        return formatter._get_help_string(actions[dest])

    paper = make_run_config(data=DataSpec("identity", n=5), width=10)
    assert f"(default: {paper.train.forward.max_iter}; legacy mode: 25)" in shown("max_iter")
    assert paper.train.forward.max_iter != SolverConfig().max_iter
    assert "(default: off; legacy mode: on)" in shown("biases")
    assert f"(default: {DEQConfig.sigma_w})" in shown("sigma_w")
    assert f"(default: {TrainConfig.steps})" in shown("steps")
    assert "(default: paper)" in shown("mode")


def test_an_unknown_command_lists_the_commands(capsys):
    code, err = run_cli(["trian"], capsys)
    assert code == 2
    assert "invalid choice: 'trian'" in err and "random-deq" in err


# --- progress --------------------------------------------------------------------------------


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_has_rate_and_eta_each_tenth_and_each_minute():
    clock, log = _Clock(), io.StringIO()
    bar = _Progress(1000, True, log, start=500, every_s=60.0, clock=clock)  # resumed at 500
    for step in range(501, 1001):
        clock.now += 2.0  # 2 s per step: 0.5 steps/s
        bar.update(step, 1.0)
    lines = log.getvalue().splitlines()
    first = lines[0]
    assert first.startswith("step 501/1000 (50%)") and "2 s/step" in first
    assert "ETA 16:38" in first  # 499 steps left at 2 s each
    assert lines[-1].startswith("step 1000/1000") and "ETA 0:00" in lines[-1]
    assert "elapsed 16:40" in lines[-1]
    # a line every 30 steps (60 s) within the tenths: far more than 10, far fewer than 500
    assert 15 < len(lines) < 40


def test_progress_on_a_terminal_is_a_tqdm_bar_with_rate_and_eta():
    tty = _Terminal()
    bar = _Progress(200, True, tty, start=50)  # resumed at 50
    for step in range(51, 201):
        bar.update(step, 0.5, "lambda_min 1e-01")
    bar.close()
    text = tty.getvalue()
    assert "\r" in text and text.endswith("\n")  # redrawn in place, then left on its line
    last = text.rstrip("\n").split("\r")[-1]
    assert "200/200" in last and "step/s" in last and "loss 5.000e-01" in last, last
    assert "<00:00" in last  # the ETA


def test_train_logs_progress_with_rate_when_not_a_terminal(tmp_path, capsys):
    argv = ["train", "--n", "6", "--width", "30", "--steps", "20", "--out", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    steps = [line for line in err.splitlines() if line.startswith("step ")]
    assert 5 <= len(steps) <= 12 and all("ETA" in line for line in steps)
    assert f"results in {tmp_path}/ (summary.json, history.csv)" in err
