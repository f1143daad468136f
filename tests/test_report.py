"""The Snakemake HTML report: captions, what it shows in a browser, the commands it prints.

The captions (workflow/report/*.rst) are rendered as Snakemake renders them (Jinja, then
docutils); a report of a two-rule workflow is built and read in headless Chromium
(tests/chromium.py). The report of the real workflow is read the same way in the slow
tiny-tier test of tests/test_workflow.py.
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import jinja2
import matplotlib
import yaml
from docutils.core import publish_parts

from overdeq_figures import html_page, html_table

from report_checks import ascii_maths, read_report, require_chromium
from workflow_helpers import REPO, run_snakemake

matplotlib.use("Agg")

CAPTIONS = REPO / "workflow" / "report"


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _visible(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts)


def render_caption(path: Path, config: dict) -> str:
    """A caption as Snakemake renders it: a Jinja template (``snakemake.config``), then
    reStructuredText through docutils' HTML writer; a docutils warning is an error here."""
    text = jinja2.Template(path.read_text(), undefined=jinja2.StrictUndefined).render(
        snakemake=SimpleNamespace(config=config)
    )
    return publish_parts(
        text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2}
    )["body"]


def test_ascii_maths_finds_maths_typed_as_text():
    typed = "lambda_0 > 0, sigma_w, ||W||, sqrt(m), R^2 and Theta_0, L_0, lambda_min(K)"
    assert ascii_maths(typed) == [
        "lambda_0", "sigma_w", "||", "||", "sqrt(", "R^2", "Theta_0", "L_0", "lambda_min",
    ]  # fmt: skip
    prose = "figures/fig_loss.png, tab_claims.html, released, calibrated step; λ₀ > 0, 1e-2"
    assert ascii_maths(prose) == []


def test_every_caption_renders_with_maths_and_no_ascii_maths():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for path in sorted(CAPTIONS.glob("*.rst")):
        body = render_caption(path, config)
        text = _visible(body)
        assert not ascii_maths(text), f"{path.name} shows {ascii_maths(text)}: use :math:`...`"
        assert "$" not in text and "\\" not in text, f"{path.name}: LaTeX outside :math:"


def test_every_figure_and_table_has_a_caption_and_a_report_section():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    sections = set(re.findall(r'^    "(\w+)": "\d ', common, re.M))
    titles = re.search(r"^REPORT_TITLES = \{\n(.*?)^\}", common, re.M | re.S)
    assert titles and set(re.findall(r'^    "(\w+)":', titles.group(1), re.M)) == sections
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    artefacts = set(re.findall(r'paper_artefact\("(\w+)"', rules))
    captions = {p.stem for p in CAPTIONS.glob("*.rst")} - {"workflow"}
    assert artefacts == sections == captions


def test_commands_the_captions_print_name_real_targets():
    """ "rebuild with ``snakemake X``": X is an output of the artefact's own rule."""
    for path in sorted(CAPTIONS.glob("*.rst")):
        for target in re.findall(r"``snakemake ([^`]+)``", path.read_text()):
            if target.startswith("-") or target in ("verify",):
                continue
            assert target in (f"figures/{path.stem}.pdf", f"paper/generated/{path.stem}.tex"), (
                f"{path.name}: `snakemake {target}` is not this artefact's output"
            )


# --- a report in a browser ----------------------------------------------------------------

SNAKEFILE = """
report: "report/workflow.rst"

rule all:
    input: "out/figure.png", "out/table.html"

rule figure:
    input: "in/figure.png"
    output: report("out/figure.png", caption="report/figure.rst", category="1 Figures")
    shell: "cp {input} {output}"

rule table:
    input: "in/table.html"
    output: report("out/table.html", caption="report/table.rst", category="0 Tables")
    shell: "cp {input} {output}"
"""


def _snakemake(*args: str, cwd: Path) -> None:
    out = run_snakemake("--cores", "1", *args, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]


def test_a_report_shows_the_png_the_html_table_and_typeset_maths(tmp_path):
    require_chromium()
    import matplotlib.pyplot as plt

    work = tmp_path / "workflow"
    (work / "in").mkdir(parents=True)
    (work / "report").mkdir()
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "report" / "workflow.rst").write_text("A test workflow.\n")
    (work / "report" / "figure.rst").write_text("A line against :math:`\\lambda_0`.\n")
    (work / "report" / "table.rst").write_text("Verdicts on :math:`\\|W\\|_2 < 1`.\n")
    fig, ax = plt.subplots(figsize=(3, 2), dpi=100)
    ax.plot([0, 1], [1, 0])
    fig.savefig(work / "in" / "figure.png")
    plt.close(fig)
    cells = [["C1", r"$\lambda_0 > 0$", r"\textbf{PASS}"], ["C2", r"$\sigma_w$", r"\textbf{FAIL}"]]
    page = html_page("Claims", html_table(["claim", "what", "verdict"], cells, align="llr"))
    (work / "in" / "table.html").write_text(page)
    _snakemake(cwd=work)
    _snakemake("--report", "report.html", cwd=work)

    shown = read_report(work / "report.html", tmp_path / "screenshots")
    assert shown.images == {"out/figure.png": 300}  # decoded, at its own width
    assert shown.tables["out/table.html"] == [
        ["claim", "what", "verdict"],
        ["C1", "λ0>0", "PASS"],
        ["C2", "σw", "FAIL"],
    ]
    assert "λ" in shown.captions["out/figure.png"] and "‖" in shown.captions["out/table.html"]
    for view, text in {**shown.captions, **shown.texts}.items():
        assert not ascii_maths(text), f"{view}: {ascii_maths(text)}"
    assert len(shown.screenshots) == 3 and all(p.stat().st_size > 5000 for p in shown.screenshots)
    shutil.rmtree(tmp_path / "screenshots" / "chromium-profile", ignore_errors=True)
