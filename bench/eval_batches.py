"""Evaluation decoding layout: length-sorted batches, each padded to its own bucket (what `decode_rows` does)
vs every batch padded to the longest prompt of the split (the reference: the layout it replaced).

Run: `ICMA_DATA_DIR=<data root> .venv/bin/python bench/eval_batches.py [--prompts 32] [--batch 8]
[--new-tokens 64]` (a few minutes on 2 CPU cores). SmolLM2-135M, fp32, greedy, EOS disabled so that both
layouts decode exactly --new-tokens per row. The prompts are ChEBI-20 Mol2Cap in-context prompts: a seeded
sample of test queries, each with 2 random validation examples, cut to the study's prompt budget
(cutoff 1536 minus 223 answer tokens). Each layout is timed as one evaluation pass from cold jit caches,
compiles included (an evaluation compiles each shape once). Prints both times, their shapes, whether the
tokens are identical, and `length-sorted batches speedup: X`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--max-prompt", type=int, default=1536 - 223)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import jax

    from icma_jax.data import prompts as prompts_lib
    from icma_jax.data.batching import pad_prompts
    from icma_jax.data.records import load_split
    from icma_jax.data.sources import split_path
    from icma_jax.eval.generate import (GenerationConfig, decoding_layout, generate_tokens, length_batches,
                                        prompt_bucket)
    from icma_jax.models.loading import load_model
    from icma_jax.run.context import pairs

    lm = load_model("smollm2-135m")
    tok, pad = lm.tokenizer, lm.tokenizer.pad_token_id
    module, params = decoding_layout(lm.module, lm.params)
    db = pairs(load_split(split_path("chebi20", "validation")))
    test = pairs(load_split(split_path("chebi20", "test")))
    rng = np.random.default_rng(0)
    ids = [prompts_lib.encode_source("mol2cap", test[q], [db[i] for i in rng.choice(len(db), 2, replace=False)],
                                     tok, max_len=args.max_prompt)[0]
           for q in rng.choice(len(test), args.prompts, replace=False)]
    lengths = [len(x) for x in ids]
    gen = GenerationConfig(max_new_tokens=args.new_tokens)

    def run(batches):
        out = [None] * len(ids)
        for rows, size in batches:
            chunk = [ids[r] for r in rows]
            b = pad_prompts(chunk + [chunk[0]] * (args.batch - len(chunk)), size, args.batch, pad)
            for r, row in zip(rows, generate_tokens(module, params, b.tokens_BxL, b.segment_ids_BxL, gen,
                                                    eos_ids=(), pad_id=pad)):
                out[r] = row
        return np.stack(out)

    order = np.arange(len(ids))
    longest = [(order[i:i + args.batch], prompt_bucket(max(lengths))) for i in range(0, len(ids), args.batch)]
    sorted_batches = length_batches(lengths, args.batch)
    times, outs = {}, {}
    for name, batches in (("padded to the longest", longest), ("length-sorted", sorted_batches)):
        jax.clear_caches()
        t = time.perf_counter()
        outs[name] = run(batches)
        times[name] = time.perf_counter() - t
        shapes = sorted({size for _, size in batches})
        print(f"{name}: {times[name]:.1f}s  prompt buckets {shapes}  padded prompt tokens "
              f"{sum(size * args.batch for _, size in batches):,}", flush=True)
    same = np.mean(outs["padded to the longest"] == outs["length-sorted"])
    print(f"load average: {os.getloadavg()[0]:.1f}; {len(ids)} prompts of {min(lengths)}-{max(lengths)} tokens "
          f"(mean {np.mean(lengths):.0f}), batch {args.batch}, {args.new_tokens} new tokens")
    print(f"tokens identical between the layouts: {same:.1%}")
    print(f"length-sorted batches speedup: {times['padded to the longest'] / times['length-sorted']:.2f}")


if __name__ == "__main__":
    main()
