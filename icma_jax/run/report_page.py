"""The report's HTML: config summary, metrics table, loss curve (inline SVG) and the example browser.

Everything is inline (CSS, SVG, a little JS, the data as JSON): the file opens offline. Rows are
rendered a page at a time from the embedded JSON, so the first page is ready at once however many
rows there are; the page records its render time in `<html data-first-page-ms>`.
"""

from __future__ import annotations

import html
import json
import pathlib
from typing import Any

from icma_jax.eval.mol_metrics import CAP2MOL_KEYS
from icma_jax.eval.text_metrics import MOL2CAP_KEYS

_ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets"  # report.css, report.js
COUNT_KEYS = ("n", "n_empty", "n_invalid", "n_invalid_refs", "n_cut")
COUNT_LABELS = {"n": "rows", "n_empty": "empty predictions", "n_invalid": "invalid predictions",
                "n_invalid_refs": "invalid references", "n_cut": "cut at max_new_tokens"}
PROMPT_KEYS = ("examples_dropped", "truncated", "prompt_cut")
LOWER_IS_BETTER = ("levenshtein", "fcd")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if value is None:
        return "<td class=na>-</td>"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{_esc(value)}</td>"
    return f"<td>{value:,}</td>" if isinstance(value, int) else f"<td>{value:.4f}</td>"


def metrics_table(evals: dict[str, dict], task: str) -> str:
    """One column per eval_<tag>.json, one row per metric, then row counts and prompt truncation counts."""
    if not evals:
        return "<p class=na>No eval_*.json in the run directory.</p>"
    keys = MOL2CAP_KEYS if task == "mol2cap" else CAP2MOL_KEYS
    head = "".join(f"<th>{_esc(tag)}</th>" for tag in evals)
    lines = [f"<table class=metrics><tr><th>metric</th>{head}</tr>"]
    for key in keys:
        label = key + (" (lower is better)" if key in LOWER_IS_BETTER else "")
        lines.append(f"<tr><th>{label}</th>" + "".join(_cell(d.get("metrics", {}).get(key)) for d in evals.values())
                     + "</tr>")
    for key in COUNT_KEYS:
        if any(key in d.get("metrics", {}) for d in evals.values()):
            lines.append(f"<tr class=count><th>{COUNT_LABELS[key]}</th>"
                         + "".join(_cell(d.get("metrics", {}).get(key)) for d in evals.values()) + "</tr>")
    for key in PROMPT_KEYS:
        if any(key in d.get("prompts", {}) for d in evals.values()):
            lines.append(f"<tr class=count><th>prompts: {key}</th>"
                         + "".join(_cell(d.get("prompts", {}).get(key)) for d in evals.values()) + "</tr>")
    lines.append("<tr class=count><th>split</th>" + "".join(_cell(d.get("split")) for d in evals.values()) + "</tr>")
    return "\n".join(lines) + "</table>"


def loss_curve(losses: list[tuple[int, float]], width: int = 640, height: int = 220) -> str:
    """Training loss per step as an inline SVG line chart."""
    if not losses:
        return "<p class=na>No metrics.jsonl: the run has not trained.</p>"
    left, bottom, top, right = 52, 28, 10, 12
    steps, values = [s for s, _ in losses], [v for _, v in losses]
    s0, s1 = min(steps), max(max(steps), min(steps) + 1)
    v0, v1 = min(values), max(values)
    v0, v1 = (v0 - 0.5, v1 + 0.5) if v1 - v0 < 1e-9 else (v0, v1)
    x = lambda s: left + (s - s0) / (s1 - s0) * (width - left - right)  # noqa: E731
    y = lambda v: top + (v1 - v) / (v1 - v0) * (height - top - bottom)  # noqa: E731
    points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in losses)
    ticks = []
    for k in range(5):
        v = v0 + (v1 - v0) * k / 4
        ticks.append(f"<line x1={left - 4} x2={width - right} y1={y(v):.1f} y2={y(v):.1f} class=grid />"
                     f"<text x={left - 6} y={y(v) + 4:.1f} text-anchor=end>{v:.3g}</text>")
    for s in sorted({round(s0 + (s1 - s0) * k / 4) for k in range(5)}):  # whole steps
        ticks.append(f"<text x={x(s):.1f} y={height - 10} text-anchor=middle>{s}</text>")
    return (f"<svg class=curve viewBox='0 0 {width} {height}' width={width} height={height} role=img "
            f"aria-label='training loss per step'>{''.join(ticks)}"
            f"<polyline points='{points}' class=loss /><text x={width - right} y={height - 10 + 8} "
            f"text-anchor=end class=axis>step</text></svg>")


def config_summary(cfg: dict) -> str:
    """A headline of the run's setup and the whole config in a collapsible table."""
    d, m, t, e, s, r = (cfg[k] for k in ("data", "model", "train", "eval", "selection", "retrieval"))
    lora = f" r{m['lora_rank']} α{m['lora_alpha']:g}" if m["finetune"] == "lora" else ""
    items = [("task", f"{d['task']} on {d['dataset']} (test: {d['test_split']}, database: {d['database_split']})"),
             ("model", f"{m['name']} ({m['finetune']}{lora})"),
             ("context", f"{s['n_examples']} examples, {s['strategy']} selection from {r['num_candidates']} "
                         f"{r['method']} candidates" + (", reversed" if s["reverse"] else "")),
             ("training", f"{str(t['max_steps']) + ' steps' if t['max_steps'] else str(t['epochs']) + ' epochs'}, "
                          f"batch {t['batch_size']}, "
                          f"lr {t['lr']:g}, seed {t['seed']}"),
             ("decoding", f"{e['decoding']}, max_new_tokens "
                          f"{e['max_new_tokens'] or 'derived from the training answers'}")]
    head = "".join(f"<tr><th>{k}</th><td>{_esc(v)}</td></tr>" for k, v in items)
    full = "".join(f"<tr><th>{_esc(g)}.{_esc(k)}</th><td>{_esc(json.dumps(v))}</td></tr>"
                   for g, group in cfg.items() for k, v in group.items())
    return (f"<table class=summary>{head}</table><details><summary>full config.json</summary>"
            f"<table class=config>{full}</table></details>")


def _json_for_script(data: Any) -> str:
    """JSON safe inside `<script type=application/json>` (no `</` or `<!--` sequences)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/").replace(
        "<!--", "<\\u0021--")


def render(data: dict[str, Any]) -> str:
    """The whole page for `report.report_data(...)`."""
    style = (_ASSETS / "report.css").read_text(encoding="utf-8") + "\n" + data["mol_css"]
    script = (_ASSETS / "report.js").read_text(encoding="utf-8")
    payload = {k: data[k] for k in ("task", "tag", "db", "rows", "mols", "mol_size")}
    title = f"icma-jax report: {pathlib.Path(data['workdir']).name} ({data['task']}, {data['tag']})"
    sources = ", ".join(_esc(p) for p in (data["predictions"], data["neighbours"]) if p)
    return f"""<!DOCTYPE html>
<html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>
<meta name=viewport content="width=device-width, initial-scale=1">
<style>{style}</style></head>
<body>
<h1>{_esc(title)}</h1>
<p class=src>{_esc(data['workdir'])} · {sources}</p>
<section><h2>Run</h2>{config_summary(data['config'])}</section>
<section><h2>Metrics</h2>{metrics_table(data['evals'], data['task'])}</section>
<section><h2>Training loss</h2>{loss_curve(data['losses'])}</section>
<section id=examples><h2>Examples</h2>
<div class=controls>
<label>score <select id=key></select></label>
<label>order <select id=order><option value=file>file order</option><option value=desc>score, best first</option>
<option value=asc>score, worst first</option></select></label>
<label>from <input id=lo type=number step=0.05 value=0 style="width:5em"> to <input id=hi type=number step=0.05
 value=1 style="width:5em"></label>
<label>search <input id=q type=search placeholder="text or SMILES"></label>
<span id=count></span>
</div>
<div class=pager></div><div id=rows></div><div class=pager></div>
</section>
<script type=application/json id=data>{_json_for_script(payload)}</script>
<script>{script}</script>
</body></html>
"""
