"""The pinned environment: requirements.lock agrees with pyproject.toml and is what runs here."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes), from requirements.lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = LOCK.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)(.*)$", line)
        if m:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", m.group(3))
            entries[canonicalize_name(m.group(1).split("[")[0])] = (m.group(2), hashes)
    return entries


def declared() -> list[Requirement]:
    """The dependencies pyproject.toml declares, the dev and slurm extras included."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"]]
    for extra in ("dev", "slurm"):
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def test_lock_pins_every_declared_dependency_within_its_range():
    pins = locked()
    problems = []
    for req in declared():
        name = canonicalize_name(req.name)
        if name == "torch":
            continue  # CPU and CUDA builds differ: installed from the range (tools/setup.sh)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue
        if name not in pins:
            problems.append(f"{req} is declared but not in requirements.lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req} is declared but the lock pins {name}=={pins[name][0]}")
    assert not problems, "\n".join(problems) + "\nRegenerate the lock: tools/lock.sh"


def test_lock_has_hashes_and_leaves_torch_out():
    pins = locked()
    assert len(pins) > 20, "requirements.lock looks truncated"
    assert "torch" not in pins, "torch must stay out of the lock (CPU and CUDA builds differ)"
    unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
    assert not unhashed, f"no --hash for {unhashed}; regenerate with tools/lock.sh"
    assert "tools/lock.sh" in LOCK.read_text().splitlines()[1], "say which command made it"


def test_this_environment_is_the_locked_one():
    """The set-up installs the lock; a venv that drifted from it would not test what users run."""
    drift = []
    for name, (version, _) in locked().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift.append(f"{name}=={version} is locked but not installed")
            continue
        if canonicalize_name(have) != canonicalize_name(version) and have != version:
            drift.append(f"{name}: {have} installed, {version} locked")
    if drift:
        pytest.fail(
            "the environment differs from requirements.lock (rerun tools/setup.sh):\n"
            + "\n".join(drift)
        )
