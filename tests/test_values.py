"""The paper's numbers as LaTeX text, and the macro files (overdeq.values)."""

import pytest

from overdeq.values import latex_number, read_values, values_to_latex, write_values


@pytest.mark.parametrize(
    "x, text",
    [
        (12, "12"),
        (12000, "12{,}000"),
        (0.5, "0.500"),
        (0.0123, "0.0123"),
        (3.14159, "3.14"),
        (2.5e-7, r"\ensuremath{2.50 \times 10^{-7}}"),
        (float("nan"), "n/a"),
    ],
)
def test_latex_number(x, text):
    assert latex_number(x) == text


def test_macro_names_and_duplicates(tmp_path):
    with pytest.raises(ValueError, match="letters only"):
        write_values(tmp_path / "v.json", {"bad2": "1"})
    with pytest.raises(ValueError, match="both"):
        values_to_latex({"a": {"x": "1"}, "b": {"x": "2"}})
    assert r"\newcommand{\x}{1}" in values_to_latex({"a": {"x": "1"}})
    write_values(tmp_path / "v.json", {"lossRuns": "12", "lossRate": r"\ensuremath{1}"})
    assert read_values(tmp_path / "v.json") == {"lossRuns": "12", "lossRate": r"\ensuremath{1}"}
