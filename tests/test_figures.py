"""The figure layer: its walls, its helpers, and every script run on small synthetic results.

The scripts run by hand (as a researcher would) against a scratch repository holding the
results of tests/figure_fixtures.py; the figures they draw are then measured as printed:
font sizes at the width the paper includes them, panel letters, words instead of config
keys, and every macro a script writes is one the paper uses.
"""

from __future__ import annotations

import ast
import json
import re
import runpy
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from overdeq.values import latex_number, read_values  # noqa: E402
from overdeq_figures import (  # noqa: E402
    TEXT_WIDTH,
    MissingInput,
    html_text,
    label_panels,
    open_job,
    read_lock,
    read_table,
    repo_root,
    save_figure,
    style,
    tex_text,
)

from figure_fixtures import write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
TIER = "synthetic"
MIN_PT = 7.0  # the smallest text allowed in print

# what a script may import: the standard library, these libraries, and our helpers
LIBRARIES = {"numpy", "pandas", "matplotlib", "seaborn", "scipy"}
HELPERS = {"overdeq_figures", "overdeq.values"}
# calls that read files behind the loaders' back (pandas.read_csv, json.load, open, ...)
READERS = {"read_csv", "read_json", "read_fwf", "read_parquet", "read_excel", "read_pickle"}
READERS |= {"load", "loads", "loadtxt", "genfromtxt", "fromfile", "read_text", "read_bytes"}


def _imports(path: Path) -> list[str]:
    """Absolute module names a file imports ('from overdeq import values' -> overdeq.values)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "overdeq":
                names += [f"overdeq.{a.name}" for a in node.names]
            else:
                names.append(node.module)
    return names


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in LIBRARIES:
        return True
    return any(module == h or module.startswith(h + ".") for h in HELPERS)


def test_scripts_import_only_helpers_and_libraries():
    bad = {
        s.name: [m for m in _imports(s) if not _allowed(m)]
        for s in SCRIPTS
        if any(not _allowed(m) for m in _imports(s))
    }
    assert not bad, (
        f"scripts import {bad}; a script may import the standard library, {sorted(LIBRARIES)} "
        f"and {sorted(HELPERS)} only (what else it needs belongs in a table a job writes, or "
        f"in overdeq_figures)"
    )


def test_scripts_read_files_only_through_the_loaders():
    bad = []
    for script in SCRIPTS:
        for node in ast.walk(ast.parse(script.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in READERS or name == "open":
                bad.append(f"{script.name}:{node.lineno} {name}()")
    assert not bad, f"read through job.table/json/text or overdeq_figures.read_table: {bad}"


def test_the_numerical_package_never_sets_up_matplotlib():
    wall = ("matplotlib", "seaborn", "overdeq_figures")
    bad = {
        str(p.relative_to(REPO)): m
        for p in sorted((REPO / "src" / "overdeq").rglob("*.py"))
        for m in _imports(p)
        if m.split(".")[0] in wall
    }
    assert not bad, f"overdeq must not import {wall} (figures live in overdeq_figures): {bad}"


# --- the rules and the scripts agree on names ----------------------------------------------


def _declared(script: Path) -> dict:
    """kind, input names and params names of the script's open_job call."""
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "open_job":
            kw = {k.arg: k.value for k in node.keywords}
            keys = {
                k: {ast.literal_eval(key) for key in kw[k].keys} if k in kw else set()
                for k in ("inputs", "params")
            }
            return {"kind": ast.literal_eval(kw["kind"]), **keys}
    raise AssertionError(f"{script.name} does not call open_job")


def _rules() -> dict[str, dict[str, set[str]]]:
    """script name -> names under input/output/params of the rule that runs it."""
    found = {}
    text = "".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    for block in re.split(r"^(?=rule \w+:)", text, flags=re.M):
        script = re.search(r'script:\n\s+"\.\./\.\./scripts/(\w+)\.py"', block)
        if script:
            found[script.group(1)] = {
                sec: set(re.findall(r"^        (\w+)=", m.group(1), re.M)) if m else set()
                for sec in ("input", "output", "params")
                for m in [
                    re.search(rf"^    {sec}:\n((?:        .*\n|            .*\n)+)", block, re.M)
                ]
            }
    return found


def test_each_rule_gives_its_script_what_the_script_declares():
    rules = _rules()
    assert {s.stem for s in SCRIPTS} == set(rules), "every script has one rule and vice versa"
    outputs = {"figure": {"figure", "png", "values"}, "table": {"table", "html", "values"}}
    for script in SCRIPTS:
        want, rule = _declared(script), rules[script.stem]
        assert rule["input"] == want["inputs"], script.name
        assert rule["params"] == want["params"], script.name
        assert rule["output"] == outputs[want["kind"]], script.name


# --- the helpers -------------------------------------------------------------------------


def test_a_rule_that_lacks_a_name_the_script_needs_is_an_error_naming_both():
    smk = SimpleNamespace(
        rule="fig_demo",
        input={"runs": "a.csv"},
        output={"figure": "f.pdf", "png": "f.png", "values": "v.json"},
        params={"width": 640, "stray": 1},
    )
    with pytest.raises(ValueError) as err:
        open_job(
            "fig_demo", smk, kind="figure", inputs={"runs": "", "history": ""}, params={"width": 1}
        )
    assert "rule fig_demo" in str(err.value) and "['history']" in str(err.value)
    assert "['stray']" in str(err.value)
    del smk.params["stray"]
    job = open_job("fig_demo", smk, kind="figure", inputs={"runs": ""}, params={"width": 1})
    assert not job.interactive and job.params == {"width": 640}
    assert job.input["runs"] == "a.csv" and job.output["png"] == "f.png"


def test_by_hand_a_script_reads_results_of_the_tier_and_writes_to_scratch(tmp_path, monkeypatch):
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "scripts").mkdir()
    monkeypatch.chdir(tmp_path / "scripts")  # a notebook's working directory is its folder
    monkeypatch.delenv("OVERDEQ_ROOT", raising=False)
    monkeypatch.delenv("OVERDEQ_OUT", raising=False)
    monkeypatch.setenv("OVERDEQ_TIER", "paper")
    assert repo_root() == tmp_path
    job = open_job("tab_demo", None, kind="table", inputs={"rows": "results/{tier}/x.csv"})
    assert job.interactive and job.tier == "paper"
    assert job.input["rows"] == str(tmp_path / "results" / "paper" / "x.csv")
    assert job.output == {
        "table": str(tmp_path / "scratch" / "paper" / "tab_demo.tex"),
        "html": str(tmp_path / "scratch" / "paper" / "tab_demo.html"),
        "values": str(tmp_path / "scratch" / "paper" / "tab_demo.json"),
    }
    monkeypatch.setenv("OVERDEQ_OUT", str(tmp_path / "mine"))
    job = open_job("tab_demo", None, kind="table", inputs={})
    assert job.output["table"] == str(tmp_path / "mine" / "tab_demo.tex")
    with pytest.raises(MissingInput, match=r"snakemake --cores all .*x\.csv"):
        read_table(tmp_path / "results" / "paper" / "x.csv")
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(FileNotFoundError, match="OVERDEQ_ROOT"):
        repo_root()


def test_saved_figures_are_byte_stable_and_dateless(tmp_path):
    out = []
    for i in range(2):
        fig, ax = plt.subplots(1, 2)
        ax[0].plot([0, 1], [1, 0])
        label_panels(ax, ["left", ""])
        save_figure(fig, tmp_path / f"f{i}.pdf", png=tmp_path / f"f{i}.png")
        plt.close(fig)
        out.append(((tmp_path / f"f{i}.pdf").read_bytes(), (tmp_path / f"f{i}.png").read_bytes()))
    assert out[0] == out[1]
    pdf, png = out[0]
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf and b"Producer" not in pdf
    assert png.startswith(b"\x89PNG") and b"tIME" not in png and b"Software" not in png
    assert [a.get_title(loc="left") for a in ax] == ["(a) left", "(b)"]


# --- every script on synthetic results ----------------------------------------------------


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Run every script by hand on synthetic results: name -> (job, figures)."""
    root = tmp_path_factory.mktemp("repo")
    (root / "Snakefile").write_text("")
    (root / "scripts").mkdir()
    (root / "paper").symlink_to(REPO / "paper")  # tab_claims reads which macros it cites
    (root / "requirements.lock").symlink_to(REPO / "requirements.lock")  # tab_compute
    write_results(root, TIER)
    out = {}
    render = style._render

    def pdf_only(fig, fmt):  # PNGs are tested once above; drawing each here doubles the time
        return render(fig, fmt) if fmt != "png" else b"\x89PNG (not drawn in this test)"

    with pytest.MonkeyPatch.context() as mp, matplotlib.rc_context():
        mp.setattr(style, "_render", pdf_only)
        mp.setenv("OVERDEQ_ROOT", str(root))
        mp.setenv("OVERDEQ_TIER", TIER)
        mp.delenv("OVERDEQ_OUT", raising=False)
        for script in SCRIPTS:
            run = runpy.run_path(str(script), run_name="__main__")
            figures = [v for v in run.values() if isinstance(v, Figure)]
            out[script.stem] = (run["job"], figures)
        yield out
    plt.close("all")


def _printed_widths() -> dict[str, float]:
    """figure name -> printed width in inches, from \\includegraphics in paper/."""
    main = (REPO / "paper" / "main.tex").read_text()
    paper = re.search(r"\\documentclass\[([^\]]*)\]", main)
    margin = re.search(r"\\usepackage\[margin=([\d.]+)in\]\{geometry\}", main)
    assert paper and margin, (
        "paper/main.tex: expected \\documentclass[...] and geometry margin=..in"
    )
    page = 8.27 if "a4paper" in paper.group(1) else 8.5
    text_width = page - 2 * float(margin.group(1))
    assert text_width == pytest.approx(TEXT_WIDTH), "overdeq_figures.TEXT_WIDTH is not the paper's"
    tex = main + "".join(p.read_text() for p in (REPO / "paper" / "sections").glob("*.tex"))
    found = re.findall(r"\\includegraphics\[width=([\d.]*)\\(?:line|text)width\]\{(\w+)", tex)
    return {name: float(frac or 1) * text_width for frac, name in found}


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_every_script_writes_its_outputs(drawn):
    for name, (job, figures) in drawn.items():
        for key, path in job.output.items():
            assert Path(path).stat().st_size > 0, f"{name} wrote no {key}"
        assert (len(figures) == 1) == (job.kind == "figure"), name


def test_no_text_is_smaller_than_7pt_in_print(drawn):
    widths = _printed_widths()
    small = []
    for name, (job, figures) in drawn.items():
        if job.kind != "figure":
            continue
        assert name in widths, f"paper/ includes no {name}: cannot size its text"
        box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ", Path(job.output["figure"]).read_bytes())
        scale = widths[name] / (float(box.group(1)) / 72)  # printed / drawn width
        small += [
            f"{name}: {t.get_text()!r} at {t.get_fontsize() * scale:.1f} pt"
            for t in _texts(figures[0])
            if t.get_fontsize() * scale < MIN_PT - 1e-9
        ]
    assert not small, f"text below {MIN_PT} pt in print: {small}"


def test_multi_panel_figures_letter_their_panels(drawn):
    for name, (_, figures) in drawn.items():
        axes = [ax for fig in figures for ax in fig.axes if ax.get_visible()]
        if len(axes) > 1:
            letters = [re.match(r"\((\w)\)", ax.get_title(loc="left")) for ax in axes]
            assert all(letters), f"{name}: a panel without a letter"
            assert [m.group(1) for m in letters] == list("abcdefghij"[: len(axes)]), name


def test_figures_show_words_not_config_keys(drawn):
    raw = []
    for name, (_, figures) in drawn.items():
        for fig in figures:
            for t in _texts(fig):
                plain = re.sub(r"\$[^$]*\$", "", t.get_text())  # maths may use _ for subscripts
                if "_" in plain:
                    raw.append(f"{name}: {t.get_text()!r}")
    assert not raw, f"raw config keys in figures (use overdeq_figures.label): {raw}"


def test_every_macro_the_scripts_write_is_used_by_the_paper(drawn):
    tex = "".join(
        p.read_text()
        for p in [REPO / "paper" / "main.tex", *(REPO / "paper" / "sections").glob("*.tex")]
    )
    used = set(re.findall(r"\\([A-Za-z]+)", tex))
    written = {
        macro: name
        for name, (job, _) in drawn.items()
        for macro in json.loads(Path(job.output["values"]).read_text())
    }
    assert "verdictCOne" in written  # the claims' verdicts are written at all
    unused = sorted(f"\\{m} ({written[m]})" for m in set(written) - used)
    assert not unused, f"macros no text of paper/ uses: {unused}"


def test_the_compute_table_names_the_software_and_what_differs_from_the_lock(drawn):
    job, _ = drawn["tab_compute"]
    values = read_values(job.output["values"])
    locked = read_lock(REPO / "requirements.lock")
    assert "PyTorch 2.13.0+cpu" in values["computeSoftware"]
    assert f"Snakemake {locked['snakemake']}" in values["computeSoftware"]
    # the fixture's numpy is not the locked one, its snakemake is
    assert f"numpy 0.0.1 (locked {locked['numpy']})" in values["computeLockStatus"]
    assert "snakemake" not in values["computeLockStatus"]


class _Cells(HTMLParser):
    """Text of every table cell of an HTML page, row by row, and all its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._skip = 0
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "title")
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._in_cell = True

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title")
        self._in_cell &= tag not in ("td", "th")

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._in_cell:
            self.rows[-1][-1] += data


def _cells(path: str) -> _Cells:
    parser = _Cells()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return parser


def test_tables_have_html_pages_with_maths_and_words(drawn):
    from report_checks import ascii_maths

    for name, (job, _) in drawn.items():
        if job.kind != "table":
            continue
        page = Path(job.output["html"]).read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and "<script" not in page, name
        assert "http" not in page.replace('xmlns="http://www.w3.org/1998/Math/MathML"', "")
        cells = _cells(job.output["html"])
        assert len(cells.rows) > 1, f"{name}: no table rows"
        text = " ".join(cells.text)
        assert not ascii_maths(text), f"{name}.html shows maths as ASCII: {ascii_maths(text)}"
        assert "$" not in text and "\\" not in text, f"{name}.html shows LaTeX: {text[:300]}"
        assert not re.search(r"[a-z]_[a-z]", text), f"{name}.html shows a config key: {text}"


def test_claims_table_lists_every_check_and_verdict_with_maths(drawn):
    job = drawn["tab_claims"][0]
    report = json.loads((Path(job.input["report"])).read_text())
    rows = _cells(job.output["html"]).rows
    checks = {row[0]: row for row in rows if len(row) == 6}
    assert set(checks) == {"check"} | {c["check"] for c in report["checks"]}
    assert all(checks[c["check"]][-1] == c["status"] for c in report["checks"])
    claims = {row[0]: row[1] for row in rows if len(row) == 3}
    assert claims == {"claim": "verdict", **report["claims"]}
    page = Path(job.output["html"]).read_text(encoding="utf-8")
    assert "<msub><mi>λ</mi><mn>0</mn></msub>" in page  # lambda_0 as MathML
    tex = Path(job.output["table"]).read_text()
    assert r"$\lambda_0 > 0$" in tex and "lambda\\_" not in tex


def test_training_table_names_settings_in_words(drawn):
    job = drawn["tab_training"][0]
    settings = {row[1] for row in _cells(job.output["html"]).rows[1:]}
    assert "released, calibrated step" in settings and "ours, calibrated step" in settings
    assert "released\\_calibrated" not in Path(job.output["table"]).read_text()


def test_html_text_typesets_maths_and_refuses_unknown_latex():
    assert html_text(r"a\_b \textbf{PASS} 5\% --") == "a_b <strong>PASS</strong> 5% \u2013"
    assert "<msqrt><mi>m</mi></msqrt>" in html_text(r"$\sqrt{m}$")
    assert "<mo>×</mo>" in html_text(r"\ensuremath{1.2 \times 10^{-3}}")
    assert tex_text(r"$\lambda_0$ in 5% of runs_a") == r"$\lambda_0$ in 5\% of runs\_a"
    with pytest.raises(ValueError, match=r"\\cite outside maths"):
        html_text(r"see \cite{x}")
    with pytest.raises(ValueError, match="closing"):
        html_text(r"a $\lambda")
    with pytest.raises(ValueError, match="foo"):
        html_text(r"$\foo$")


def test_a_training_job_redone_on_a_finished_run_counts_the_runs_wall_time(drawn):
    job, _ = drawn["tab_compute"]
    values = read_values(job.output["values"])
    # by hand every benchmark file is one group: e1's 3.5 + 1.25 s and the training job's
    # run, 100 + 160 / 10 = 116 s (not the 0.5 s its redone job's benchmark says)
    assert values["computeTotalMinutes"] == latex_number((3.5 + 1.25 + 116.0) / 60, 3)
