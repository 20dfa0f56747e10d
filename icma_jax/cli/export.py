"""`icma-jax export --model NAME_OR_DIR [--adapter DIR] --out DIR`: write a (merged) transformers checkpoint."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model (+ merged LoRA adapter) as a transformers checkpoint",
                       description=__doc__)
    p.add_argument("--model", required=True, help="known name (smollm2-135m), HF directory, .gguf file or hub id")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter directory to merge into the weights")
    p.add_argument("--out", required=True, help="output directory (config.json, model.safetensors, tokenizer)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="saved dtype")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icma_jax.models.hf_weights import save_hf_checkpoint
    from icma_jax.models.loading import load_model
    from icma_jax.models.lora import merge_lora
    from icma_jax.models.peft import import_peft

    lm = load_model(args.model)
    params = lm.params
    if args.adapter:
        lora_config, lora = import_peft(args.adapter, lm.module)
        params = merge_lora(params, lora, lora_config)
    out = save_hf_checkpoint(args.out, params, lm.config, lm.tokenizer, dtype=args.dtype)
    print(f"wrote {out}")
    return 0
