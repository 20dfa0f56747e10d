"""Molecule drawings for the HTML report: each distinct SMILES drawn once by RDKit, stored compactly.

RDKit's `MolDraw2DSVG` writes one `<path>` per bond half with a long inline style; a 3,300-row report
would weigh ~120 MB that way. `compact_svg` keeps the drawing but maps every distinct style to a
shared CSS class (`MoleculeSheet.css`), merges a molecule's strokes of one class into one path (chains
continue instead of restarting) and drops the background. The page wraps a drawing's body in
`<svg class="mol" viewBox=...>` when a row is shown, so a molecule used by many rows costs its bytes once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rdkit import Chem
from rdkit.Chem.Draw import rdMolDraw2D

from icma_jax.eval.mol_metrics import parse_prediction, quiet_rdkit

WIDTH, HEIGHT = 220, 160
INVALID = -1  # drawing id of a SMILES RDKit cannot draw: the page shows a placeholder
_ELEMENT = re.compile(r"<(path|text|ellipse|polygon|rect)\b([^>]*?)(?:/>|>(.*?)</\1>)", re.S)
_ATTR = re.compile(r"([\w:-]+)='([^']*)'")
_POINT = re.compile(r"([ML])\s*(-?[\d.]+),(-?[\d.]+)")


def _num(text: str) -> str:
    """A coordinate as written by RDKit, without a trailing `.0`."""
    return text[:-2] if text.endswith(".0") else text


def _segments(d: str) -> list[list[tuple[str, str]]]:
    """An SVG path of M/L commands as polylines of (x, y) strings."""
    lines: list[list[tuple[str, str]]] = []
    for cmd, x, y in _POINT.findall(d):
        if cmd == "M" or not lines:
            lines.append([])
        lines[-1].append((_num(x), _num(y)))
    return lines


def _chain(polylines: list[list[tuple[str, str]]]) -> str:
    """Path data for polylines, continuing a line where the next one starts at its end point."""
    out, last = [], None
    for line in polylines:
        start = 1 if last is not None and line[0] == last else 0
        if not start:
            out.append(f"M{line[0][0]},{line[0][1]}")
        out += [f"L{x},{y}" for x, y in line[max(start, 1):]]
        last = line[-1]
    return "".join(out)


class MoleculeSheet:
    """Distinct molecules drawn once: `add(smiles) -> id` (or `INVALID`); `bodies[id]` is the drawing."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT):
        self.width, self.height = width, height
        self.bodies: list[str] = []
        self._ids: dict[str, int] = {}
        self._classes: dict[tuple[str, str], str] = {}

    def _class(self, tag: str, style: str) -> str:
        return self._classes.setdefault((tag, style), f"m{len(self._classes)}")

    def add(self, smiles: str) -> int:
        """Id of the drawing of `smiles` (drawn on first use); `INVALID` when RDKit cannot parse it."""
        if smiles in self._ids:
            return self._ids[smiles]
        with quiet_rdkit():
            mol = parse_prediction(smiles)
            body = self._draw(mol) if mol is not None else None
        self._ids[smiles] = INVALID if body is None else len(self.bodies)
        if body is not None:
            self.bodies.append(body)
        return self._ids[smiles]

    def add_all(self, smiles: Iterable[str]) -> list[int]:
        """`add` for each SMILES."""
        return [self.add(s) for s in smiles]

    def _draw(self, mol: Chem.Mol) -> str | None:
        """RDKit's SVG of `mol`, compacted; None when RDKit fails to lay it out."""
        drawer = rdMolDraw2D.MolDraw2DSVG(self.width, self.height, -1, -1, True)  # True: <text>, not glyph paths
        drawer.drawOptions().clearBackground = False
        try:
            rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol)
        except (RuntimeError, ValueError):  # e.g. a kekulisation failure of an odd aromatic ring
            return None
        drawer.FinishDrawing()
        body = self.compact_svg(drawer.GetDrawingText())
        return body or None

    def compact_svg(self, svg: str) -> str:
        """The drawing elements of an RDKit SVG with shared style classes and merged stroke paths."""
        strokes: dict[str, list[list[tuple[str, str]]]] = {}
        others: list[str] = []
        for tag, attrs, body in _ELEMENT.findall(svg):
            a = dict(_ATTR.findall(attrs))
            if tag == "rect":  # the background; the page's CSS sets it
                continue
            cls = self._class(tag, a.get("style", ""))
            if tag == "path" and "fill:none" in a.get("style", "") and not re.search(r"[^MLml\d.,\s-]", a["d"]):
                strokes.setdefault(cls, []).extend(_segments(a["d"]))
            elif tag == "text":
                others.append(f"<text class={cls} x={_num(a['x'])} y={_num(a['y'])}>{body}</text>")
            else:
                keep = " ".join(f"{k}='{v}'" for k, v in a.items() if k not in ("style", "class"))
                others.append(f"<{tag} class={cls} {keep}/>")
        paths = [f"<path class={cls} d='{_chain(lines)}'/>" for cls, lines in strokes.items()]
        return "".join(paths + others)

    def css(self) -> str:
        """The style classes used by the drawings, for the page's `<style>`."""
        return "\n".join(f"svg.mol .{cls}{{{style}}}" for (_, style), cls in self._classes.items())
