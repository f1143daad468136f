"""TeX for the paper is installed by tools/setup.sh, and nothing else is assumed.

The machine these tests run on may have TeX packages from elsewhere (installed by hand, or
pulled in as a recommendation), which would hide a missing install step. So the tests do
not ask "does the paper build here?" but "does every file the paper needs come from a
Debian package that the set-up installs, or from a hard dependency (Depends, Pre-Depends)
of one?" -- which fails on any machine where the set-up's list is incomplete.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "tools" / "tex-requirements.txt"


def table() -> dict[str, str]:
    """file or program -> Debian package, from tools/tex-requirements.txt."""
    rows = {}
    for line in TABLE.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            assert len(fields) == 2, f"{TABLE}: expected 'file package', got {line!r}"
            rows[fields[0]] = fields[1]
    return rows


def paper_files() -> set[str]:
    """The .cls, .sty and .bst files the paper's sources ask for by name."""
    needed = set()
    for tex in [REPO / "paper" / "main.tex", *sorted((REPO / "paper" / "sections").glob("*.tex"))]:
        text = re.sub(r"(?<!\\)%.*", "", tex.read_text())  # drop comments
        for m in re.finditer(r"\\documentclass\s*(?:\[[^\]]*\])?\s*\{([^}]*)\}", text):
            needed.add(f"{m.group(1).strip()}.cls")
        pattern = r"\\(?:usepackage|RequirePackage)\s*(?:\[[^\]]*\])?\s*\{([^}]*)\}"
        for m in re.finditer(pattern, text):
            needed.update(f"{name.strip()}.sty" for name in m.group(1).split(",") if name.strip())
        for m in re.finditer(r"\\bibliographystyle\s*\{([^}]*)\}", text):
            needed.add(f"{m.group(1).strip()}.bst")
    return needed


def test_every_package_the_paper_uses_is_in_the_table():
    missing = sorted(paper_files() - set(table()))
    assert not missing, (
        f"the paper uses {missing}, which tools/tex-requirements.txt does not list: add each "
        "with its Debian package (`dpkg -S $(kpsewhich NAME)` tells which)"
    )


def test_the_parser_sees_what_the_preamble_loads():
    # the parser itself: a wrong regex would make the test above pass vacuously
    assert {
        "article.cls",
        "lmodern.sty",
        "amsthm.sty",
        "siunitx.sty",
        "plainnat.bst",
    } <= paper_files()


# --- what Debian actually installed -----------------------------------------------------


def _require_debian_tex() -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: the package check needs dpkg")
    if shutil.which("kpsewhich") is None:
        pytest.fail("TeX is not installed: run tools/setup.sh (it installs TeX Live as root)")


def _dpkg(*args: str) -> str:
    return subprocess.run(["dpkg-query", *args], text=True, capture_output=True).stdout


@cache
def installed() -> frozenset[str]:
    """Names of the Debian packages installed here."""
    rows = _dpkg("-W", "-f", "${db:Status-Abbrev} ${Package}\n").splitlines()
    return frozenset(row.split()[1] for row in rows if row.startswith("ii"))


@cache
def hard_closure(roots: frozenset[str]) -> frozenset[str]:
    """The packages and, recursively, their Depends and Pre-Depends that are installed.

    Of an alternative (a | b) every installed member counts; Recommends never do.
    """
    seen, todo = set(), list(roots)
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        fields = _dpkg("-W", "-f", "${Depends}, ${Pre-Depends}", pkg)
        for group in fields.split(","):
            for alt in group.split("|"):
                name = re.sub(r"\(.*?\)|\[.*?\]|:\w+", "", alt).strip()
                if name and name in installed() and name not in seen:
                    todo.append(name)
    return frozenset(seen)


def owner(path: str) -> str | None:
    """The Debian package that owns a file (symlinks resolved), or None."""
    for candidate in dict.fromkeys([path, os.path.realpath(path)]):
        out = subprocess.run(["dpkg", "-S", candidate], text=True, capture_output=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0].split(",")[0].strip()
    return None


def test_table_agrees_with_what_debian_installs():
    _require_debian_tex()
    rows = table()
    closure = hard_closure(frozenset(rows.values()))
    problems = []
    for item, pkg in rows.items():
        path = shutil.which(item) if "." not in item else None
        if "." in item:
            found = subprocess.run(["kpsewhich", item], text=True, capture_output=True)
            path = found.stdout.strip() or None
        if path is None:
            problems.append(f"{item}: not found (its package {pkg} is not installed?)")
            continue
        got = owner(path)
        if got is None or got not in closure:
            problems.append(
                f"{item}: {path} belongs to {got!r}, which neither tools/tex-requirements.txt "
                "nor a hard dependency of its packages brings in"
            )
    assert not problems, "\n".join(problems)


def test_every_file_the_preamble_reads_comes_from_the_setup_packages(tmp_path):
    """Compile the paper's preamble with some text and maths; check every file TeX read.

    This catches what the names in \\usepackage do not show: fonts (lmodern's), encodings
    and the packages those packages load.
    """
    _require_debian_tex()
    preamble = (REPO / "paper" / "main.tex").read_text().split("\\begin{document}")[0]
    preamble = "\n".join(ln for ln in preamble.splitlines() if "\\input{" not in ln)
    body = "Text, \\textbf{bold}, \\emph{it} and $\\alpha \\in \\mathbb{R}$, \\num{1.5e-3}.\n"
    (tmp_path / "probe.tex").write_text(
        f"{preamble}\n\\begin{{document}}\n{body}\\end{{document}}\n"
    )
    run = subprocess.run(
        ["pdflatex", "-recorder", "-interaction=nonstopmode", "-halt-on-error", "probe.tex"],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    read = {
        line.split(" ", 1)[1]
        for line in (tmp_path / "probe.fls").read_text().splitlines()
        if line.startswith("INPUT /usr/")
    }
    assert any("lmodern" in p or "/lm/" in p for p in read), "the probe did not load lmodern"
    closure = hard_closure(frozenset(table().values()))
    stray = sorted(f"{p} ({owner(p)})" for p in read if owner(p) not in closure)
    assert not stray, (
        "TeX read files from packages tools/setup.sh does not install (add them to "
        "tools/tex-requirements.txt):\n" + "\n".join(stray[:20])
    )


# --- the set-up's probe and the LaTeX build's recovery ----------------------------------


def _scratch_repo(tmp_path: Path, preamble_extra: str, table_extra: str) -> Path:
    root = tmp_path / "repo"
    (root / "tools").mkdir(parents=True)
    (root / "paper").mkdir()
    shutil.copy(REPO / "tools" / "tex-probe.sh", root / "tools")
    (root / "tools" / "tex-requirements.txt").write_text(TABLE.read_text() + table_extra)
    main = (REPO / "paper" / "main.tex").read_text()
    main = main.replace("\\begin{document}", f"{preamble_extra}\n\\begin{{document}}", 1)
    (root / "paper" / "main.tex").write_text(main)
    return root


def test_probe_passes_on_the_paper():
    _require_debian_tex()
    out = subprocess.run([str(REPO / "tools" / "tex-probe.sh")], text=True, capture_output=True)
    assert out.returncode == 0, out.stderr


def test_probe_names_the_debian_package_of_a_missing_file(tmp_path):
    _require_debian_tex()
    # a package that cannot be installed here, listed in the table under a made-up name
    root = _scratch_repo(
        tmp_path, "\\usepackage{overdeqabsent}", "overdeqabsent.sty  tex-overdeq-absent\n"
    )
    out = subprocess.run([str(root / "tools" / "tex-probe.sh")], text=True, capture_output=True)
    assert out.returncode == 1
    assert "overdeqabsent.sty" in out.stderr and "tex-overdeq-absent" in out.stderr, out.stderr


def test_probe_says_how_to_find_a_package_it_does_not_know(tmp_path):
    _require_debian_tex()
    root = _scratch_repo(tmp_path, "\\usepackage{overdequnknown}", "")
    out = subprocess.run([str(root / "tools" / "tex-probe.sh")], text=True, capture_output=True)
    assert out.returncode == 1
    assert "overdequnknown.sty is missing" in out.stderr and "apt-file search" in out.stderr


def test_latex_build_recovers_once_the_missing_file_is_there(tmp_path):
    """A failed build must not leave latexmk answering "Nothing to do" with the old error."""
    _require_debian_tex()
    doc, texmf = tmp_path / "doc", tmp_path / "texmf"
    doc.mkdir()
    texmf.mkdir()
    (doc / "main.tex").write_text(
        "\\documentclass{article}\n\\usepackage{overdeqlater}\n"
        "\\begin{document}\nx\n\\end{document}\n"
    )
    # a tree TeX searches, outside the document's folder: as a Debian package's files are
    env = {**os.environ, "TEXINPUTS": f"{texmf}//:"}
    latex = [str(REPO / "tools" / "latex.sh"), "doc/main.tex", "doc/main.pdf", "doc/log.txt"]
    run = dict(cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120)
    first = subprocess.run(latex, **run)
    assert first.returncode != 0 and "overdeqlater.sty" in first.stderr
    # the cause is fixed: the package appears (as after `apt-get install`)
    (texmf / "overdeqlater.sty").write_text("\\ProvidesPackage{overdeqlater}\n")
    second = subprocess.run(latex, **run)
    assert second.returncode == 0, second.stderr + (doc / "log.txt").read_text()[-1500:]
    assert (doc / "main.pdf").stat().st_size > 0
