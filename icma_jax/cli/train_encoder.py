"""`icma-jax train-encoder`: train our own Mole-BERT-architecture GIN so that molecules with similar
captions get similar embeddings (InfoNCE against fixed LSA caption embeddings, plus a graph-graph term
fitted to Morgan Tanimoto on batches that pair each molecule with a Morgan neighbour); Orbax checkpoint
usable as `icma-jax retrieve --method gnn --encoder DIR`."""

import argparse
import dataclasses

from icma_jax.data.records import load_split
from icma_jax.retrieval.graph_knn import save_encoder
from icma_jax.retrieval.train_gin import EncoderTrainConfig, train_encoder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-encoder", help="train the GIN retrieval encoder (contrastive, captions)",
                       description=__doc__)
    p.add_argument("--database", required=True, help="CID/SMILES/description TSV to train on (the training split)")
    p.add_argument("--out", required=True, help="checkpoint folder (Orbax + encoder.json)")
    d = EncoderTrainConfig()
    for field in dataclasses.fields(EncoderTrainConfig):
        value = getattr(d, field.name)
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(value, bool) else {"type": type(value)}
        p.add_argument("--" + field.name.replace("_", "-"), **kind, default=value, help=f"default {value}")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: all epochs)")
    p.add_argument("--strict", action="store_true", help="fail on the first malformed data row")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    split = load_split(args.database, strict=args.strict)
    if split.report.n_skipped:
        print(split.report.summary())
    cfg = EncoderTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EncoderTrainConfig)})
    res = train_encoder(split.smiles, split.texts, cfg, max_steps=args.max_steps)
    if res.invalid:
        lines = [split.records[i].line for i in res.invalid]
        print(f"skipped {len(res.invalid)} molecules whose SMILES do not parse (lines {lines[:10]}"
              f"{' ...' if len(lines) > 10 else ''})")
    meta = {"config": dataclasses.asdict(cfg), "database": str(split.path), "n_molecules": res.n_molecules,
            "n_invalid": len(res.invalid), "steps": res.n_steps, "epoch_losses": res.epoch_losses,
            "seconds": round(res.seconds, 1)}
    out = save_encoder(args.out, res.model, res.variables, res.n_steps, meta)
    print(f"trained {res.n_steps} steps on {res.n_molecules} molecules in {res.seconds:.0f}s, "
          f"mean loss per epoch {', '.join(f'{x:.3f}' for x in res.epoch_losses)}; encoder saved to {out}")
    return 0
