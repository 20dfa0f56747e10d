"""`icma-jax report`: the page as a person sees it (headless Chromium), and its numbers against the suite.

The run directories are written by the project's own writers (config.json from a validated Config,
`neighbours_for_run` retrieval files, `evaluate.score` predictions + eval json, `RunLog` metrics.jsonl);
the predictions copy the top-ranked context example's answer, with an empty and an invalid output mixed in.
Screenshots land in pytest's tmp folder (`--basetemp=DIR` keeps them): `<basetemp>/.../report.png`.
"""

import json
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest
import reference_deps

from icma_jax import config as config_lib
from icma_jax.cli import main as cli_main
from icma_jax.data.prompts import PromptReport
from icma_jax.eval.metrics import cap2mol_metrics, mol2cap_metrics, read_predictions
from icma_jax.run import context, evaluate
from icma_jax.run.report import build_report, report_data
from icma_jax.run.report_draw import INVALID, MoleculeSheet
from icma_jax.run.report_scores import caption_scores, molecule_scores, word_diff
from icma_jax.run.run_log import RunLog

N_ROWS, N_EXAMPLES, PAGE = 23, 2, 20
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_run(workdir: pathlib.Path, data_dir: pathlib.Path, task: str) -> pathlib.Path:
    """A run directory as train.py leaves it, from the real writers (no model: retrieval-copy outputs)."""
    c = config_lib.default_config_dict()
    c.data.dataset, c.data.data_dir, c.data.task = "chebi20", str(data_dir), task
    c.data.database_split, c.data.train_split, c.data.test_split = "validation", "validation", "test"
    c.data.database_limit, c.data.train_limit, c.data.test_limit = 300, 4, N_ROWS
    c.retrieval.method, c.retrieval.num_candidates = ("morgan" if task == "mol2cap" else "bm25"), 4
    c.selection.n_examples = N_EXAMPLES
    c.eval.max_new_tokens = 64
    cfg = config_lib.from_config_dict(c)
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps(config_lib.to_dict(cfg), indent=2) + "\n")
    splits = context.load_splits(cfg.data)
    nb = context.neighbours_for_run(cfg, splits, workdir)
    top = [splits.database.records[int(p[0])] for p in nb.test]
    preds = [r.text if task == "mol2cap" else r.smiles for r in top]
    preds[1] = ""
    if task == "cap2mol":
        preds[2] = "C1CC(N"  # unclosed ring and branch: RDKit cannot parse it
    evaluate.score(evaluate.plan(cfg), splits.test, preds, workdir, "test", PromptReport(prompts=len(preds)))
    log = RunLog(workdir, total_steps=5, start_step=0)
    for step in range(1, 6):
        log.step(step, {"loss": 4.0 / step, "lr": 1e-3, "grad_norm": 1.0, "label_tokens": 64, "tokens_per_s": 9.0})
    log.finish()
    return workdir


@pytest.fixture(scope="module")
def mol2cap_run(tmp_path_factory, shared_data):
    return make_run(tmp_path_factory.mktemp("m2c") / "run", shared_data, "mol2cap")


@pytest.fixture(scope="module")
def cap2mol_run(tmp_path_factory, shared_data):
    return make_run(tmp_path_factory.mktemp("c2m") / "run", shared_data, "cap2mol")


def _chromium(page: pathlib.Path, tmp: pathlib.Path, *extra: str, fragment: str = "") -> str:
    if CHROMIUM is None:
        reference_deps.missing("chromium is not installed: apt-get install chromium (make test installs it)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", *extra, page.resolve().as_uri() + fragment]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _rendered(dom: str) -> str:
    """The dumped DOM without <script> contents (the embedded JSON and JS hold templates, not drawings)."""
    return re.sub(r"<script\b.*?</script>", "", dom, flags=re.S)


def _examples(dom: str) -> list[str]:
    return _rendered(dom).split('<div class="ex">')[1:]


def test_mol2cap_page_renders_molecules_context_and_scores(mol2cap_run, tmp_path):
    from PIL import Image

    page = build_report(mol2cap_run)
    png = tmp_path / "report.png"
    _chromium(page, tmp_path, f"--screenshot={png}", "--window-size=1280,2000")
    pixels = np.asarray(Image.open(png).convert("L"))
    assert pixels.shape == (2000, 1280)
    assert (pixels < 128).mean() > 0.01 and len(np.unique(pixels)) > 50, "the page looks blank"
    dom = _chromium(page, tmp_path, "--dump-dom")
    assert re.search(r'data-first-page-ms="\d+"', dom), "the page's script did not finish"
    shown = _examples(dom)
    assert len(shown) == PAGE  # first page of 23 rows
    assert [ex.count('<svg class="mol"') for ex in shown] == [1 + N_EXAMPLES] * PAGE  # query + context
    preds = read_predictions(mol2cap_run / "predictions_test.tsv")
    assert "(empty)" in shown[1]  # row 2's empty output is said, not silently blank
    assert "<mark>" in "".join(shown)  # differing words highlighted
    doc = json.loads((mol2cap_run / "eval_test.json").read_text())
    assert f"{doc['metrics']['bleu4']:.4f}" in dom and f"{doc['metrics']['meteor']:.4f}" in dom
    assert "<polyline" in dom and 'class="curve"' in dom  # loss curve
    assert "10 epochs, batch 32" in dom and "2 examples, top selection from 4 morgan candidates" in dom
    assert preds.inputs[0] in shown[0]


def test_sort_by_address_shows_worst_rows_first(mol2cap_run, tmp_path):
    page = build_report(mol2cap_run)
    data = report_data(mol2cap_run)
    meteor = [r["s"]["meteor"] for r in data["rows"]]
    dom = _chromium(page, tmp_path, "--dump-dom", fragment="#key=meteor&order=asc&lo=0&hi=1")
    first = re.search(r"<b>#(\d+)</b>", _examples(dom)[0]).group(1)
    assert int(first) - 1 == int(np.argmin(meteor))
    dom = _chromium(page, tmp_path, "--dump-dom", fragment="#key=meteor&order=desc&lo=0.5&hi=1")
    assert len(_examples(dom)) == min(PAGE, sum(m >= 0.5 for m in meteor))


def test_cap2mol_page_draws_prediction_and_placeholder(cap2mol_run, tmp_path):
    page = build_report(cap2mol_run, tmp_path / "c2m.html")
    dom = _chromium(page, tmp_path, "--dump-dom")
    shown = _examples(dom)
    # context examples + reference + prediction; invalid and empty outputs get a drawn placeholder
    assert [ex.count('<svg class="mol') for ex in shown] == [N_EXAMPLES + 2] * PAGE
    assert shown[1].count('<svg class="mol invalid"') == 1 and "empty output" in shown[1]
    assert shown[2].count('<svg class="mol invalid"') == 1 and "invalid SMILES" in shown[2]
    assert sum(ex.count('<svg class="mol invalid"') for ex in shown) == 2


def test_per_example_scores_agree_with_the_suite(mol2cap_run, cap2mol_run):
    preds = read_predictions(mol2cap_run / "predictions_test.tsv")
    rows = caption_scores(preds.refs, preds.outputs, "scibert")
    doc = json.loads((mol2cap_run / "eval_test.json").read_text())["metrics"]
    assert np.mean([r["meteor"] for r in rows]) == pytest.approx(doc["meteor"], abs=1e-12)
    for i in (0, 1, 5):
        one = mol2cap_metrics([preds.refs[i]], [preds.outputs[i]])
        assert rows[i]["bleu4"] == pytest.approx(one["bleu4"]) and rows[i]["meteor"] == pytest.approx(one["meteor"])
    preds = read_predictions(cap2mol_run / "predictions_test.tsv")
    rows = molecule_scores(preds.refs, preds.outputs)
    suite = cap2mol_metrics(preds.refs, preds.outputs, fcd=False)
    assert np.mean([r["valid"] for r in rows]) == pytest.approx(suite["validity"])
    assert np.mean([r["exact"] for r in rows]) == pytest.approx(suite["exact_match"])
    assert np.mean([r["morgan"] for r in rows if r["morgan"] is not None]) == pytest.approx(suite["morgan_fts"])


def test_each_molecule_is_drawn_once(mol2cap_run):
    data = report_data(mol2cap_run)
    distinct = {r["src"] for r in data["rows"]} | {e[1] for e in data["db"]}
    assert len(data["mols"]) == len(distinct)
    used = {r["q"] for r in data["rows"]} | {e[3] for e in data["db"]}
    assert used == set(range(len(data["mols"])))
    assert all(body.count("<path") >= 1 for body in data["mols"])  # no empty drawing


def test_sheet_draws_a_smiles_once_and_refuses_bad_ones():
    sheet = MoleculeSheet()
    assert sheet.add_all(["CCO", "c1ccccc1O", "CCO", "C1CC(N", ""]) == [0, 1, 0, INVALID, INVALID]
    assert len(sheet.bodies) == 2 and all("<path" in b and "<text" in b for b in sheet.bodies)  # bonds, O labels
    assert all(f".{c}{{" in sheet.css() for c in set(re.findall(r"class=(m\d+)", "".join(sheet.bodies))))


def test_word_diff_marks_only_differing_words():
    ref_spans, pred_spans = word_diff("The molecule is a steroid ester.", "The molecule is an amino acid.")
    assert ref_spans == [3, 6] and pred_spans == [3, 6]
    assert word_diff("Same words, same order", "same words same order.") == ([], [])


def test_cli_errors_name_the_missing_file(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "config.json") in err
