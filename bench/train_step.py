"""Tokens/s of our jitted LoRA train step vs transformers + PEFT (PyTorch) on the same CPU, same model shape.

Both sides: a randomly initialised SmolLM2-135M-shaped Llama (tied embeddings), fp32, LoRA on every linear
layer but lm_head (rank/alpha/dropout as given), AdamW + global-norm clip 1.0, the same batch and length.
The batch (`--data`): `icma` (default) is what ICMA training feeds the step: Mol2Cap prompts with n=2 Morgan
neighbours from ChEBI-20 validation (each query's own row excluded), SmolLM2's tokenizer, the first
--batch prompts that fit --length, left-padded by the pipeline's `pad_batch`, loss on the answer only;
`synthetic` is random tokens, 0-25% left padding and the first half of each row masked. With `icma`, our
step is also timed on the same prompts packed into rows of --pack-length (`train.pack_length`: no padding
computed, the same loss and update as the padded rows, see tests/training/test_step_models.py); torch keeps
the padded batch, as the original ICMA code trains. Steps are timed alternately (ours, theirs, ours, ...)
after a warm-up/compile step each; the medians are compared as real (non-padding) tokens/s. torch gets the
faster of 1 and --threads threads (its OpenMP pool collapses when the cores are shared); the load average
is printed.

Peak memory: each side then runs alone (--memory-steps steps, the first compiling) in its own subprocess,
under a wrapper process that reads the peak resident set of its one child with
`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`; the batch travels in a .npz file, so the torch side imports
only torch/transformers/peft and ours only JAX (with the training job's `host_memory` settings). Our side also
prints XLA's buffer accounting of the compiled step (arguments, temporaries) and its resident set before
the first step.

Usage: python bench/train_step.py [--data icma --batch 4 --length 512 --pack-length 768 --layers 30 --rounds 5]
Prints `train step speedup vs transformers+peft: X` (target >= 1.5; packed rows when timed) and, with packing,
the padded-rows figure too; then `peak memory vs transformers+peft: X` (ours / theirs, padded rows; packed
rows on their own line).
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from icma_jax import host_memory
from icma_jax.data.batching import Batch, batch_from_labels

SMOLLM2_135M = dict(vocab_size=49152, d_model=576, n_heads=9, n_kv_heads=3, head_dim=64, d_ff=1536,
                    max_positions=8192, norm_eps=1e-5, rope_theta=100000.0, tie_embeddings=True)
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# A wrapper process whose one child is the measured side: its RUSAGE_CHILDREN peak is that side's peak alone.
MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
           "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def make_batch(b: int, length: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded rows (0-25% padding), labels -100 on padding and the first half of each row."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab, size=(b, length), dtype=np.int32)
    mask = np.ones((b, length), np.int32)
    labels = tokens.copy()
    for i in range(b):
        pad = int(rng.integers(0, length // 4))
        tokens[i, :pad], mask[i, :pad] = 0, 0
        labels[i, : pad + (length - pad) // 2] = -100
    return tokens, mask, labels


def icma_batch(b: int, length: int, data_dir: str) -> tuple[Batch, list]:
    """`b` real Mol2Cap n=2 training rows (see the module docstring), padded to `length`, and the sequences."""
    from icma_jax.data.batching import pad_batch
    from icma_jax.data.prompts import Pair, encode_train
    from icma_jax.data.records import load_split
    from icma_jax.models.registry import resolve_model
    from icma_jax.models.tokenizer import load_tokenizer
    from icma_jax.retrieval import fingerprints

    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    split = load_split(os.path.join(data_dir, "chebi20", "validation.txt"))
    pairs = [Pair(r.smiles, r.text) for r in split.records]
    index = fingerprints.build_index(fingerprints.compute(split.smiles, "morgan"))
    seqs, start = [], 0
    while len(seqs) < b and start < len(pairs):
        stop = min(start + 8 * b, len(pairs))
        rows, _ = fingerprints.topk(fingerprints.compute(split.smiles[start:stop], "morgan"), index, 3)
        for q, nb in zip(range(start, stop), rows):
            enc, _ = encode_train("mol2cap", pairs[q], [pairs[j] for j in nb if j != q][:2], tokenizer,
                                  cutoff_len=length)
            if len(enc.ids) <= length and enc.n_examples == 2 and len(seqs) < b:
                seqs.append(enc)
        start = stop
    batch = pad_batch(seqs, length, b, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    n_real, n_loss = int((batch.segment_ids_BxL > 0).sum()), int((batch.targets_BxW != -100).sum())
    print(f"icma batch: {b} Mol2Cap n=2 prompts, {n_real} of {b * length} positions real, "
          f"{n_loss} answer tokens ({n_loss / n_real:.0%} of the real ones)")
    return batch, seqs


def packed_batch(seqs: list, pack_length: int) -> Batch:
    """The same sequences packed first-fit (in order) into rows of `pack_length` (`train.pack_length`)."""
    from icma_jax.data.batching import first_fit, pack_batch

    (rows,) = first_fit([len(s.ids) for s in seqs], pack_length, len(seqs))
    batch = pack_batch([[seqs[i] for i in row] for row in rows], pack_length, len(rows), 0)
    print(f"packed: the same {len(seqs)} prompts in {len(rows)} rows of {pack_length} "
          f"({int((batch.segment_ids_BxL > 0).sum())} of {batch.segment_ids_BxL.size} positions real)")
    return batch


def jax_step(shape: dict, args: argparse.Namespace, batch: Batch, lr: float, report_memory: bool = False):
    """Our side: returns a zero-argument callable running one step and blocking on its loss."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from icma_jax.data.batching import loss_window
    from icma_jax.models.config import LMConfig
    from icma_jax.models.lora import LoraConfig, init_lora
    from icma_jax.models.transformer import build_model
    from icma_jax.training.optim import make_optimizer
    from icma_jax.sharding import make_mesh
    from icma_jax.training.state import count_params, create_state, replicated_sharding
    from icma_jax.training.step import StepConfig, device_put_batch, make_train_step

    cfg = LMConfig(family="llama", **shape)
    lora_cfg = LoraConfig.for_family("llama", rank=args.rank, alpha=args.alpha, dropout=args.dropout)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    module = build_model(cfg, lora_cfg)
    tok = jnp.zeros((1, 1), jnp.int32)
    params = jax.jit(lambda k: nn.meta.unbox(build_model(cfg).init({"params": k}, tok, tok)["params"]))(
        jax.random.key(0))
    lora = init_lora(module, lora_cfg, jax.random.key(1))
    tx = make_optimizer(lr, warmup_steps=0, total_steps=10_000)
    state, state_sh = create_state(lora, tx, replicated_sharding(lora, mesh))
    base_sh = replicated_sharding(params, mesh)
    step_fn = make_train_step(module.apply, tx, mesh, state_sh, base_sh, StepConfig(mode="lora"))
    holder = {"state": state, "rng": jax.random.key(2)}
    batch = loss_window(batch)  # the pipeline's loss window: the head runs only where labels are
    dev_batch = device_put_batch(batch, mesh)
    pos_BxW = batch.target_pos_BxW
    tail = (np.diff(pos_BxW, axis=1) == 1).all() and (pos_BxW == pos_BxW[:1]).all()
    where = "the last" if tail else "gathered"
    print(f"ours: {count_params(params) / 1e6:.1f}M base params, {count_params(lora) / 1e6:.2f}M LoRA params; "
          f"vocabulary head on {where} {batch.targets_BxW.shape[1]} of {batch.tokens_BxL.shape[1]} positions a row")
    if report_memory:  # compile ahead of time (the one compilation) to read XLA's buffer accounting
        rss_before = _rss_mib()
        compiled = step_fn.lower(state, params, dev_batch, holder["rng"]).compile()
        mem = compiled.memory_analysis()
        mib = 1 << 20
        print(f"ours, memory: resident {rss_before:.0f} MiB before compiling (runtime, base weights "
              f"{count_params(params) * 4 / mib:.0f} MiB, LoRA state, batch); compiled step: arguments "
              f"{mem.argument_size_in_bytes / mib:.0f} MiB, temporaries {mem.temp_size_in_bytes / mib:.0f} MiB "
              f"(saved activations and the backward pass's buffers), outputs {mem.output_size_in_bytes / mib:.0f} "
              f"MiB (aliased to the donated state); peak after compiling {_rss_mib():.0f} MiB")
        step_fn = compiled

    def run() -> float:
        holder["state"], m = step_fn(holder["state"], params, dev_batch, holder["rng"])
        return float(m["loss"])

    return run


def torch_step(shape: dict, args: argparse.Namespace, batch: Batch, lr: float):
    """transformers + PEFT: LlamaForCausalLM + get_peft_model, torch AdamW, clip_grad_norm_."""
    import peft
    import torch
    import transformers

    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        vocab_size=shape["vocab_size"], hidden_size=shape["d_model"], intermediate_size=shape["d_ff"],
        num_hidden_layers=shape["n_layers"], num_attention_heads=shape["n_heads"],
        num_key_value_heads=shape["n_kv_heads"], head_dim=shape["head_dim"],
        max_position_embeddings=shape["max_positions"], rms_norm_eps=shape["norm_eps"],
        rope_theta=shape["rope_theta"], tie_word_embeddings=shape["tie_embeddings"], attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(hf_cfg)
    model = peft.get_peft_model(model, peft.LoraConfig(r=args.rank, lora_alpha=args.alpha,
                                                       lora_dropout=args.dropout, target_modules=list(TARGETS)))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.999),
                            eps=1e-8, weight_decay=0.0)
    # HF shifts inside the model: undo our shift (a full-width batch: position t predicts token t + 1)
    labels_BxL = np.concatenate([np.full((len(batch.targets_BxW), 1), -100), batch.targets_BxW[:, :-1]], axis=1)
    tokens, mask, labels = (torch.tensor(x, dtype=torch.long) for x in (batch.tokens_BxL, batch.segment_ids_BxL,
                                                                       labels_BxL))
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"transformers+peft: {n_lora / 1e6:.2f}M LoRA params, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    def run() -> float:
        out = model(input_ids=tokens, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    return run


def _rss_mib() -> float:
    """This process's peak resident set so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save_batch(path: str, batch: Batch) -> None:
    np.savez(path, **{k: v for k, v in batch._asdict().items() if v is not None})


def _load_batch(path: str) -> Batch:
    with np.load(path) as f:
        return Batch(**{k: f[k] for k in f.files})


def run_side(args: argparse.Namespace, shape: dict) -> None:
    """`--side`: one side alone on the batch in --batch-file, --memory-steps steps (the first compiles)."""
    batch = _load_batch(args.batch_file)
    if args.side == "torch":
        import torch

        torch.set_num_threads(args.threads)
        run = torch_step(shape, args, batch, 1e-4)
    else:
        run = jax_step(shape, args, batch, 1e-4, report_memory=True)
    for _ in range(args.memory_steps):
        run()


def measure_peaks(args: argparse.Namespace, batches: dict[str, Batch]) -> dict[str, float]:
    """Peak resident MiB of each side run alone in its own subprocess (see the module docstring)."""
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side, batch in batches.items():
            path = os.path.join(tmp, f"{side}.npz")
            _save_batch(path, batch)
            side_cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--batch-file", path,
                        "--layers", str(args.layers), "--rank", str(args.rank), "--alpha", str(args.alpha),
                        "--dropout", str(args.dropout), "--memory-steps", str(args.memory_steps),
                        "--threads", str(args.threads)]
            out = subprocess.run([sys.executable, "-c", MEASURE, *side_cmd], capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"memory run of side {side!r} failed:\n{out.stdout}\n{out.stderr[-3000:]}")
            lines = out.stdout.strip().splitlines()
            for line in lines[:-1]:
                if line.startswith("ours, memory"):
                    print(line.replace("ours", f"{side}", 1))
            peaks[side] = int(lines[-1].split()[-1]) / 1024
            print(f"{side}: peak resident memory {peaks[side]:.0f} MiB ({args.memory_steps} steps alone)")
    return peaks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("icma", "synthetic"), default="icma")
    ap.add_argument("--data-dir", default=os.environ.get("ICMA_DATA_DIR", "../shared/data"),
                    help="folder holding chebi20/validation.txt (for --data icma)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--layers", type=int, default=30, help="30 = SmolLM2-135M; fewer for a quick look")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=64.0)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--pack-length", type=int, default=768,
                    help="--data icma: also time our step on the same prompts packed into rows of this many "
                         "tokens (train.pack_length); 0 = do not")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--memory-steps", type=int, default=3,
                    help="steps each side runs alone for the peak-memory figure; 0 = skip the memory runs")
    ap.add_argument("--side", choices=("ours", "packed", "torch"), help=argparse.SUPPRESS)  # a memory run
    ap.add_argument("--batch-file", help=argparse.SUPPRESS)
    args = ap.parse_args()

    shape = dict(SMOLLM2_135M, n_layers=args.layers)
    if args.side == "torch":  # the original's process: default allocator, no JAX
        return run_side(args, shape)
    host_memory.retain_freed_memory()  # the training job's allocator settings (both sides when timed together)
    if args.side:
        return run_side(args, shape)

    import jax
    import torch

    torch.set_num_threads(args.threads)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; model SmolLM2-135M shape, {args.layers} layers; "
          f"batch {args.batch} x {args.length} tokens ({args.data})")
    seqs = None
    if args.data == "icma":
        batch, seqs = icma_batch(args.batch, args.length, args.data_dir)
    else:
        batch = batch_from_labels(*make_batch(args.batch, args.length, shape["vocab_size"]))
    packed = packed_batch(seqs, args.pack_length) if seqs is not None and args.pack_length else None
    sides = {"ours": jax_step(shape, args, batch, 1e-4)}
    if packed is not None:
        sides["ours, packed"] = jax_step(shape, args, packed, 1e-4)
    sides["transformers+peft"] = torch_step(shape, args, batch, 1e-4)
    for name, run in sides.items():  # warm up (JAX compiles on its first call), then one more untimed step
        t0 = time.perf_counter()
        loss = run()
        print(f"{name}: first step {time.perf_counter() - t0:.1f} s (loss {loss:.3f})")
        run()
    # torch's OpenMP pool degrades badly when the cores are shared: give it its best thread count
    thread_times = {}
    for n in sorted({1, args.threads}):
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        sides["transformers+peft"]()
        thread_times[n] = time.perf_counter() - t0
    best = min(thread_times, key=thread_times.get)
    torch.set_num_threads(best)
    print("torch threads tried: " + ", ".join(f"{n}: {t * 1e3:.0f} ms" for n, t in thread_times.items())
          + f"; using {best}")
    times = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, run in sides.items():
            time.sleep(1.0)  # let the other side's idle threads (torch's OpenMP workers spin) go quiet
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    tokens = int((batch.segment_ids_BxL > 0).sum())  # real tokens: the same on every side
    tps = {name: tokens / statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts) * 1e3:.0f} ms/step, {tps[name]:.0f} real tokens/s "
              f"(steps: {', '.join(f'{t * 1e3:.0f}' for t in ts)} ms)")
    print(f"load average (1/5/15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on "
          f"{os.cpu_count()} cores")
    torch_tps = tps["transformers+peft"]
    if "ours, packed" in tps:
        print(f"padded rows (torch's layout): speedup {tps['ours'] / torch_tps:.2f}")
        print(f"train step speedup vs transformers+peft: {tps['ours, packed'] / torch_tps:.2f} (packed rows, "
              f"train.pack_length={args.pack_length})")
    else:
        print(f"train step speedup vs transformers+peft: {tps['ours'] / torch_tps:.2f}")
    if args.memory_steps:
        del sides  # free this process's models before the memory runs start theirs
        torch.set_num_threads(args.threads)
        runs = {"ours": batch, "torch": batch, **({"packed": packed} if packed is not None else {})}
        peaks = measure_peaks(args, runs)
        if "packed" in peaks:
            print(f"packed rows: peak memory ours / transformers+peft {peaks['packed'] / peaks['torch']:.2f} "
                  f"(train.pack_length={args.pack_length})")
        print(f"peak memory vs transformers+peft: {peaks['ours'] / peaks['torch']:.2f} (padded rows, "
              f"{peaks['ours']:.0f} / {peaks['torch']:.0f} MiB)")


if __name__ == "__main__":
    main()
