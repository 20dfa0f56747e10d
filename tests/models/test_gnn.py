"""The Flax GIN against a PyTorch reference of the Hu et al. / Mole-BERT `GNN` (written here, random
weights, saved and re-loaded as a state_dict), plus padding and permutation invariance."""

import jax
import numpy as np
import pytest

from icma_jax.data.graphs import batch_graphs, budget_for, featurize
from icma_jax.models import gnn

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch
nn_t = torch.nn

SMILES = ["CCO", "c1ccccc1C(=O)O", "N[C@@H](C)C(=O)O", "C/C=C/Cl", "[Na+].[Cl-]", "C#N"]


class TorchGINConv(nn_t.Module):
    """pretrain-gnns `GINConv` without torch_geometric: self-loops (bond type 4), x_j + edge emb, add at target."""

    def __init__(self, d):
        super().__init__()
        self.mlp = nn_t.Sequential(nn_t.Linear(d, 2 * d), nn_t.ReLU(), nn_t.Linear(2 * d, d))
        self.edge_embedding1 = nn_t.Embedding(6, d)
        self.edge_embedding2 = nn_t.Embedding(3, d)

    def forward(self, x, edge_index, edge_attr):
        n = x.size(0)
        loops = torch.arange(n)
        edge_index = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        self_loop_attr = torch.zeros(n, 2, dtype=edge_attr.dtype)
        self_loop_attr[:, 0] = 4
        edge_attr = torch.cat([edge_attr, self_loop_attr], dim=0)
        emb = self.edge_embedding1(edge_attr[:, 0]) + self.edge_embedding2(edge_attr[:, 1])
        msg = x[edge_index[0]] + emb  # x_j: source; aggregated at edge_index[1] (PyG source_to_target)
        out = torch.zeros(n, x.size(1)).index_add_(0, edge_index[1], msg)
        return self.mlp(out)


class TorchGNN(nn_t.Module):
    """The Hu et al. `GNN` class (gnn_type='gin', JK='last'), same attribute names."""

    def __init__(self, num_layer, d):
        super().__init__()
        self.num_layer = num_layer
        self.x_embedding1 = nn_t.Embedding(120, d)
        self.x_embedding2 = nn_t.Embedding(3, d)
        self.gnns = nn_t.ModuleList([TorchGINConv(d) for _ in range(num_layer)])
        self.batch_norms = nn_t.ModuleList([nn_t.BatchNorm1d(d) for _ in range(num_layer)])

    def forward(self, x, edge_index, edge_attr):
        h = self.x_embedding1(x[:, 0]) + self.x_embedding2(x[:, 1])
        for layer in range(self.num_layer):
            h = self.batch_norms[layer](self.gnns[layer](h, edge_index, edge_attr))
            if layer < self.num_layer - 1:
                h = torch.relu(h)
        return h


def _torch_inputs(graphs):
    x, ei, ea, off = [], [], [], 0
    for g in graphs:
        x.append(np.stack([g.atom_type_N, g.chirality_N], 1))
        ei.append(np.stack([g.senders_E, g.receivers_E]) + off)
        ea.append(np.stack([g.bond_type_E, g.bond_dir_E], 1))
        off += g.n_node
    return (torch.from_numpy(np.concatenate(x)).long(), torch.from_numpy(np.concatenate(ei, 1)).long(),
            torch.from_numpy(np.concatenate(ea)).long())


def _random_torch_gnn(num_layer, d, seed=0):
    torch.manual_seed(seed)
    model = TorchGNN(num_layer, d)
    with torch.no_grad():
        for bn in model.batch_norms:  # non-trivial running statistics, so eval mode really uses them
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("num_layer,d", [(5, 300), (2, 16)])
def test_matches_pytorch_reference_via_state_dict_file(tmp_path, num_layer, d):
    ref = _random_torch_gnn(num_layer, d)
    path = tmp_path / "gin.pth"
    torch.save({"gnn." + k: v for k, v in ref.state_dict().items()}, path)  # prefixed like GNN_graphpred files
    variables, ignored = gnn.load_torch_gin(path, num_layers=num_layer, emb_dim=d)
    assert ignored == []
    graphs = [featurize(s) for s in SMILES]
    with torch.no_grad():
        h_ref = ref(*_torch_inputs(graphs)).numpy()
    batch = batch_graphs(graphs, budget_for(graphs))
    nodes, pooled = jax.jit(gnn.GIN(num_layers=num_layer, emb_dim=d).apply)(variables, batch)
    n_real = sum(g.n_node for g in graphs)
    np.testing.assert_allclose(np.asarray(nodes)[:n_real], h_ref, atol=1e-5, rtol=1e-5)
    starts = np.cumsum([0] + [g.n_node for g in graphs])
    pooled_ref = np.stack([h_ref[a:b].mean(0) for a, b in zip(starts[:-1], starts[1:])])
    np.testing.assert_allclose(np.asarray(pooled)[: len(graphs)], pooled_ref, atol=1e-5, rtol=1e-5)


def test_bad_state_dicts_are_named(tmp_path):
    ref = _random_torch_gnn(2, 8)
    sd = ref.state_dict()
    del sd["gnns.1.mlp.2.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing key 'gnns\.1\.mlp\.2\.bias'"):
        gnn.load_torch_gin(tmp_path / "missing.pth", num_layers=2, emb_dim=8)
    with pytest.raises(ValueError, match=r"x_embedding1\.weight' has shape \(120, 8\), expected \(120, 16\)"):
        torch.save(ref.state_dict(), tmp_path / "ok.pth")
        gnn.load_torch_gin(tmp_path / "ok.pth", num_layers=2, emb_dim=16)
    with pytest.raises(ValueError, match=r"GIN layers \[1\] beyond num_layers=1"):
        gnn.load_torch_gin(tmp_path / "ok.pth", num_layers=1, emb_dim=8)
    sd = dict(ref.state_dict(), **{"graph_pred_linear.weight": torch.zeros(1, 8)})
    torch.save(sd, tmp_path / "extra.pth")
    _, ignored = gnn.load_torch_gin(tmp_path / "extra.pth", num_layers=2, emb_dim=8)
    assert ignored == ["graph_pred_linear.weight"]  # reported, not silently dropped
    with pytest.raises(FileNotFoundError):
        gnn.load_torch_gin(tmp_path / "nope.pth")


SMALL = gnn.GIN(num_layers=2, emb_dim=8)
_apply_eval = jax.jit(SMALL.apply)
_apply_train = jax.jit(lambda v, g: SMALL.apply(v, g, train=True, mutable="batch_stats"))


def test_padding_and_permutation_invariance():
    graphs = [featurize(s) for s in SMILES[:3]]
    budget = budget_for(graphs)
    small = batch_graphs(graphs, budget)
    variables = gnn.init_variables(SMALL, small, seed=1)
    _, g_small = _apply_eval(variables, small)
    big = batch_graphs(graphs, budget_for(graphs, batch_size=20))  # far more padding
    _, g_big = _apply_eval(variables, big)
    np.testing.assert_allclose(np.asarray(g_small)[:3], np.asarray(g_big)[:3], atol=1e-6)
    # Permuting the atoms of one molecule leaves its pooled embedding unchanged.
    g = graphs[1]
    perm = np.random.default_rng(0).permutation(g.n_node)
    inv = np.argsort(perm)
    permuted = type(g)(atom_type_N=g.atom_type_N[perm], chirality_N=g.chirality_N[perm],
                       senders_E=inv[g.senders_E].astype(np.int32), receivers_E=inv[g.receivers_E].astype(np.int32),
                       bond_type_E=g.bond_type_E, bond_dir_E=g.bond_dir_E, extras_NxF=g.extras_NxF[perm])
    _, g_perm = _apply_eval(variables, batch_graphs([graphs[0], permuted, graphs[2]], budget))  # same shapes
    np.testing.assert_allclose(np.asarray(g_perm)[1], np.asarray(g_small)[1], atol=1e-5)
    assert not np.allclose(np.asarray(g_small)[0], np.asarray(g_small)[1])  # embeddings are not trivial


def test_train_mode_batch_statistics_ignore_padding():
    graphs = [featurize(s) for s in SMILES[:3]]
    a = batch_graphs(graphs, budget_for(graphs))
    b = batch_graphs(graphs, budget_for(graphs, batch_size=20))  # the shapes of the test above: no new compile
    variables = gnn.init_variables(SMALL, a)
    (_, ga), sa = _apply_train(variables, a)
    (_, gb), sb = _apply_train(variables, b)
    np.testing.assert_allclose(np.asarray(ga)[:3], np.asarray(gb)[:3], atol=1e-5)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), sa, sb)
    assert not np.allclose(sa["batch_stats"]["batch_norms_0"]["mean"], 0.0)  # statistics really moved


def test_atom_extras_tell_a_conjugate_acid_from_its_base():
    graphs = [featurize("CC(=O)O"), featurize("CC(=O)[O-]")]
    batch = batch_graphs(graphs)
    plain = gnn.GIN(num_layers=2, emb_dim=8)
    extras = gnn.GIN(num_layers=2, emb_dim=8, atom_extras=True)
    _, g_plain = plain.apply(gnn.init_variables(plain, batch), batch)
    _, g_extras = extras.apply(gnn.init_variables(extras, batch), batch)
    np.testing.assert_allclose(np.asarray(g_plain)[0], np.asarray(g_plain)[1], atol=1e-6)  # Mole-BERT: identical
    assert not np.allclose(np.asarray(g_extras)[0], np.asarray(g_extras)[1])


def test_retrieve_cli_with_a_pth_encoder_ranks_by_the_torch_models_embeddings(tmp_path, capsys):
    """`icma-jax retrieve --method gnn --encoder X.pth`: neighbours by cosine of the PyTorch reference's
    mean-pooled embeddings (5 x 300, the Mole-BERT layout the .pth reader expects)."""
    from icma_jax.cli import main
    from icma_jax.retrieval.index import read_neighbours_jsonl

    smiles = SMILES + ["CCCCO", "c1ccncc1", "CC(C)O", "OC1CCCCC1", "CCOC(=O)C", "Nc1ccccc1"]
    data = tmp_path / "mols.txt"
    rows = "".join(f"{100 + i}\t{s}\tmolecule {i}\n" for i, s in enumerate(smiles))
    data.write_text("CID\tSMILES\tdescription\n" + rows)
    ref = _random_torch_gnn(5, 300, seed=3)
    torch.save(ref.state_dict(), tmp_path / "encoder.pth")
    graphs = [featurize(s) for s in smiles]
    with torch.no_grad():
        h = ref(*_torch_inputs(graphs)).numpy()
    starts = np.cumsum([0] + [g.n_node for g in graphs])
    emb = np.stack([h[a:b].mean(0) for a, b in zip(starts[:-1], starts[1:])])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)  # --exclude-self
    want = np.argsort(-cos, axis=1, kind="stable")[:, :3] + 100
    out = tmp_path / "nb.tsv"
    assert main(["retrieve", "--task", "mol2cap", "--method", "gnn", "--encoder", str(tmp_path / "encoder.pth"),
                 "--database", str(data), "--queries", str(data), "--k", "3", "--out", str(out),
                 "--exclude-self"]) == 0
    got = read_neighbours_jsonl(out.with_name(out.name + ".jsonl"))
    np.testing.assert_array_equal(np.stack(got.cids), want)
    np.testing.assert_allclose(np.stack(got.scores), np.take_along_axis(cos, want - 100, 1), atol=1e-5)
