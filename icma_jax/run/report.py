"""`build_report(workdir)`: one self-contained HTML page about a run (`icma-jax report WORKDIR`).

Reads what a run writes: `config.json`, every `eval_*.json`, `metrics.jsonl`, `predictions_<tag>.tsv`
and `neighbours/<split>.jsonl` (or `retrieval.neighbours_dir`), plus the database split named in the
config for the context examples' captions and molecules. Per example it shows the query, the context
examples the run's selection picks from the retrieved candidates (the same seeded `select_examples`
as evaluation), reference vs prediction and per-example scores (`report_scores`). Molecules are drawn
once each (`report_draw`); the page (`report_page`) renders rows in pages from embedded JSON.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from icma_jax import config as config_lib
from icma_jax.config import Config
from icma_jax.data.sources import load_dataset_split
from icma_jax.eval.predictions import Predictions, read_predictions
from icma_jax.progress import track
from icma_jax.retrieval.index import Neighbours, read_neighbours_jsonl
from icma_jax.run import report_page
from icma_jax.run.context import select_examples, selection_config
from icma_jax.run.report_draw import MoleculeSheet
from icma_jax.run.report_scores import caption_scores, molecule_scores, word_diff


def _read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def read_config(workdir: pathlib.Path) -> Config:
    """The run's validated config from DIR/config.json."""
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a run directory (train.py --workdir)")
    try:
        return config_lib.from_config_dict(_read_json(path))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def read_evals(workdir: pathlib.Path) -> dict[str, dict]:
    """{tag: eval document} for every DIR/eval_<tag>.json (test first, then zero-shot, then the rest)."""
    docs = {p.stem.removeprefix("eval_"): _read_json(p) for p in sorted(workdir.glob("eval_*.json"))}
    order = lambda tag: (tag != "test", tag != "test_zero_shot", tag)  # noqa: E731
    return {tag: docs[tag] for tag in sorted(docs, key=order)}


def read_losses(workdir: pathlib.Path) -> list[tuple[int, float]]:
    """(step, loss) from DIR/metrics.jsonl (empty when the run has not trained)."""
    path = workdir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                out.append((int(row["step"]), float(row["loss"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{i}: expected a JSON object with 'step' and 'loss'") from None
    return out


def _neighbours_path(cfg: Config, workdir: pathlib.Path, split: str) -> pathlib.Path:
    folder = pathlib.Path(cfg.retrieval.neighbours_dir) if cfg.retrieval.method == "files" else workdir / "neighbours"
    return folder / f"{split}.jsonl"


def _context(cfg: Config, nb: Neighbours, preds: Predictions, data_dir: str | None, nb_path: pathlib.Path):
    """(database records shown, per row [(record index, score)] of the selected examples, per row
    [(cid, score)] of the other candidates) for the rows of `preds`."""
    if len(nb) < len(preds):
        raise ValueError(f"{nb_path} has {len(nb)} queries but {preds.path} has {len(preds)} rows")
    database = load_dataset_split(cfg.data.dataset, cfg.data.database_split, data_dir or cfg.data.data_dir or None,
                                  strict=cfg.data.strict)
    positions = nb.positions(database)[:len(preds)]
    chosen = select_examples(positions, selection_config(cfg, cfg.train.seed + 1))  # as evaluation selects
    entries: dict[int, int] = {}
    selected, others = [], []
    for cand, scores, picked in zip(positions, nb.scores, chosen):
        score_of = {int(p): round(float(s), 4) for p, s in zip(cand, scores)}
        selected.append([[entries.setdefault(int(p), len(entries)), score_of[int(p)]] for p in picked])
        others.append([[int(database.records[int(p)].cid), score_of[int(p)]] for p in cand if int(p) not in picked])
    return [database.records[p] for p in entries], selected, others


def _row_scores(cfg: Config, preds: Predictions) -> list[dict]:
    if preds.task == "mol2cap":
        return caption_scores(preds.refs, preds.outputs, cfg.eval.metric_tokenizer)
    return molecule_scores(preds.refs, preds.outputs)


def report_data(workdir: str | pathlib.Path, tag: str = "test", data_dir: str | None = None,
                context: bool = True) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data (molecule drawings included)."""
    workdir = pathlib.Path(workdir)
    cfg = read_config(workdir)
    preds = read_predictions(workdir / f"predictions_{tag}.tsv")
    if preds.task != cfg.data.task:
        raise ValueError(f"{preds.path} holds {preds.task} predictions but {workdir}/config.json has "
                         f"data.task={cfg.data.task}")
    nb_path = _neighbours_path(cfg, workdir, "valid" if tag.startswith("valid") else "test")
    in_prompt = context and not cfg.prompt.zero_shot and "zero_shot" not in tag and nb_path.is_file()
    db, ctx, others = [], [[] for _ in range(len(preds))], [[] for _ in range(len(preds))]
    if in_prompt:
        db, ctx, others = _context(cfg, read_neighbours_jsonl(nb_path), preds, data_dir, nb_path)
    sheet = MoleculeSheet()
    scores = _row_scores(cfg, preds)
    mol2cap = preds.task == "mol2cap"
    db_rows = [[r.cid, r.smiles, r.text, sheet.add(r.smiles)]
               for r in track(db, "report: drawing context molecules", unit="mol")]
    rows = []
    for i in track(range(len(preds)), "report: drawing queries and predictions", unit="row"):
        src, ref, out = preds.inputs[i], preds.refs[i], preds.outputs[i]
        row = {"i": i, "line": preds.lines[i], "src": src, "ref": ref, "out": out, "s": scores[i], "ctx": ctx[i],
               "cand": others[i]}
        if mol2cap:
            row["q"] = sheet.add(src)
            row["d"] = word_diff(ref, out)
        else:
            row["q"], row["p"] = sheet.add(ref), sheet.add(out)
        rows.append(row)
    return {"task": preds.task, "tag": tag, "workdir": str(workdir), "predictions": preds.path,
            "neighbours": str(nb_path) if in_prompt else "", "config": config_lib.to_dict(cfg),
            "evals": read_evals(workdir), "losses": read_losses(workdir), "db": db_rows, "rows": rows,
            "mols": sheet.bodies, "mol_css": sheet.css(), "mol_size": [sheet.width, sheet.height]}


def build_report(workdir: str | pathlib.Path, out: str | pathlib.Path | None = None, tag: str = "test",
                 data_dir: str | None = None, context: bool = True) -> pathlib.Path:
    """Writes the report (default DIR/report.html, or DIR/report_<tag>.html) and returns its path."""
    workdir = pathlib.Path(workdir)
    out = pathlib.Path(out) if out else workdir / ("report.html" if tag == "test" else f"report_{tag}.html")
    html = report_page.render(report_data(workdir, tag, data_dir, context))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out

