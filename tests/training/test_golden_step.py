"""Golden regression: one tiny Llama-LoRA train step (padded batch, loss window, 2 micro-batches, LoRA
dropout, AdamW) gives the recorded loss and gradient norm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from icma_jax.data.batching import loss_window, pad_batch
from icma_jax.data.prompts import IGNORE, Encoded
from icma_jax.models.config import LMConfig
from icma_jax.models.lora import LoraConfig, init_lora
from icma_jax.models.transformer import build_model
from icma_jax.training.optim import make_optimizer
from icma_jax.training.state import create_state, replicated_sharding
from icma_jax.training.step import StepConfig, device_put_batch, make_train_step
from training_tiny_lm import mesh_of

# Recorded with the versions beside them (CPU, fp32). Re-record only for an intended change of the maths.
GOLDEN = {"jax": "0.10.2", "jaxlib": "0.10.2",
          "loss": 3.8666255474090576, "grad_norm": 0.16708338260650635, "loss_after_update": 3.8525476455688477}
RTOL = 1e-5


def _golden_run() -> dict[str, float]:
    cfg = LMConfig(family="llama", vocab_size=48, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4,
                   d_ff=32, max_positions=64)
    lora_cfg = LoraConfig.for_family("llama", rank=2, alpha=4.0, dropout=0.1)
    module = build_model(cfg, lora_cfg)
    tok = jnp.zeros((1, 1), jnp.int32)
    params = nn.meta.unbox(build_model(cfg).init({"params": jax.random.key(0)}, tok, tok)["params"])
    lora = jax.tree.map(lambda x: x + 0.02, init_lora(module, lora_cfg, jax.random.key(1)))  # B != 0: A gets gradients
    rng = np.random.default_rng(0)
    seqs = []
    for n, prompt in ((11, 6), (7, 3), (12, 9), (5, 2)):
        ids = rng.integers(3, 48, n).astype(np.int32)
        seqs.append(Encoded(ids, np.where(np.arange(n) >= prompt, ids, IGNORE).astype(np.int32), 0))
    batch = loss_window(pad_batch(seqs, 12, 4, 0))
    mesh = mesh_of(1, 1)
    tx = make_optimizer(1e-2, warmup_steps=0, total_steps=10, weight_decay=0.01)
    state, state_sh = create_state(lora, tx, replicated_sharding(lora, mesh))
    step_fn = make_train_step(module.apply, tx, mesh, state_sh, replicated_sharding(params, mesh),
                              StepConfig(mode="lora", accum_steps=2, dropout=True))
    state, first = step_fn(state, params, device_put_batch(batch, mesh), jax.random.key(3))
    _, second = step_fn(state, params, device_put_batch(batch, mesh), jax.random.key(3))
    return {"loss": float(first["loss"]), "grad_norm": float(first["grad_norm"]),
            "loss_after_update": float(second["loss"])}


def test_tiny_llama_lora_step_matches_golden_values():
    got = _golden_run()
    versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
    same_versions = versions == {k: GOLDEN[k] for k in versions}
    for name, value in got.items():
        assert np.isclose(value, GOLDEN[name], rtol=RTOL, atol=0.0), (
            f"tiny Llama-LoRA step: {name} = {value!r}, golden {GOLDEN[name]!r} (rtol {RTOL}). "
            + ("Same jax/jaxlib as recorded, so the step's maths changed (loss masking or shift, loss window, "
               "LoRA scale or dropout draws, micro-batch accumulation, AdamW update): a change that should keep "
               "behaviour did not. Re-record GOLDEN only for an intended change, and say why in the commit."
               if same_versions else
               f"jax/jaxlib are {versions}, the values were recorded with {GOLDEN['jax']}/{GOLDEN['jaxlib']}: "
               "check the step's tests pass, then re-record GOLDEN with these versions.")
            + f" New values: {got}")
