"""`icma-jax export --run DIR [--step N] --out DIR [--merged]`: a run's LoRA adapter as a PEFT directory (or, with
--merged and for full fine-tuning runs, a transformers checkpoint); `icma-jax export --model M [--adapter DIR]
--out DIR`: a model (+ a PEFT adapter merged in) as a transformers checkpoint. Each export has a README.md."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="a run's adapter as a PEFT directory, or a (merged) transformers checkpoint",
                       description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", default=None, help="a run directory (train.py --workdir): read its checkpoint")
    source.add_argument("--model", default=None, help="known name (smollm2-135m), HF directory, .gguf file or hub id")
    p.add_argument("--step", type=int, default=None, help="with --run: checkpoint step (default: the newest)")
    p.add_argument("--merged", action="store_true", help="with --run: the base with the adapter merged in")
    p.add_argument("--adapter", default=None, help="with --model: a PEFT LoRA adapter directory to merge")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="saved dtype of a transformers checkpoint (adapters are saved in float32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.run is not None:
        if args.adapter:
            raise ValueError("--adapter goes with --model; a run's adapter is read from its checkpoint")
        from icma_jax.run.export import export_run

        out = export_run(args.run, args.out, step=args.step, merged=args.merged, dtype=args.dtype)
        print(f"wrote {out}")
        return 0
    if args.step is not None or args.merged:
        raise ValueError("--step and --merged go with --run (with --model, --adapter is merged)")
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
