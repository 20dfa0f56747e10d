"""GIN retrieval: cosine top-k (JAX) against NumPy, encoder training (a few steps), checkpoints, `retrieve`."""

import json

import numpy as np
import pytest

from icma_jax.cli import build_parser, main
from icma_jax.data.records import load_split
from icma_jax.retrieval import graph_knn, retrieve
from icma_jax.retrieval.train_gin import (EncoderTrainConfig, caption_embeddings, info_nce, neighbour_loss,
                                         train_encoder)

TINY = EncoderTrainConfig(num_layers=2, emb_dim=16, caption_dim=8, epochs=100, batch_size=8, learning_rate=3e-3)


def test_cosine_topk_matches_numpy_with_ties_and_exclusions():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(50, 6)).astype(np.float32)
    db[7] = db[3] * 2.0  # same direction as row 3: an exact cosine tie, lower row first
    q = np.concatenate([db[3:4], rng.normal(size=(9, 6)).astype(np.float32)])
    rows, scores = graph_knn.cosine_topk(q, db, k=5, excluded=[np.array([], np.int64)] + [np.array([0, 1])] * 9,
                                         invalid_queries=[4], invalid_database=[10], chunk=4)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    ref = unit(q.astype(np.float64)) @ unit(db.astype(np.float64)).T
    ref[:, 10] = -np.inf
    ref[1:, [0, 1]] = -np.inf
    assert rows[0][:2].tolist() == [3, 7]
    assert len(rows[4]) == 0
    for i in (1, 2, 5, 9):
        order = np.argsort(-ref[i], kind="stable")[:5]
        assert rows[i].tolist() == order.tolist()
        np.testing.assert_allclose(scores[i], ref[i][order], atol=1e-5)


def test_caption_embeddings_are_unit_and_deterministic():
    texts = ["The molecule is an acid.", "The molecule is a base.", "An acid and a base.", "Something else entirely."]
    a, b = caption_embeddings(texts, 8, seed=0), caption_embeddings(texts, 8, seed=0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert a.shape[0] == 4


def test_losses_prefer_caption_geometry_and_ignore_padding():
    rng = np.random.default_rng(0)
    cap = rng.normal(size=(6, 4)).astype(np.float32)
    unit = cap / np.linalg.norm(cap, axis=1, keepdims=True)
    sim = unit @ unit.T  # caption-similarity targets
    valid = np.array([True] * 5 + [False])
    aligned = neighbour_loss(cap, sim, valid, 0.05, 0.05)
    shuffled = neighbour_loss(cap[[1, 2, 3, 4, 0, 5]], sim, valid, 0.05, 0.05)
    assert float(aligned) < float(shuffled)
    junk = cap.copy()
    junk[5] = 100.0  # the padding row must not matter
    np.testing.assert_allclose(float(neighbour_loss(junk, sim, valid, 0.1, 0.05)),
                               float(neighbour_loss(cap, sim, valid, 0.1, 0.05)), rtol=1e-6)
    assert float(info_nce(cap, cap, valid, 0.05)) < float(info_nce(cap[[1, 2, 3, 4, 0, 5]], cap, valid, 0.05))
    np.testing.assert_allclose(float(info_nce(junk, cap, valid, 0.1)), float(info_nce(cap, cap, valid, 0.1)),
                               rtol=1e-6)


@pytest.fixture(scope="module")
def trained(chebi):
    validation, _ = chebi
    from icma_jax.data.graphs import featurize_many

    graphs, _ = featurize_many(validation.smiles[:400])
    # Small molecules (<= 15 atoms, <= 32 directed edges): every batch of 8 lands in one padding bucket,
    # so the train step compiles once.
    small = [i for i, g in enumerate(graphs) if g is not None and g.n_node <= 15 and g.n_edge <= 32][:24]
    db = validation.select(small)
    return db, train_encoder(db.smiles, db.texts, TINY, max_steps=20, progress=False)


def test_training_lowers_the_loss_and_is_seeded(trained):
    db, res = trained
    assert res.n_steps == 20 and len(res.losses) == 20
    assert np.mean(res.losses[-5:]) < 0.8 * np.mean(res.losses[:5]), res.losses
    again = train_encoder(db.smiles, db.texts, TINY, max_steps=3, progress=False)
    np.testing.assert_allclose(again.losses, res.losses[:3], rtol=1e-5)


def test_training_logs_one_line_with_the_loss(trained, capsys, monkeypatch):
    from icma_jax import progress

    db, _ = trained
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    res = train_encoder(db.smiles, db.texts, TINY, max_steps=3)
    err = [line for line in capsys.readouterr().err.splitlines() if "train-encoder" in line]
    assert len(err) == 1 and err[0].startswith("train-encoder: 3/3 step in "), err
    assert err[0].endswith(f"loss={res.losses[-2]:.3f})"), err  # no bar redraws in a log


def test_checkpoint_round_trip_and_gnn_retrieval(tmp_path, trained, capsys):
    db, res = trained
    folder = graph_knn.save_encoder(tmp_path / "enc", res.model, res.variables, res.n_steps, {"note": "test"})
    model, variables, ignored = graph_knn.load_encoder(folder)
    assert ignored == [] and model.emb_dim == 16 and model.num_layers == 2 and model.atom_extras
    a, _ = graph_knn.embed_smiles(res.model, res.variables, db.smiles[:5])
    b, _ = graph_knn.embed_smiles(model, variables, db.smiles[:5])
    np.testing.assert_array_equal(a, b)
    nb = retrieve("mol2cap", "gnn", db, db, k=3, exclude_self=True, encoder=folder)
    assert nb.query_rows.tolist() == db.rows.tolist()  # rows are the file's data rows, not positions
    assert all(db.rows[q] not in nb.rows[q].tolist() and len(nb.rows[q]) == 3 for q in range(len(db)))
    with pytest.raises(FileNotFoundError, match="not an encoder checkpoint"):
        graph_knn.load_encoder(tmp_path)


def test_checkpoint_without_the_atom_extras_key_loads_a_plain_gin(tmp_path):
    from icma_jax.data.graphs import batch_graphs, featurize
    from icma_jax.models.gnn import GIN, init_variables

    plain = GIN(num_layers=2, emb_dim=8)
    variables = init_variables(plain, batch_graphs([featurize("CCO")]))
    folder = graph_knn.save_encoder(tmp_path / "old", plain, variables, 1, {})
    meta = json.loads((folder / graph_knn.ENCODER_META).read_text())
    assert meta["atom_extras"] is False
    del meta["atom_extras"]  # as written before the flag existed
    (folder / graph_knn.ENCODER_META).write_text(json.dumps(meta))
    model, restored, _ = graph_knn.load_encoder(folder)
    assert not model.atom_extras
    a, _ = graph_knn.embed_smiles(plain, variables, ["CC(=O)O", "CC(=O)[O-]"])
    b, _ = graph_knn.embed_smiles(model, restored, ["CC(=O)O", "CC(=O)[O-]"])
    np.testing.assert_array_equal(a, b)


def test_cli_atom_extras_flag_parses_both_ways():
    base = ["train-encoder", "--database", "db.txt", "--out", "enc"]
    assert build_parser().parse_args(base).atom_extras is True  # our encoders default to the extra inputs
    assert build_parser().parse_args(base + ["--no-atom-extras"]).atom_extras is False
    assert build_parser().parse_args(base + ["--no-atom-extras", "--atom-extras"]).atom_extras is True
    assert build_parser().parse_args(base + ["--epochs", "3"]).epochs == 3


def test_cli_train_encoder_then_retrieve(tmp_path, trained, capsys):
    small, _ = trained
    data = tmp_path / "db.txt"
    rows = [f"{r.cid}\t{r.smiles}\t{r.text}" for r in small.records[:16]] + ["5\tC1CC(\ta broken molecule"]
    data.write_text("CID\tSMILES\tdescription\n" + "\n".join(rows) + "\n")
    rc = main(["train-encoder", "--database", str(data), "--out", str(tmp_path / "enc"), "--num-layers", "2",
               "--emb-dim", "16", "--caption-dim", "8", "--batch-size", "8", "--learning-rate", "3e-3",
               "--max-steps", "2"])  # TINY's shapes on small molecules: the jitted step is reused
    assert rc == 0
    out = capsys.readouterr().out
    assert "skipped 1 molecules" in out and "lines [18]" in out and "trained 2 steps on 16 molecules" in out
    rc = main(["retrieve", "--task", "mol2cap", "--method", "gnn", "--encoder", str(tmp_path / "enc"),
               "--database", str(data), "--queries", str(data), "--k", "2", "--out", str(tmp_path / "nb.txt")])
    assert rc == 0 and "do not parse" in capsys.readouterr().out
    assert len((tmp_path / "nb.txt").read_text().splitlines()) == 16 * 2
    assert len(load_split(data)) == 17
