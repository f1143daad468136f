import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from overdeq.plotting import (  # noqa: E402
    latex_number,
    macro_name,
    save_figure,
    values_to_latex,
    write_values,
)


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
    assert macro_name("tab", "cifar10") == "tabCifar"
    with pytest.raises(ValueError, match="letters only"):
        write_values(tmp_path / "v.json", {"bad2": "1"})
    with pytest.raises(ValueError, match="both"):
        values_to_latex({"a": {"x": "1"}, "b": {"x": "2"}})
    assert r"\newcommand{\x}{1}" in values_to_latex({"a": {"x": "1"}})


def test_figures_are_byte_stable(tmp_path):
    paths = []
    for i in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        paths.append(tmp_path / f"f{i}.pdf")
        save_figure(fig, paths[-1])
        plt.close(fig)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert b"CreationDate" not in paths[0].read_bytes()
