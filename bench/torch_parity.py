"""Whole-run training parity with the PyTorch original: `transformers.Trainer` + PEFT vs our train step.

Both sides train from the same initial weights (one transformers checkpoint saved to a temporary folder, or
the SmolLM2 GGUF file; LoRA: PEFT's own initialisation, read into ours with `import_peft`) on the same ICMA
prompts in the same order, fp32, dropout 0, for --steps optimiser steps of --micro x --accum sequences.
The reference is bench/torch_reference.py (the real Trainer, `DataCollatorForSeq2Seq(pad_to_multiple_of=8)`,
`peft.get_peft_model`, AdamW 0.9/0.999/1e-8 without weight decay, linear schedule with warm-up inside the run,
clipping at 1.0, gradient accumulation, only the sampler made sequential). Ours is the training pipeline's
pieces: `prompts.encode_train` (labels -100 on the prompt unless train_on_inputs), `batching.pad_batch` (left
padding) + `loss_window`, `optim.make_optimizer`, `step.make_train_step` on one device. Micro-batch j of a
step holds sequences j*m .. j*m+m-1 on both sides (our global batch is ordered so that its row split puts
them there).

Prompts: ICMA Mol2Cap with n=2 Morgan neighbours from ChEBI-20 validation (each query's own row excluded),
SmolLM2's tokenizer, cut to --cutoff by dropping the least similar example. The tiny models (random init by
transformers: Llama; Mistral with a sliding window shorter than the prompts; OPT) use a compact vocabulary:
the token ids that occur, renumbered in order (ids 0-2, SmolLM2's specials, keep their numbers).

Loss normalisation: `token_mean` (our default, transformers >= 4.46: summed NLL over the label tokens of the
whole accumulated batch; the Trainer passes `num_items_in_batch`) or `micro_mean` (the original's
transformers 4.36: each micro-batch's token mean, averaged over the accumulation steps; reproduced on the
torch side by `trainer.model_accepts_loss_kwargs = False`, on ours by `train.loss_normalization`).

Cases are MODEL:MODE:TRAIN_ON_INPUTS:NORMALIZATION[:bf16], e.g. tiny-llama:lora:no:token_mean. The bf16 rows
run the Trainer with `bf16=True` (autocast) and ours with bf16 activations and compute; they are held to
--bf16-tolerance instead. Prints each case's per-step columns, a summary, the line
`max relative loss difference vs pytorch: X` (fp32 cases; target <= --tolerance), the largest absolute
difference of the trained weights (named), and both sides' median step times; exits 1 when a bound is missed.

Weight bound: ours is also run from initial weights moved by one float32 ulp each (random direction, seeded):
the trajectory's own sensitivity to rounding, which any other kernels (torch's) perturb as well. Where the
gradient of a weight is itself rounding noise (a LoRA A while B is near zero on a real checkpoint), Adam still
moves it by about lr, so two runs equal up to rounding differ there by far more than 1e-5; the bound is
--weight-tolerance or --floor-factor times that measured floor, whichever is larger.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
TINY = ("tiny-llama", "tiny-mistral", "tiny-opt")
MODELS = (*TINY, "smollm2-135m")
DEFAULT_CASES = (
    "tiny-llama:lora:no:token_mean", "tiny-llama:full:yes:micro_mean", "tiny-mistral:lora:yes:micro_mean",
    "tiny-mistral:full:no:token_mean", "tiny-opt:full:yes:token_mean", "tiny-opt:lora:no:micro_mean",
    "tiny-llama:lora:no:token_mean:bf16",
)
SMOLLM2_CASES = ("smollm2-135m:lora:no:token_mean", "smollm2-135m:lora:yes:micro_mean")


@dataclasses.dataclass(frozen=True)
class Case:
    model: str
    mode: str  # lora | full
    train_on_inputs: bool
    normalization: str  # token_mean | micro_mean
    bf16: bool = False

    @classmethod
    def parse(cls, text: str) -> Case:
        parts = text.split(":")
        if len(parts) not in (4, 5) or parts[0] not in MODELS or parts[1] not in ("lora", "full") or \
                parts[2] not in ("yes", "no") or parts[3] not in ("token_mean", "micro_mean") or \
                parts[4:] not in ([], ["bf16"]):
            raise ValueError(f"case {text!r} is not MODEL:lora|full:yes|no:token_mean|micro_mean[:bf16] with "
                             f"MODEL one of {MODELS}")
        return cls(parts[0], parts[1], parts[2] == "yes", parts[3], len(parts) == 5)

    def __str__(self) -> str:
        return (f"{self.model}:{self.mode}:{'yes' if self.train_on_inputs else 'no'}:{self.normalization}"
                + (":bf16" if self.bf16 else ""))


def all_cases(models: tuple[str, ...]) -> list[Case]:
    """Every model x mode x train_on_inputs x normalisation in fp32, plus a bf16 LoRA row per model."""
    out = [Case(m, mode, tio, norm) for m in models for mode in ("lora", "full") for tio in (False, True)
           for norm in ("token_mean", "micro_mean")]
    return out + [Case(m, "lora", False, "token_mean", True) for m in models]


def icma_sequences(tokenizer, data_dir: str, count: int, cutoff: int, train_on_inputs: bool) -> list:
    """`count` ICMA Mol2Cap training sequences (see the module docstring), in ChEBI-20 validation order."""
    from icma_jax.data.prompts import Pair, encode_train
    from icma_jax.data.records import load_split
    from icma_jax.retrieval import fingerprints

    split = load_split(os.path.join(data_dir, "chebi20", "validation.txt"))
    if count > len(split.records):
        raise ValueError(f"{count} sequences requested, {split.path} has {len(split.records)} rows")
    pairs = [Pair(r.smiles, r.text) for r in split.records]
    index = fingerprints.build_index(fingerprints.compute(split.smiles, "morgan"))
    rows, _ = fingerprints.topk(fingerprints.compute(split.smiles[:count], "morgan"), index, 3)
    return [encode_train("mol2cap", pairs[q], [pairs[j] for j in nb if j != q][:2], tokenizer, cutoff_len=cutoff,
                         train_on_inputs=train_on_inputs)[0] for q, nb in enumerate(rows)]


def compact_vocab(seqs: list, keep: int = 3) -> tuple[list, int]:
    """The sequences renumbered to the ids that occur (ids below `keep` unchanged); returns (seqs, vocab size)."""
    from icma_jax.data.prompts import IGNORE, Encoded

    ids = np.unique(np.concatenate([np.arange(keep)] + [s.ids for s in seqs]))
    lookup = np.full(ids.max() + 1, -1, np.int64)
    lookup[ids] = np.arange(len(ids))
    out = [Encoded(lookup[s.ids].astype(np.int32),
                   np.where(s.labels == IGNORE, IGNORE, lookup[np.maximum(s.labels, 0)]).astype(np.int32),
                   s.n_examples) for s in seqs]
    return out, len(ids)


def save_tiny(family: str, vocab: int, directory: pathlib.Path, window: int) -> pathlib.Path:
    """A 2-layer random transformers model of `family` saved with save_pretrained (dropout 0)."""
    import torch
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if family == "opt":
        cfg = transformers.OPTConfig(**common, ffn_dim=128, word_embed_proj_dim=64, do_layer_norm_before=True,
                                     enable_bias=True, dropout=0.0, attention_dropout=0.0)
    else:
        cls = transformers.MistralConfig if family == "mistral" else transformers.LlamaConfig
        extra = {"sliding_window": window} if family == "mistral" else {}
        cfg = cls(**common, intermediate_size=128, num_key_value_heads=2, rms_norm_eps=1e-5, attention_dropout=0.0,
                  **extra)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(directory / family)
    return directory / family


def train_ours(case: Case, source: str, seqs: list, pad_id: int, lora_dir: pathlib.Path | None,
               args: argparse.Namespace, cache: dict, work: pathlib.Path, nudge: bool = False) -> tuple:
    """Our pipeline on the same sequences; returns (RunResult, initial HF state dict of the base).

    `nudge` moves every float32 initial weight by one ulp, up or down at random: the same run up to rounding,
    the floor the torch comparison is measured against.
    """
    import jax

    from icma_jax.data.batching import loss_window, pad_batch
    from icma_jax.models import export_peft, import_peft, load_model
    from icma_jax.models.hf_weights import hf_state_dict
    from icma_jax.training.optim import make_optimizer
    from icma_jax.sharding import make_mesh
    from icma_jax.training.state import create_state, replicated_sharding
    from icma_jax.training.step import StepConfig, device_put_batch, make_train_step
    from torch_reference import RunResult

    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    dtype = "bfloat16" if case.bf16 else "float32"
    if (source, dtype) not in cache:  # one load per model and dtype
        cache[(source, dtype)] = load_model(source, dtype=dtype, tokenizer=False)
    lm = cache[(source, dtype)]
    initial = hf_state_dict(lm.params, lm.config)
    if case.mode == "lora":
        lora_cfg, trainable = import_peft(lora_dir, lm.module)
        module, base = lm.module.clone(lora=lora_cfg), lm.params
    else:
        module, trainable, base = lm.module, jax.tree.map(lambda x: x.copy(), lm.params), {}  # the step donates
    if nudge:
        rng = np.random.default_rng(args.seed + 1)

        def one_ulp(x):
            x = np.asarray(x)
            if x.dtype != np.float32:
                return x
            return np.nextafter(x, np.where(rng.random(x.shape) < 0.5, -np.inf, np.inf).astype(np.float32))

        trainable, base = jax.tree.map(one_ulp, trainable), jax.tree.map(one_ulp, base)
    tx = make_optimizer(args.lr, args.warmup, args.steps, clip_norm=args.clip)
    state, state_sh = create_state(trainable, tx, replicated_sharding(trainable, mesh))
    key = (source, dtype, case.mode, case.normalization)
    if key not in cache:  # one jit per (model, dtype, mode, normalisation): train_on_inputs both ways share it
        config = StepConfig(mode=case.mode, accum_steps=args.accum, dropout=False,
                            loss_normalization=case.normalization, cast_weights_to="bfloat16" if case.bf16 else None)
        cache[key] = make_train_step(module.apply, tx, mesh, state_sh, replicated_sharding(base, mesh), config)
    step_fn = cache[key]
    group, m, k = args.micro * args.accum, args.micro, args.accum
    length = -(-max(len(s.ids) for s in seqs) // 64) * 64  # one padded length for the run (one bucket)
    full = []
    for s in range(args.steps):
        chunk = seqs[s * group:(s + 1) * group]
        rows = [chunk[j * m + i] for i in range(m) for j in range(k)]  # row i*k + j lands in micro-batch j
        full.append(pad_batch(rows, length, group, pad_id))
    # one loss-window width for the run (the widest any batch needs; field 2 holds the targets): one compile
    width = max(np.shape(loss_window(b)[2])[1] for b in full)
    batches = [loss_window(b, fractions=(length // width,)) if width < length else b for b in full]
    shapes = {jax.tree.map(np.shape, b): b for b in batches}  # loss windows: a few widths W per run
    t0 = time.perf_counter()
    for b in shapes.values():  # compile every shape first, on a throwaway copy of the state
        jax.block_until_ready(step_fn(jax.tree.map(lambda x: x.copy(), state), base, device_put_batch(b, mesh),
                                      jax.random.key(0)))
    compile_s = time.perf_counter() - t0
    losses, lrs, norms, times = [], [], [], []
    for b in batches:
        batch = device_put_batch(b, mesh)
        t0 = time.perf_counter()
        state, metrics = step_fn(state, base, batch, jax.random.key(0))
        losses.append(float(metrics["loss"]))
        times.append(time.perf_counter() - t0)
        lrs.append(float(metrics["lr"]))
        norms.append(float(metrics["grad_norm"]))
    print(f"ours: {len(shapes)} batch shapes compiled (and run once) in {compile_s:.1f} s before the timed steps")
    if case.mode == "lora":
        from safetensors.numpy import load_file

        out = export_peft(work / ("ours-nudged" if nudge else "ours-trained"), state.trainable, lora_cfg,
                          lm.config)
        weights = load_file(str(out / "adapter_model.safetensors"))
    else:
        weights = hf_state_dict(state.trainable, lm.config)
    return RunResult(losses, lrs, norms, times, weights), initial


def run_case(case: Case, seqs: list, vocab_source, tokenizer, args: argparse.Namespace, cache: dict) -> dict:
    """Both sides of one case; returns the comparison."""
    import torch
    from torch_reference import add_lora, load_reference_model, train_reference

    work = pathlib.Path(tempfile.mkdtemp(dir=args.workdir))
    source, gguf = vocab_source
    model = load_reference_model(source, gguf)
    torch_init = {n: p.detach().float().numpy().copy() for n, p in model.state_dict().items()}
    lora_dir = None
    if case.mode == "lora":
        lora_dir = work / "lora-init"
        family = model.config.model_type
        model = add_lora(model, "opt" if family == "opt" else family, args.rank, args.alpha, args.seed, lora_dir)
    # ours never makes a sequence's first token a target (batching.pad_batch); the original's labels do, and in
    # every row shorter than its micro-batch the last pad position then predicts it (--original-labels)
    first = (lambda s: int(s.labels[0])) if args.original_labels else (lambda s: -100)
    features = [{"input_ids": s.ids.tolist(), "attention_mask": [1] * len(s.ids),
                 "labels": [first(s)] + s.labels[1:].tolist()} for s in seqs]
    ref = train_reference(model, features, tokenizer, steps=args.steps, micro=args.micro, accum=args.accum,
                          lr=args.lr, warmup=args.warmup, clip=args.clip, loss_normalization=case.normalization,
                          bf16=case.bf16, workdir=work, threads=args.threads)
    del model
    torch.set_num_threads(args.threads)
    ours, our_init = train_ours(case, str(source / gguf) if gguf else str(source), seqs, tokenizer.pad_token_id,
                                lora_dir, args, cache, work)
    twin, _ = train_ours(case, str(source / gguf) if gguf else str(source), seqs, tokenizer.pad_token_id,
                         lora_dir, args, cache, work, nudge=True)
    common = sorted(set(our_init) & set(torch_init))
    init_diff = max(float(np.abs(our_init[n] - torch_init[n]).max()) for n in common)
    missing = sorted(set(ref.weights) ^ set(ours.weights))
    if missing:
        raise RuntimeError(f"{case}: trained tensors on one side only: {missing[:4]}")
    diffs = {n: float(np.abs(ours.weights[n] - ref.weights[n]).max()) for n in ref.weights}
    worst = max(diffs, key=diffs.get)
    floor = {n: float(np.abs(ours.weights[n] - twin.weights[n]).max()) for n in ours.weights}
    rel = [abs(a - b) / abs(b) for a, b in zip(ours.losses, ref.losses)]
    return {"case": case, "torch": ref, "ours": ours, "rel": rel, "max_rel": max(rel), "init_diff": init_diff,
            "weight_diff": diffs[worst], "weight_name": worst,
            "weight_scale": float(np.abs(ref.weights[worst]).max()), "weight_floor": max(floor.values()),
            "weight_floor_name": max(floor, key=floor.get)}


def print_case(r: dict) -> None:
    c, t, o = r["case"], r["torch"], r["ours"]
    print(f"\n== {c}: {len(t.losses)} steps, initial weights max |ours - torch| {r['init_diff']:.1e}")
    print(f"{'step':>4} {'lr torch':>10} {'lr ours':>10} {'loss torch':>12} {'loss ours':>12} {'rel diff':>9} "
          f"{'|g| torch':>10} {'|g| ours':>10}")
    for i, (lt, lo, rel) in enumerate(zip(t.losses, o.losses, r["rel"])):
        print(f"{i + 1:>4} {t.lrs[i]:>10.3e} {o.lrs[i]:>10.3e} {lt:>12.7f} {lo:>12.7f} {rel:>9.1e} "
              f"{t.grad_norms[i]:>10.4f} {o.grad_norms[i]:>10.4f}")
    print(f"trained weights: max |ours - torch| {r['weight_diff']:.2e} in {r['weight_name']} (its max |w| "
          f"{r['weight_scale']:.3f}); ours vs ours from weights 1 ulp away (the rounding floor): "
          f"{r['weight_floor']:.2e} in {r['weight_floor_name']}; step time median torch "
          f"{statistics.median(t.step_s) * 1e3:.0f} ms, ours {statistics.median(o.step_s) * 1e3:.0f} ms")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", help="MODEL:MODE:TRAIN_ON_INPUTS:NORMALIZATION[:bf16], repeatable "
                    f"(default: {', '.join(DEFAULT_CASES)})")
    ap.add_argument("--model", choices=MODELS, help="every default case pattern on this model only "
                    f"(smollm2-135m: {', '.join(SMOLLM2_CASES)})")
    ap.add_argument("--all", action="store_true", help="every combination on the tiny models (or on --model)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--micro", type=int, default=2, help="sequences per micro-batch")
    ap.add_argument("--accum", type=int, default=2, help="gradient accumulation steps")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, help="warm-up steps (default: a third of --steps)")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--cutoff", type=int, default=384, help="tokens per sequence (least similar example dropped)")
    ap.add_argument("--window", type=int, default=64, help="tiny Mistral's sliding window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--original-labels", action="store_true",
                    help="give the Trainer the original's labels: with train_on_inputs the first token is labelled "
                         "too, and the last left-pad position predicts it (ours never does; off by default, so the "
                         "reference reproduces ours)")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="bound on the fp32 relative loss difference")
    ap.add_argument("--weight-tolerance", type=float, default=1e-5,
                    help="bound on max |ours - torch| of the trained fp32 weights, or --floor-factor times the "
                         "rounding floor where that is larger")
    ap.add_argument("--floor-factor", type=float, default=10.0,
                    help="the rounding floor is max |ours - ours from initial weights 1 ulp away|: Adam divides a "
                         "gradient by its own scale, so a weight whose gradient is rounding noise still moves by "
                         "about lr, and other kernels (torch's) land about this far away")
    ap.add_argument("--bf16-tolerance", type=float, default=2e-2, help="bound on the bf16 relative loss difference")
    ap.add_argument("--data-dir", default=os.environ.get("ICMA_DATA_DIR", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (the tiny models gain nothing from more; on shared cores torch's OpenMP "
                         "pool stalls)")
    ap.add_argument("--plot", help="PNG file: both loss curves and their relative difference")
    args = ap.parse_args(argv)
    args.warmup = args.steps // 3 if args.warmup is None else args.warmup
    if args.case:
        cases = [Case.parse(c) for c in args.case]
    elif args.all:
        cases = all_cases((args.model,) if args.model else TINY)
    elif args.model:
        pattern = SMOLLM2_CASES if args.model == "smollm2-135m" else DEFAULT_CASES
        cases = [dataclasses.replace(Case.parse(c), model=args.model) for c in pattern]
        cases = list(dict.fromkeys(cases))
    else:
        cases = [Case.parse(c) for c in DEFAULT_CASES]

    sys.path.insert(0, str(HERE))
    import torch

    from icma_jax.models.registry import resolve_model
    from icma_jax.models.tokenizer import load_tokenizer

    torch.set_num_threads(args.threads)
    smollm2 = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(smollm2)
    count = args.steps * args.micro * args.accum
    print(f"{len(cases)} cases, {args.steps} steps of {args.micro} x {args.accum} sequences, lr {args.lr} with "
          f"{args.warmup} warm-up steps, clip {args.clip}, LoRA r {args.rank} alpha {args.alpha}; torch "
          f"{torch.__version__}, {args.threads} threads")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = tmp
        seqs = {tio: icma_sequences(tokenizer, args.data_dir, count, args.cutoff, tio)
                for tio in sorted({c.train_on_inputs for c in cases})}
        compact, vocab = compact_vocab([s for v in seqs.values() for s in v])
        n = count
        compact = {tio: compact[i * n:(i + 1) * n] for i, tio in enumerate(sorted(seqs))}
        sources, cache = {"smollm2-135m": (smollm2.directory, smollm2.gguf_file)}, {}
        for model in sorted({c.model for c in cases} & set(TINY)):
            sources[model] = (save_tiny(model.removeprefix("tiny-"), vocab, pathlib.Path(tmp), args.window), None)
        print(f"{count} sequences of {min(len(s.ids) for s in seqs[sorted(seqs)[0]])}-"
              f"{max(len(s.ids) for s in seqs[sorted(seqs)[0]])} tokens; tiny models: compact vocabulary of {vocab}")
        for case in cases:
            data = seqs if case.model == "smollm2-135m" else compact
            r = run_case(case, data[case.train_on_inputs], sources[case.model], tokenizer, args, cache)
            print_case(r)
            results.append(r)
    return report(results, args)


def report(results: list[dict], args: argparse.Namespace) -> dict:
    print("\nsummary (relative loss difference = max over steps of |ours - torch| / torch)")
    print(f"{'case':<40} {'max rel loss':>12} {'max |dw|':>9} {'floor':>9} {'bound':>9}  {'tensor':<44} "
          f"{'torch ms':>8} {'ours ms':>8}")
    for r in results:
        r["weight_bound"] = max(args.weight_tolerance, args.floor_factor * r["weight_floor"])
        print(f"{str(r['case']):<40} {r['max_rel']:>12.2e} {r['weight_diff']:>9.1e} {r['weight_floor']:>9.1e} "
              f"{r['weight_bound']:>9.1e}  {r['weight_name'][-44:]:<44} "
              f"{statistics.median(r['torch'].step_s) * 1e3:>8.0f} {statistics.median(r['ours'].step_s) * 1e3:>8.0f}")
    fp32 = [r for r in results if not r["case"].bf16]
    bf16 = [r for r in results if r["case"].bf16]
    out = {"results": results, "ok": True}
    if fp32:
        x = max(r["max_rel"] for r in fp32)
        worst = max(fp32, key=lambda r: r["weight_diff"] / r["weight_bound"])
        print(f"max relative loss difference vs pytorch: {x:.2e} (target <= {args.tolerance:g})")
        print(f"trained weights: max |ours - torch| {worst['weight_diff']:.2e} in {worst['weight_name']} "
              f"({worst['case']}; bound {worst['weight_bound']:.1e} = max({args.weight_tolerance:g}, "
              f"{args.floor_factor:g} x rounding floor {worst['weight_floor']:.1e}))")
        out.update(max_rel=x, weight_diff=max(r["weight_diff"] for r in fp32), weight_bound=worst["weight_bound"])
        out["ok"] &= x <= args.tolerance and all(r["weight_diff"] <= r["weight_bound"] for r in fp32)
    if bf16:
        x = max(r["max_rel"] for r in bf16)
        print(f"bf16 rows: max relative loss difference {x:.2e} (tolerance {args.bf16_tolerance:g})")
        out["bf16_max_rel"] = x
        out["ok"] &= x <= args.bf16_tolerance
    if args.plot:
        from parity_plot import plot

        plot(results, args.plot)
    return out


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
