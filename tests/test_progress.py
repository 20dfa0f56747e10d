"""Progress of long stages: one line per stage in logs, a tqdm bar (counts, ETA) on a terminal."""

import io

from icma_jax import progress


def test_logs_get_one_line_per_stage(capsys, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    assert list(progress.track(range(500), "retrieval (test)", unit="query")) == list(range(500))
    with progress.Stage("generation", total=40, unit="prompt") as stage:
        for _ in range(5):
            stage.update(8)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("retrieval (test): 500/500 query in ") and err[0].endswith("query/s)")
    assert err[1].startswith("generation: 40/40 prompt in ")


def test_terminal_gets_a_bar_with_counts_and_eta(monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    out = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", out)
    for _ in progress.track(iter(range(30)), "metrics", total=30, unit="row"):
        pass
    text = out.getvalue()
    assert "metrics" in text and "30/30" in text and "<" in text  # tqdm's "elapsed<remaining"
    assert " in " not in text  # no log line besides the bar


def test_quiet_and_short_stages_write_nothing(capsys, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    list(progress.track([1, 2], "featurisation"))  # well under MIN_SECONDS
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    list(progress.track([1, 2], "featurisation", quiet=True))
    assert capsys.readouterr().err == ""


def test_training_log_writes_about_twenty_step_lines(tmp_path, capsys, monkeypatch):
    from icma_jax.run import run_log

    monkeypatch.setattr(run_log, "on_terminal", lambda: False)
    log = run_log.RunLog(tmp_path, total_steps=100, start_step=0)
    for step in range(1, 101):
        log.step(step, {"loss": 1.0, "tokens_per_s": 5.0})
    log.finish()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: step ")]
    assert len(lines) == 20 and lines[-1].startswith("train: step 100/100 loss 1.0000")
