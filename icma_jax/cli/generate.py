"""`icma-jax generate --model NAME_OR_DIR [--adapter DIR] --prompt TEXT ...`: print the continuation."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a continuation with a causal LM", description=__doc__)
    p.add_argument("--model", required=True, help="known name (smollm2-135m), HF directory, .gguf file or hub id")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter directory")
    p.add_argument("--prompt", required=True, action="append", help="prompt text (repeat for a batch)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="greedy decoding (the default)")
    mode.add_argument("--temperature", type=float, default=None, help="sample with this temperature")
    p.add_argument("--top-k", type=int, default=0, help="sampling: keep the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, help="sampling: nucleus probability mass")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="transformers semantics; prompt counts")
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (greedy only)")
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute and parameter dtype")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icma_jax.eval.generate import GenerationConfig, generate
    from icma_jax.models.loading import load_model
    from icma_jax.models.peft import import_peft

    sample = args.temperature is not None or args.top_k > 0 or args.top_p < 1.0
    if sample and args.greedy:
        raise ValueError("--greedy cannot be combined with --top-k / --top-p")
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, greedy=not sample,
                           temperature=args.temperature if args.temperature is not None else 1.0, top_k=args.top_k,
                           top_p=args.top_p, repetition_penalty=args.repetition_penalty, num_beams=args.num_beams,
                           seed=args.seed)
    lm = load_model(args.model, dtype=args.dtype, param_dtype=args.dtype)
    lora_config = lora = None
    if args.adapter:
        lora_config, lora = import_peft(args.adapter, lm.module)
    for text in generate(lm, args.prompt, gen, lora_params=lora, lora_config=lora_config):
        print(text)
    return 0
