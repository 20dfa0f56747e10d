"""Train-step tokens/s and MFU for ICMA's backbones on one accelerator (random init, cutoff 2048).

Shapes and settings of configs/icma.py's paper presets: Galactica-125M (OPT, full fine-tuning, fp32 params,
optimiser and compute), Galactica-1.3B and Mistral-7B-Instruct-v0.2 (LoRA r32 alpha64 on every linear but
lm_head, bf16 base and compute, fp32 adapters + optimiser, activation checkpointing), each at its preset's
micro-batch (32 sequences per step in 4, 4 and 8 micro-batches). One device, our jitted `make_train_step`,
random weights, synthetic left-padded batches: only the model and training code is imported (no RDKit, no
tokenizer, no data, no network), so it runs on a bare accelerator machine with a newer jax.

Memory: `peak` = the device allocator's peak bytes in use (accelerators; process-wide, so models run in
ascending size), `compiled` = XLA's buffer assignment for the step (arguments + outputs + temporaries - aliased,
any backend, CPU included).

FLOPs per trained token (stated, PaLM-style):
  matmul:    6·N (full fine-tuning: forward 2N, input grads 2N, weight grads 2N) or
             4·N + 6·N_lora (LoRA: no weight grads for the frozen base), N = parameters used in matmuls
             (every kernel incl. lm_head; the input-embedding lookup and position table are not matmuls);
  attention: 12·n_layers·n_heads·head_dim·L (QK^T and AV, forward ×1 + backward ×2, the full L×L square,
             no causal discount, as in PaLM's appendix B); L = sequence length.
MFU = achieved FLOP/s / peak (dense bf16: H100/H200 989 TFLOP/s, A100 312; or --peak-tflops);
Galactica-125M computes in fp32 as its preset does, so its MFU against the bf16 peak is a lower bound.
Recomputation under remat is not counted as useful work.

Usage: python bench/gpu_train.py [--models galactica-125m,galactica-1.3b,mistral-7b] [--steps 5]
       python bench/gpu_train.py --smoke     # tiny shapes on CPU (CI), same code path
"""

import argparse
import json
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from icma_jax.data.batching import Batch, batch_from_labels
from icma_jax.models.config import LMConfig, config_from_hf
from icma_jax.models.lora import LoraConfig, init_lora
from icma_jax.models.transformer import abstract_variables, build_model
from icma_jax.training.optim import make_optimizer
from icma_jax.sharding import make_mesh, param_shardings
from icma_jax.training.state import count_params, create_state, replicated_sharding
from icma_jax.training.step import StepConfig, device_put_batch, make_train_step

_GALACTICA = dict(model_type="opt", vocab_size=50000, max_position_embeddings=2048, activation_function="gelu",
                  enable_bias=True, do_layer_norm_before=True, tie_word_embeddings=True)
# name -> (HF config fields, fine-tuning mode, batch rows, remat, compute dtype), as configs/icma.py's presets
MODELS = {
    "galactica-125m": (dict(_GALACTICA, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072),
                       "full", 8, False, "float32"),
    "galactica-1.3b": (dict(_GALACTICA, hidden_size=2048, num_hidden_layers=24, num_attention_heads=32,
                            ffn_dim=8192), "lora", 8, True, "bfloat16"),
    "mistral-7b": (dict(model_type="mistral", vocab_size=32000, hidden_size=4096, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336,
                        max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-5, sliding_window=None),
                   "lora", 4, True, "bfloat16"),
}
SMOKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=128)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "v5e": 197.0, "v4": 275.0, "v5p": 459.0}


def _scaled_down(fields: dict) -> dict:
    """Same family and options, tiny widths (the smoke mode)."""
    f = dict(fields, **SMOKE)
    f.update({k: 64 for k in ("ffn_dim", "intermediate_size") if k in fields})
    if "num_key_value_heads" in fields:
        f["num_key_value_heads"] = 2
    return f


def matmul_params(params, config: LMConfig) -> int:
    """Parameters used in matmuls: everything but the position table and (when untied) the input embedding."""
    total = count_params(params)
    embed = count_params(params["embed_tokens"])
    positions = count_params(params.get("embed_positions", {}))
    return total - positions - (0 if config.tie_embeddings else embed)


def flops_per_token(n_matmul: int, n_lora: int, mode: str, config: LMConfig, length: int) -> tuple[float, float]:
    """(matmul FLOPs, attention FLOPs) per trained token, as stated in the module docstring."""
    matmul = 6.0 * n_matmul if mode == "full" else 4.0 * n_matmul + 6.0 * n_lora
    attention = 12.0 * config.n_layers * config.n_heads * config.head_dim * length
    return matmul, attention


def _batch(b: int, length: int, vocab: int) -> Batch:
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, vocab, size=(b, length), dtype=np.int32)
    mask = np.ones((b, length), np.int32)
    mask[0, : length // 8], tokens[0, : length // 8] = 0, 0  # some left padding
    labels = np.where(mask > 0, tokens, -100).astype(np.int32)
    labels[:, : length // 2] = -100  # prompt part
    return batch_from_labels(tokens, mask, labels)


def peak_bytes(device) -> int | None:
    """The allocator's peak bytes in use on `device` (None where the backend keeps no statistics, e.g. CPU)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def compiled_bytes(compiled) -> int | None:
    """Arguments + outputs + temporaries - aliased (donated) bytes of a compiled step (XLA's buffer assignment)."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def bench_model(name: str, fields: dict, mode: str, batch: int, remat: bool, length: int, steps: int,
                mesh, compute_dtype: str = "bfloat16") -> dict:
    """Compile, warm up, time `steps` steps of one model; returns the numbers."""
    param_dtype = "float32" if mode == "full" else "bfloat16"
    config = config_from_hf(fields, where=name, dtype=compute_dtype, param_dtype=param_dtype)
    lora_cfg = LoraConfig.for_family(config.family, rank=32, alpha=64.0, dropout=0.1) if mode == "lora" else None
    module = build_model(config, lora_cfg, remat=remat)
    base_module = build_model(config)
    sharding = param_shardings(abstract_variables(base_module)["params"], mesh)
    tok = jnp.zeros((1, 1), jnp.int32)
    params = jax.jit(lambda k: nn.meta.unbox(base_module.init({"params": k}, tok, tok)["params"]),
                     out_shardings=sharding)(jax.random.key(0))
    tx = make_optimizer(1e-4, warmup_steps=1, total_steps=1000)
    if mode == "lora":
        lora = init_lora(module, lora_cfg, jax.random.key(1))
        trainable, trainable_sh, base, base_sh = lora, replicated_sharding(lora, mesh), params, sharding
    else:
        trainable, trainable_sh, base, base_sh = params, sharding, {}, {}
    n_matmul, n_lora = matmul_params(params, config), (count_params(trainable) if mode == "lora" else 0)
    state, state_sh = create_state(trainable, tx, trainable_sh)
    step_fn = make_train_step(module.apply, tx, mesh, state_sh, base_sh, StepConfig(mode=mode))
    data = device_put_batch(_batch(batch, length, config.vocab_size), mesh)
    rng = jax.random.key(2)

    step_bytes = compiled_bytes(step_fn.lower(state, base, data, rng).compile())
    t0 = time.perf_counter()
    state, m = step_fn(state, base, data, rng)
    loss0 = float(m["loss"])
    compile_s = time.perf_counter() - t0
    state, m = step_fn(state, base, data, rng)
    float(m["loss"])
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, m = step_fn(state, base, data, rng)
        loss = float(m["loss"])  # blocks on the step
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    tokens_per_s = batch * length / sec
    mm, att = flops_per_token(n_matmul, n_lora, mode, config, length)
    return dict(model=name, mode=mode, compute_dtype=compute_dtype, params=count_params(params),
                matmul_params=n_matmul, lora_params=n_lora, batch=batch, length=length, remat=remat,
                peak_bytes=peak_bytes(jax.devices()[0]), compiled_bytes=step_bytes, first_step_s=compile_s, step_s=sec,
                tokens_per_s=tokens_per_s, flops_per_token_matmul=mm, flops_per_token_attention=att,
                tflops=tokens_per_s * (mm + att) / 1e12, loss_first=loss0, loss_last=loss)


def peak_tflops(override: float | None) -> float | None:
    """Dense bf16 peak of device 0 from its kind, or the override; None when unknown (e.g. CPU)."""
    if override:
        return override
    kind = jax.devices()[0].device_kind
    return next((v for k, v in PEAK_TFLOPS.items() if k.lower() in kind.lower()), None)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--length", type=int, default=2048, help="cutoff_len (ICMA: 2048)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None, help="override every model's batch rows")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (CPU/CI): length 32, batch 2, 2 steps")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    length, steps = (32, 2) if args.smoke else (args.length, args.steps)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    peak = peak_tflops(args.peak_tflops)
    dev = jax.devices()[0]
    print(f"jax {jax.__version__}, device 0: {dev.platform} {dev.device_kind}, peak "
          f"{'%.0f TFLOP/s' % peak if peak else 'unknown (MFU n/a)'}; cutoff {length}"
          + ("; SMOKE (tiny shapes)" if args.smoke else ""))
    results = []
    for name in args.models.split(","):
        if name not in MODELS:
            raise ValueError(f"--models: unknown model {name!r} (known: {', '.join(MODELS)})")
        fields, mode, batch, remat, compute_dtype = MODELS[name]
        fields = _scaled_down(fields) if args.smoke else fields
        batch = 2 if args.smoke else (args.batch or batch)
        r = bench_model(name, fields, mode, batch, remat, length, steps, mesh, compute_dtype)
        r["mfu"] = r["tflops"] / peak if peak else None
        results.append(r)
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        flops = r["flops_per_token_matmul"] + r["flops_per_token_attention"]
        gib = lambda b: "n/a" if b is None else f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"  # noqa: E731
        print(f"{name:15s} {mode:4s} {compute_dtype:8s} {r['params'] / 1e6:8.1f}M params  batch {batch}x{length}  "
              f"memory: peak {gib(r['peak_bytes'])}, compiled {gib(r['compiled_bytes'])}  "
              f"{r['tokens_per_s']:10.0f} tokens/s  {r['tflops']:7.2f} TFLOP/s  MFU {mfu}  "
              f"(step {r['step_s'] * 1e3:.0f} ms, first step {r['first_step_s']:.1f} s, "
              f"attention {100 * r['flops_per_token_attention'] / flops:.0f}% of FLOPs, "
              f"loss {r['loss_first']:.3f} -> {r['loss_last']:.3f})", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
