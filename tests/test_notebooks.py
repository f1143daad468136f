"""A script opened as a notebook runs: from scripts/ as its working directory, on the results
of the tier $OVERDEQ_TIER names, with its figure inline and its files in scratch/ only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from figure_fixtures import write_results

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a kernel start and one figure: about 10 s
def test_a_script_runs_as_a_notebook_from_its_folder(tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    (tmp_path / "Snakefile").write_text("")
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    write_results(tmp_path, "synthetic")
    for name in ("OVERDEQ_ROOT", "OVERDEQ_OUT", "MPLBACKEND"):  # the kernel picks its own
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OVERDEQ_TIER", "synthetic")  # the kernel inherits the environment

    nb = jupytext.read(tmp_path / "scripts" / "fig_rate.py")
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path / "scripts")}},  # Jupyter's working dir
    )
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure shown inline"
    scratch = tmp_path / "scratch" / "synthetic"
    assert {p.name for p in scratch.iterdir()} == {"fig_rate.pdf", "fig_rate.png", "fig_rate.json"}
    assert not (tmp_path / "figures").exists()  # the workflow's figures stay untouched
