"""Greedy decode speed: our jitted generation vs transformers `generate`, SmolLM2-135M on CPU, batch 8.

Run: `.venv/bin/python bench/generate.py [--new-tokens 32] [--repeats 3]` (about 1-2 minutes on 2 CPU cores).
Both sides get the same 8 prompts (left-padded), produce exactly --new-tokens tokens (EOS disabled), fp32.
Ours decodes from the weight layout that evaluation uses (`decoding_layout`: per layer, q/k/v and gate/up
kernels concatenated; made once, its time printed), as transformers' model is loaded once.
Prints per-side seconds (best of --repeats after one warm-up/compile run; transformers at its best torch
thread count, 1 or all cores) and
`greedy decode speedup vs transformers: X`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

PROMPTS = [
    "The molecule is a",
    "Generate a caption for the molecule: CCO\nCaption:",
    "Caffeine is an alkaloid that",
    "Aspirin, also known as acetylsalicylic acid, is",
    "The following compound is a monocarboxylic acid",
    "Benzene is an aromatic hydrocarbon",
    "Generate a molecule for the caption: The molecule is an ethanol.\nMolecule:",
    "Glucose is a simple sugar with the formula",
]


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import jax
    import torch
    import transformers

    from icma_jax.eval.generate import GenerationConfig, decoding_layout, generate_tokens, pad_left
    from icma_jax.models.loading import load_model

    lm = load_model("smollm2-135m")
    tok = lm.tokenizer
    pad = tok.pad_token_id
    tokens, mask = pad_left([tok(p)["input_ids"] for p in PROMPTS], pad, 8)
    n = args.new_tokens
    gen = GenerationConfig(max_new_tokens=n)

    t0 = time.perf_counter()
    module, params = decoding_layout(lm.module, lm.params)
    params = jax.block_until_ready(params)
    layout_s = time.perf_counter() - t0

    def ours():
        return generate_tokens(module, params, tokens, mask, gen, eos_ids=(), pad_id=pad)

    t0 = time.perf_counter()
    ours_out = ours()
    compile_s = time.perf_counter() - t0
    ours_s = _best(ours, args.repeats)

    src = lm.source
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(src.directory), gguf_file=src.gguf_file).eval()
    t_tok, t_mask = torch.tensor(tokens, dtype=torch.long), torch.tensor(mask, dtype=torch.long)

    def theirs():
        with torch.no_grad():
            return ref.generate(input_ids=t_tok, attention_mask=t_mask, max_new_tokens=n, min_new_tokens=n,
                                do_sample=False, pad_token_id=pad)

    # torch's OpenMP pool degrades badly on an oversubscribed machine: give transformers its best thread count.
    ref_times = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        ref_out = theirs()
        ref_times[threads] = _best(theirs, args.repeats)
    ref_s = min(ref_times.values())
    same = np.mean(ours_out == ref_out[:, tokens.shape[1]:].numpy())
    print(f"devices: {jax.devices()[0].platform} x{jax.device_count()}  load average: {os.getloadavg()[0]:.1f}")
    print("transformers seconds by torch threads: " + ", ".join(f"{k}: {v:.3f}" for k, v in ref_times.items()))
    print(f"batch {len(PROMPTS)}, prompt bucket {tokens.shape[1]}, new tokens {n}")
    print(f"ours: {ours_s:.3f}s (first call incl. compile {compile_s:.1f}s; per-layer layout once {layout_s:.2f}s)"
          f"  transformers: {ref_s:.3f}s")
    print(f"tokens identical to transformers: {same:.1%}")
    print(f"greedy decode speedup vs transformers: {ref_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
