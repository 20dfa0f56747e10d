"""bench/study.py on configs/study.py:tiny: every variant trained/evaluated, the table with paired bootstrap
intervals and the chart written; a rerun skips finished variants and resumes an unfinished one from its
checkpoint with the same predictions. It checks the runner, not the science (a random 2-layer model)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from icma_jax import config as cfg_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
STUDY = REPO / "bench" / "study.py"
CONFIG = REPO / "configs" / "study.py"
VARIANTS = ("ICMT", "ICMT, Morgan retrieval", "plain fine-tuning", "ICMT, random examples",
            "in-context learning without tuning", "retrieval copy", "zero-shot")


def _study(workdir, data_dir, *extra):
    env = dict(os.environ, ICMA_DATA_DIR=str(data_dir))
    return subprocess.run([sys.executable, str(STUDY), "--config", f"{CONFIG}:tiny", "--workdir", str(workdir),
                           *extra], capture_output=True, text=True, env=env, timeout=1500)


def test_study_presets():
    cpu = cfg_lib.load_config_file(str(CONFIG))
    run = cfg_lib.from_config_dict(cpu.run)
    assert (run.model.name, run.model.finetune, run.data.task) == ("smollm2-135m", "lora", "mol2cap")
    assert (run.data.database_split, run.data.train_split) == ("validation", "validation")
    assert run.selection.n_examples == 2 and run.selection.strategy == "random_walk" and run.prompt.cutoff_len >= 1536
    assert tuple(cpu.study.variants) == VARIANTS and cpu.study.test_sample == 100
    for task in ("mol2cap", "cap2mol"):
        g = cfg_lib.load_config_file(f"{CONFIG}:galactica-125m,task={task}")
        grun = cfg_lib.from_config_dict(g.run)
        assert grun.model.finetune == "full" and grun.train.batch_size == 32 and grun.data.train_split == "train"
        assert ("ICMT, Morgan retrieval" in g.study.variants) == (task == "mol2cap") and not g.study.test_sample
    with pytest.raises(ValueError, match="one preset of"):
        cfg_lib.load_config_file(f"{CONFIG}:huge")


@pytest.mark.slow
def test_tiny_study_runs_skips_and_resumes(tmp_path, chebi_slice):
    work = tmp_path / "study"
    first = _study(work, chebi_slice)
    assert first.returncode == 0, first.stderr[-3000:]
    md = (work / "study.md").read_text()
    assert first.stdout.rstrip("\n").endswith(md.rstrip("\n"))  # the table is printed
    scores = md[md.index("## Scores"):md.index("## Difference")]
    diffs = md[md.index("## Difference"):md.index("## What each")]
    for name in VARIANTS:
        assert f"| {name} |" in scores
        assert (f"| {name} |" in diffs) == (name != "ICMT")  # every difference is against ICMT, with an interval
    assert diffs.count("[") == 6 * 6
    assert "| ICMT | 42 | 2 × 8 |" in md and "| plain fine-tuning | 43 | 2 × 8 |" in md  # same steps and queries
    assert (work / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cids = (work / "data" / "test_cids.tsv").read_text().splitlines()
    assert cids[0] == "cid\tline" and len(cids) == 7
    # every variant's predictions are kept
    for folder in ("icmt/seed42", "icmt/seed43", "icmt_morgan/seed42", "plain/seed43", "icmt_random/seed43"):
        assert (work / "runs" / folder / "predictions_test.tsv").is_file()
    for tag in ("test_in_context_untuned", "test_retrieval_copy", "test_zero_shot"):
        assert (work / "runs" / "icmt" / "seed42" / f"predictions_{tag}.tsv").is_file()

    # stopped after step 1 of plain fine-tuning, seed 43: its later checkpoint and results are gone
    run = work / "runs" / "plain" / "seed43"
    before = (run / "predictions_test.tsv").read_text()
    for name in ("study_result.json", "predictions_test.tsv", "eval_test.json"):
        (run / name).unlink()
    shutil.rmtree(run / "checkpoints" / "2")
    again = _study(work, chebi_slice)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished, skipped") == 7
    assert f"resumed from {run / 'checkpoints'}/1" in again.stdout
    assert (run / "predictions_test.tsv").read_text() == before
    strip = lambda text: text[:text.index("Time in")]  # noqa: E731
    assert strip((work / "study.md").read_text()) == strip(md)
    # a finished variant counts only for the config it ran
    changed = _study(work, chebi_slice, "--config.run.train.lr=0.001")
    assert changed.returncode == 2 and "finished with another run config" in changed.stderr


def test_study_errors_are_one_line(tmp_path, chebi_slice):
    bad = _study(tmp_path / "s", chebi_slice, "--config.study.varaints=('ICMT',)")
    assert bad.returncode == 2 and "unknown config key study.varaints" in bad.stderr
    bad = _study(tmp_path / "s", chebi_slice, "--config.study.variants=('plain fine-tuning',)")
    assert bad.returncode == 2 and "must include 'ICMT'" in bad.stderr
