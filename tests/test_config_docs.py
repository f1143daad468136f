"""config/README.md describes every key the config schema knows (the catalog convention)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _keys(schema, path=()):
    """Every (path, key) under a schema's ``properties``, recursively."""
    for key, sub in schema.get("properties", {}).items():
        yield (*path, key)
        if isinstance(sub, dict):
            yield from _keys(sub, (*path, key))
            extra = sub.get("additionalProperties")
            if isinstance(extra, dict):
                yield from _keys(extra, (*path, key, "*"))


def _documented(doc: str, key: str) -> bool:
    """The key appears inside a code span, alone or as the last part of a dotted path."""
    return re.search(rf"`[^`\n]*(?<![\w-]){re.escape(key)}(?![\w-])[^`\n]*`", doc) is not None


def test_every_schema_key_is_described_in_config_readme():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    doc = (ROOT / "config/README.md").read_text()
    missing = sorted({path[-1] for path in _keys(schema) if not _documented(doc, path[-1])})
    assert not missing, f"config/README.md does not describe the config keys {missing}"


def test_the_check_finds_an_undocumented_key():
    assert not _documented("| `compute.device` | x |", "precision")
    assert _documented("| `compute.precision` | x |", "precision")
