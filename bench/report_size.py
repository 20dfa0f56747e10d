"""Size and first-page time of `icma-jax report` on the full ChEBI-20 test split.

Builds a run directory with the run layer's own writers: Morgan neighbours of the 3,300 test molecules
in the validation split (`context.neighbours_for_run`), the retrieval-copy predictions (the top-ranked
example's caption, `eval.baselines.retrieval_copy`) scored by `evaluate.score`; then writes the report
and opens it in headless Chromium (a screenshot, and the DOM for the page's own first-page time).

    ICMA_DATA_DIR=<data root> python bench/report_size.py [--workdir DIR] [--rows N]

Prints: report build time, file size, distinct molecules drawn, the page's `data-first-page-ms` (time from
navigation start to the first 20 rows in the DOM) and the wall time of a Chromium screenshot of the page
against that of an empty page (browser start-up).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

from icma_jax import config as config_lib
from icma_jax.data.prompts import PromptReport
from icma_jax.eval.baselines import retrieval_copy
from icma_jax.run import context, evaluate
from icma_jax.run.report import build_report

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def make_run(workdir: pathlib.Path, rows: int | None) -> None:
    c = config_lib.default_config_dict()
    c.data.dataset, c.data.task = "chebi20", "mol2cap"
    c.data.database_split, c.data.train_split, c.data.test_split = "validation", "validation", "test"
    c.data.train_limit, c.data.test_limit = 1, rows
    c.retrieval.method, c.retrieval.num_candidates, c.selection.n_examples = "morgan", 10, 2
    c.eval.max_new_tokens = 64  # recorded only: nothing is generated
    cfg = config_lib.from_config_dict(c)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config_lib.to_dict(cfg), indent=2) + "\n")
    splits = context.load_splits(cfg.data)
    nb = context.neighbours_for_run(cfg, splits, workdir)
    preds = retrieval_copy(nb.test, splits.database.texts)
    evaluate.score(evaluate.plan(cfg), splits.test, preds, workdir, "test", PromptReport(prompts=len(preds)))


def chromium(url: str, profile: pathlib.Path, *extra: str) -> tuple[float, str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    t0 = time.perf_counter()
    proc = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url], capture_output=True,
                          text=True, timeout=300, check=True)
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="run directory to build (default: a temporary one)")
    ap.add_argument("--rows", type=int, default=None, help="test rows (default: all 3,300)")
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="icma_report_"))
    workdir = pathlib.Path(args.workdir) if args.workdir else tmp / "run"
    if not (workdir / "eval_test.json").is_file():
        make_run(workdir, args.rows)
    t0 = time.perf_counter()
    page = build_report(workdir)
    build_s = time.perf_counter() - t0
    html = page.read_text(encoding="utf-8")
    data = json.loads(re.search(r"<script type=application/json id=data>(.*?)</script>", html, re.S).group(1))
    empty = tmp / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body>empty</body></html>")
    shot = ["--window-size=1280,2000", f"--screenshot={tmp / 'report.png'}"]
    empty_s, _ = chromium(empty.as_uri(), tmp / "profile", *shot)
    shot_s, _ = chromium(page.as_uri(), tmp / "profile", *shot)
    _, dom = chromium(page.as_uri(), tmp / "profile", "--dump-dom")
    first = re.search(r'data-first-page-ms="(\d+)"', dom)
    print(f"rows {len(data['rows'])}, molecules drawn {len(data['mols'])}, report built in {build_s:.1f} s")
    print(f"file {page.stat().st_size / 1e6:.1f} MB (drawings {sum(map(len, data['mols'])) / 1e6:.1f} MB)")
    print(f"first page in the DOM after {first.group(1) if first else '?'} ms; Chromium screenshot wall "
          f"{shot_s:.2f} s (empty page {empty_s:.2f} s); screenshot {tmp / 'report.png'}")


if __name__ == "__main__":
    main()
