"""Reading the Snakemake HTML report in headless Chromium, and what it must not show (maths
written in ASCII)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chromium import INSTALL, Browser, find_chromium

# lambda_0, sigma_w, ||W||, sqrt(m), R^2, Theta_0: maths typed as text instead of typeset
ASCII_MATHS = re.compile(
    r"\b(?:lambda|sigma|Theta|theta|eta|sqrt)(?:_\w+|\(|\b)|\|\||\b\w\^[\w(]|\b[A-Za-z]_[0-9t*]\b"
)


def ascii_maths(text: str) -> list[str]:
    """Every piece of ``text`` that looks like maths typed in ASCII (empty: none)."""
    return [m.group() for m in ASCII_MATHS.finditer(text)]


# JavaScript run in the report page: wait until React has drawn the view just asked for
_SETTLE = "await new Promise(r => requestAnimationFrame(() => setTimeout(r, 100)));"


@dataclass
class RenderedReport:
    """What a Snakemake HTML report shows, read in a real browser (``read_report``)."""

    results: dict[str, dict[str, Any]]  # path -> mime_type, category, subcategory
    images: dict[str, int] = field(default_factory=dict)  # PNG path -> naturalWidth shown
    tables: dict[str, list[list[str]]] = field(default_factory=dict)  # HTML path -> rows
    captions: dict[str, str] = field(default_factory=dict)  # path -> its description shown
    texts: dict[str, str] = field(default_factory=dict)  # landing page, table pages: their text
    screenshots: list[Path] = field(default_factory=list)


def read_report(report: Path, out: Path) -> RenderedReport:
    """Open ``report`` in headless Chromium and go through it as a reader would.

    The visible text of the landing page and of each result's description (its caption) is
    kept; each PNG result is shown and the decoded width of the image recorded; each HTML
    result is shown in the report's frame and its table cells read. A screenshot of every
    view (a result shown without the side bar, as its close button leaves it) is written to
    ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    with Browser(out / "chromium-profile") as page:
        page.open(report)
        page.evaluate(
            "(async () => { for (let i = 0; i < 100 && typeof app === 'undefined'; i++)"
            " await new Promise(r => setTimeout(r, 100)); return typeof app; })()"
        )
        listing = page.evaluate(
            "JSON.stringify(Object.fromEntries(Object.entries(categories).flatMap(([c, subs]) =>"
            " Object.entries(subs).flatMap(([s, paths]) => paths.map(p => [p, {category: c,"
            " subcategory: s, mime_type: results[p].mime_type}])))))"
        )
        rendered = RenderedReport(results=json.loads(listing))
        rendered.texts["landing"] = page.evaluate("document.body.innerText")
        rendered.screenshots.append(page.screenshot(out / "landing.png"))
        for i, (path, info) in enumerate(sorted(rendered.results.items())):
            quoted = json.dumps(path)
            page.evaluate(f"(async () => {{ app.showResultInfo({quoted}); {_SETTLE} }})()")
            rendered.captions[path] = page.evaluate(
                "(() => { const items = Array.from(document.querySelectorAll('nav li'));"
                " const i = items.findIndex(li => li.innerText.trim().toUpperCase() =="
                " 'DESCRIPTION'); return i < 0 ? '' : items[i + 1].innerText; })()"
            )
            shot = out / f"{i:02d}-{Path(path).stem}.png"
            if info["mime_type"] == "image/png":
                rendered.images[path] = page.evaluate(
                    "(async () => { app.setView({hideNavbar: true, content: 'img', contentPath:"
                    f" results[{quoted}].data_uri}}); {_SETTLE}"
                    " const img = document.querySelector('#app img[src^=\"data:image/png\"]');"
                    " if (!img) return -1; await img.decode().catch(() => null);"
                    " return img.naturalWidth; })()"
                )
            elif info["mime_type"] == "text/html":
                page.evaluate(
                    "(async () => { app.setView({hideNavbar: true, content: 'html', contentPath:"
                    f" results[{quoted}].data_uri}}); {_SETTLE} }})()"
                )
                cells = page.evaluate(
                    f"(async () => {{ const text = await (await fetch(results[{quoted}]"
                    ".data_uri)).text(); const doc = new DOMParser().parseFromString(text,"
                    " 'text/html'); return JSON.stringify([Array.from(doc.querySelectorAll("
                    "'tr')).map(tr => Array.from(tr.cells).map(c => c.textContent.trim())),"
                    " doc.body.textContent]); })()"
                )
                rows, text = json.loads(cells)
                rendered.tables[path] = rows
                rendered.texts[path] = text
            rendered.screenshots.append(page.screenshot(shot))
    return rendered


def require_chromium() -> None:
    """Skip the calling test when Chromium is missing, except where it must run: under
    ./run-tests (which installs Chromium and sets $OVERDEQ_REQUIRE_BROWSER) or in CI ($CI),
    where a missing browser is a failure."""
    if find_chromium() is not None:
        return
    message = f"headless Chromium is needed to render the HTML report: {INSTALL}"
    if os.environ.get("OVERDEQ_REQUIRE_BROWSER") or os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def assert_workflow_report(shown: RenderedReport, verify: dict[str, Any]) -> None:
    """The report of the real workflow: every figure decoded, the claims table with every
    check and its verdict, the training table in words, and no maths typed in ASCII."""
    figures = [p for p, info in shown.results.items() if info["mime_type"] == "image/png"]
    assert len(figures) >= 7 and all(p.startswith("figures/") for p in figures), figures
    assert all(shown.images[p] > 0 for p in figures), f"figures not decoded: {shown.images}"
    claims_page = shown.tables["paper/generated/tab_claims.html"]
    checks = {row[0]: row[-1] for row in claims_page if len(row) == 6}
    assert checks == {"check": "verdict", **{c["check"]: c["status"] for c in verify["checks"]}}
    claims = {row[0]: row[1] for row in claims_page if len(row) == 3}
    assert claims == {"claim": "verdict", **verify["claims"]}
    assert shown.results["paper/generated/tab_claims.html"]["category"].startswith("0 ")
    training = shown.tables["paper/generated/tab_training.html"]
    assert len(training) > 1 and all("_" not in row[1] for row in training), training
    for view, text in {**shown.captions, **shown.texts}.items():
        assert not ascii_maths(text), f"{view} shows maths as ASCII: {ascii_maths(text)}"
    assert all(shown.captions[p].strip() for p in shown.results), "a result without caption"
