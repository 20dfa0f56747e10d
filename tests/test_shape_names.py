"""One dimension legend: it lives in the `icma_jax` docstring, names each letter once, docs/DESIGN.md carries
the same text, and every shape-suffixed name in the code (identifiers, not strings) uses only its letters.
"""

import ast
import pathlib
import re
import tokenize

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "icma_jax", ROOT / "bench", ROOT / "tests", ROOT / "train.py"]
# A shape suffix: the tail after the last `_`, upper-case letters and digits joined by `x` (or led by one).
SUFFIX = re.compile(r"^[a-z][a-z0-9_]*_(x?[A-Z0-9]+(?:x[A-Z0-9]+)*)$")


def legend_text() -> str:
    """The legend paragraph of the package docstring, whitespace collapsed."""
    doc = ast.get_docstring(ast.parse((ROOT / "icma_jax" / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "Dimension legend" in doc, "icma_jax/__init__.py: the docstring holds no 'Dimension legend'"
    return " ".join(doc[doc.index("Dimension legend"):].split())


def legend_letters(text: str) -> list[str]:
    """Every letter the legend defines, in order, once per definition (`I, O ...` defines two)."""
    assert "Letters:" in text, "the legend lists no 'Letters:'"
    letters = []
    for item in text.split("Letters:", 1)[1].split("·"):
        m = re.match(r"\s*([A-Z](?:, [A-Z])*)\s", item)
        assert m, f"legend item without leading letters: {item.strip()!r}"
        letters += re.findall(r"[A-Z]", m.group(1))
    return letters


def suffixed_names(path: pathlib.Path) -> list[tuple[int, str, str]]:
    """(line, name, suffix) of every identifier with a shape suffix holding at least one letter."""
    out = []
    with path.open("rb") as f:
        for tok in tokenize.tokenize(f.readline):
            m = SUFFIX.match(tok.string) if tok.type == tokenize.NAME else None
            if m and re.search(r"[A-Z]", m.group(1)):
                out.append((tok.start[0], tok.string, m.group(1)))
    return out


def test_legend_names_each_letter_once():
    letters = legend_letters(legend_text())
    twice = sorted({c for c in letters if letters.count(c) > 1})
    assert not twice, f"legend letters with two entries: {twice}"
    assert len(letters) >= 20, f"the legend parsed into only {letters}"


def test_design_doc_carries_the_same_legend():
    design = " ".join((ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8").split())
    assert legend_text() in design, "docs/DESIGN.md: the dimension legend differs from the icma_jax docstring"


def test_every_shape_suffix_uses_legend_letters():
    known = set(legend_letters(legend_text()))
    files = [p for src in SOURCES for p in ([src] if src.is_file() else sorted(src.rglob("*.py")))]
    bad = [f"{p.relative_to(ROOT)}:{line}: {name} ({''.join(sorted(set(re.findall('[A-Z]', sfx)) - known))})"
           for p in files for line, name, sfx in suffixed_names(p)
           if set(re.findall(r"[A-Z]", sfx)) - known]
    assert len(files) > 50, f"only {len(files)} source files found under {ROOT}"
    assert not bad, "shape suffixes with letters outside the legend:\n" + "\n".join(bad)
