"""Damaged checkpoints: sha256 manifests, fall back to the newest one that verifies and restores, one line."""

import os
import pathlib
import subprocess

import jax
import pytest

from icma_jax.training.checkpoint import MANIFEST, CheckpointDamagedError, Checkpointer, abstract_state
from icma_jax.training.optim import make_optimizer
from icma_jax.training.state import create_state
from training_tiny_lm import fsdp_shardings, mesh_of


def _three_checkpoints(tiny_lm, path):
    """Checkpoints at steps 1, 2, 3 of a state whose step counter says which one was restored."""
    _, _, lora = tiny_lm
    mesh = mesh_of(2, 2)
    tx = make_optimizer(1e-2, warmup_steps=1, total_steps=8)
    state, state_sh = create_state(lora, tx, fsdp_shardings(lora, mesh))
    ckpt = Checkpointer(path, max_to_keep=3, log=lambda msg: None)
    for step in (1, 2, 3):
        state = state.replace(step=state.step + 1, trainable=jax.tree.map(lambda x: x + 1.0, state.trainable))
        ckpt.save(step, state, jax.random.key(step), {"index": step})
    ckpt.close()
    return abstract_state(state, state_sh)


def _array_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p))
    assert files, f"no array data files under {step_dir}"
    return files


def _restore_logged(path, target):
    lines = []
    state, _, data = Checkpointer(path, log=lines.append).restore(target)
    return int(state.step), data, lines


def test_manifest_written_after_commit_and_sha256sum_compatible(tiny_lm, tmp_path):
    _three_checkpoints(tiny_lm, tmp_path)
    for step in (1, 2, 3):
        manifest = tmp_path / str(step) / MANIFEST
        assert manifest.is_file()
        names = [ln.split("  ", 1)[1] for ln in manifest.read_text().splitlines()]
        assert any(n.startswith("state/") for n in names) and any(n.startswith("data/") for n in names)
    check = subprocess.run(["sha256sum", "--quiet", "-c", MANIFEST], cwd=tmp_path / "3", capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("manifest", [True, False])
def test_random_bytes_fall_back_to_the_previous_checkpoint(tiny_lm, tmp_path, manifest):
    target = _three_checkpoints(tiny_lm, tmp_path)
    if not manifest:  # e.g. written by an older version: the restore itself fails (ZSTD / TensorStore errors)
        (tmp_path / "3" / MANIFEST).unlink()
    for f in _array_files(tmp_path / "3"):
        data = bytearray(f.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = os.urandom(64)
        f.write_bytes(bytes(data))
    step, data, lines = _restore_logged(tmp_path, target)
    assert (step, data) == (2, {"index": 2})
    assert len(lines) == 1 and lines[0].startswith("damaged checkpoint step 3 (")
    why = "does not match its sha256)" if manifest else "restoring step 3 failed ("
    assert why in lines[0] and lines[0].endswith("moved to 3.damaged; resumed from step 2") and "\n" not in lines[0]
    assert (tmp_path / "3.damaged" / "state").is_dir() and not (tmp_path / "3").exists()  # moved, not deleted
    assert Checkpointer(tmp_path).all_steps() == [1, 2]


def test_flipped_byte_that_orbax_restores_silently_is_caught(tiny_lm, tmp_path):
    target = _three_checkpoints(tiny_lm, tmp_path)
    # the JSON item is stored as is: one flipped digit restores without any error from Orbax
    data_file = tmp_path / "3" / "data" / "metadata"
    text = data_file.read_text()
    assert '"index": 3' in text
    data_file.write_text(text.replace('"index": 3', '"index": 7'))
    without_manifest = tmp_path.parent / "no_manifest"
    subprocess.run(["cp", "-r", str(tmp_path), str(without_manifest)], check=True)
    (without_manifest / "3" / MANIFEST).unlink()
    assert _restore_logged(without_manifest, target)[:2] == (3, {"index": 7})  # silently wrong
    step, data, lines = _restore_logged(tmp_path, target)
    assert (step, data) == (2, {"index": 2})
    assert lines == ["damaged checkpoint step 3 (data/metadata does not match its sha256) moved to 3.damaged; "
                     "resumed from step 2"]


def test_truncated_checkpoint_without_manifest_falls_back(tiny_lm, tmp_path):
    """A crash after Orbax committed but before the manifest: no manifest to check, the restore itself fails."""
    target = _three_checkpoints(tiny_lm, tmp_path)
    (tmp_path / "3" / MANIFEST).unlink()
    for f in _array_files(tmp_path / "3"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    step, _, lines = _restore_logged(tmp_path, target)
    assert step == 2 and len(lines) == 1
    assert lines[0].startswith("damaged checkpoint step 3 (restoring step 3 failed (")
    assert lines[0].endswith("moved to 3.damaged; resumed from step 2") and "\n" not in lines[0]


def test_save_cut_short_is_named_and_set_aside(tiny_lm, tmp_path):
    target = _three_checkpoints(tiny_lm, tmp_path)
    os.rename(tmp_path / "3", tmp_path / "3.orbax-checkpoint-tmp-1700000000")  # what a crash mid-save leaves
    step, _, lines = _restore_logged(tmp_path, target)
    assert step == 2
    assert lines == ["damaged checkpoint step 3 (cut short while saving) moved to "
                     "3.orbax-checkpoint-tmp-1700000000.damaged; resumed from step 2"]


def test_all_damaged_is_one_line_and_an_explicit_step_is_not_replaced(tiny_lm, tmp_path):
    target = _three_checkpoints(tiny_lm, tmp_path)
    with pytest.raises(CheckpointDamagedError, match="checkpoint .*/2 is damaged: data/metadata is missing"):
        (tmp_path / "2" / "data" / "metadata").unlink()
        Checkpointer(tmp_path).restore(target, step=2)
    for step in (1, 3):
        (tmp_path / str(step) / "data" / "metadata").write_text("{}")
    with pytest.raises(CheckpointDamagedError) as e:
        Checkpointer(tmp_path).restore(target)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"no checkpoint in {tmp_path} restores: step 3 (")
    assert msg.endswith("running again starts from step 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.damaged", "2.damaged", "3.damaged"]
