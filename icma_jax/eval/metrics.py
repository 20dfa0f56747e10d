"""The MolT5 metric suite: one entry point per task, a file-level evaluation, and the printed report.

`mol2cap_metrics(refs, preds, tokenizer="scibert")` (`text_metrics.py`) and `cap2mol_metrics(refs,
preds)` (`mol_metrics.py`) return flat dicts keyed as MolT5 names its numbers (plus row counts, the
tokenizer and, for Cap2Mol, `fcd_note`); `evaluate_predictions` runs the right one on a prediction
file read by `predictions.read_predictions`.
"""

from icma_jax.eval.mol_metrics import CAP2MOL_KEYS, cap2mol_metrics
from icma_jax.eval.predictions import Predictions, read_predictions, write_predictions
from icma_jax.eval.text_metrics import MOL2CAP_KEYS, mol2cap_metrics
from icma_jax.eval.wordpiece import SCIBERT, TextTokenizer

__all__ = [
    "CAP2MOL_KEYS",
    "MOL2CAP_KEYS",
    "cap2mol_metrics",
    "evaluate_predictions",
    "format_report",
    "mol2cap_metrics",
    "read_predictions",
    "write_predictions",
]

_LABELS = {
    "bleu2": "BLEU-2", "bleu4": "BLEU-4", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
    "meteor": "METEOR", "bleu": "BLEU (characters)", "exact_match": "Exact match (InChI)",
    "levenshtein": "Levenshtein (lower is better)", "validity": "Validity", "maccs_fts": "MACCS FTS",
    "rdk_fts": "RDK FTS", "morgan_fts": "Morgan FTS (counts, r=2)", "fcd": "FCD (lower is better)",
}


def evaluate_predictions(
    preds: Predictions, tokenizer: str | TextTokenizer = SCIBERT, max_length: int = 512, fcd: bool = True
) -> dict:
    """The task's metric dict for a prediction file, plus `task`, `file` and `cls_stripped`."""
    if preds.task == "mol2cap":
        result = mol2cap_metrics(preds.refs, preds.outputs, tokenizer=tokenizer, max_length=max_length)
    else:
        result = cap2mol_metrics(preds.refs, preds.outputs, fcd=fcd)
    return {**result, "task": preds.task, "file": preds.path, "cls_stripped": preds.cls_stripped}


def format_report(result: dict) -> str:
    """A readable table: file, task, rows, empty/invalid counts, tokenizer, then one line per metric."""
    keys = MOL2CAP_KEYS if result["task"] == "mol2cap" else CAP2MOL_KEYS
    lines = [
        f"file       {result['file']}",
        f"task       {result['task']}",
        f"rows       {result['n']} (all rows count; {result['n_empty']} empty predictions)",
    ]
    if result["task"] == "mol2cap":
        lines.append(f"cleaned    {result['cls_stripped']} outputs had a leading '[CLS] ' removed (as MolT5 does)")
    else:
        lines.append(f"invalid    {result['n_invalid']} predictions RDKit cannot parse (empty included); "
                     f"{result['n_invalid_refs']} invalid references")
    lines.append(f"tokenizer  {result['tokenizer']}")
    lines.append("")
    width = max(len(_LABELS[k]) for k in keys)
    for key in keys:
        value = result[key]
        shown = "not computed" if value is None else f"{value:.4f}"
        lines.append(f"{_LABELS[key]:<{width}}  {shown}")
    if result["task"] == "cap2mol":
        lines.append(f"({result['fcd_note']})")
    return "\n".join(lines)
