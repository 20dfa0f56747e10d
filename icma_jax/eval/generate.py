"""Jitted generation: one prefill + a `lax.while_loop` of single-token steps over a preallocated KV cache.

Shapes are fixed per (batch, prompt-length bucket, max_new_tokens, mode), so each bucket compiles once.
Dims (package legend): B batch rows, P prompt bucket, U generated tokens, S = P + U cache slots, V vocabulary,
X beams.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from icma_jax.data.batching import pad_prompts
from icma_jax.eval.beam_search import beam_search
from icma_jax.eval.sampling import choose, process_logits
from icma_jax.models.lora import merge_lora
from icma_jax.models.transformer import CausalLM, init_cache, unstack_layers


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings; `greedy=False` samples with temperature / top-k / top-p; `num_beams > 1` is beam search."""

    max_new_tokens: int = 64
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0
    seed: int = 0
    length_bucket: int = 32  # prompts are left-padded to a multiple of this

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"GenerationConfig.max_new_tokens={self.max_new_tokens} must be >= 1")
        if self.temperature <= 0:
            raise ValueError(f"GenerationConfig.temperature={self.temperature} must be > 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"GenerationConfig.top_p={self.top_p} must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise ValueError(f"GenerationConfig.repetition_penalty={self.repetition_penalty} must be > 0")
        if self.num_beams < 1:
            raise ValueError(f"GenerationConfig.num_beams={self.num_beams} must be >= 1")
        if self.num_beams > 1 and not self.greedy:
            raise ValueError("beam search with sampling is not supported: set greedy=True with num_beams > 1")
        if self.top_k < 0:
            raise ValueError(f"GenerationConfig.top_k={self.top_k} must be >= 0")


def _prefill_and_step(module: CausalLM, params: Any, lora: Any) -> tuple[Callable, Callable]:
    """prefill(tokens, mask, cache) and step(tok, mask, cache). The step runs the layer-loop twin of the
    module over per-layer weights: given stacked weights (the training layout), they are sliced once per
    call, outside the decode loop (no per-step weight copies); weights already in the per-layer layout
    (`decoding_layout`) are used as they are, so repeated calls copy nothing."""
    n = module.config.n_layers
    stacked = {"params": params} if lora is None else {"params": params, "lora": lora}
    unrolled = module.clone(scan_layers=False)
    if "layers" not in params:
        prefill_module, prefill_vars, per_layer = unrolled, stacked, stacked
    else:
        prefill_module, prefill_vars = module, stacked
        per_layer = {k: unstack_layers(v, n) for k, v in stacked.items()}

    def prefill(tokens, mask, cache):
        last_Bx1 = jnp.full((tokens.shape[0], 1), tokens.shape[1] - 1, jnp.int32)  # only the next-token logits
        return prefill_module.apply(prefill_vars, tokens, mask, cache=cache, head_pos_BxW=last_Bx1)

    def step(tokens, mask, cache):
        return unrolled.apply(per_layer, tokens, mask, cache=cache)

    return prefill, step


def decoding_layout(module: CausalLM, params: Any, lora: Any = None) -> tuple[CausalLM, Any]:
    """(module, params) for many `generate_tokens` calls with the same weights (evaluating a split), made
    in one jitted copy: LoRA merged (W + (alpha/r) A B), the stacked `layers` split per layer, and the
    q/k/v and gate/up kernels concatenated, so a decode step runs 4 weight products per layer instead of
    7 (or 21 with unmerged adapters) and no call slices weights out of the stack again."""
    if (module.lora is None) != (lora is None):
        raise ValueError("decoding_layout: give lora exactly when the module was built with a LoraConfig")
    n = module.config.n_layers

    def fuse(block: dict, owner: str, names: tuple[str, ...], fused: str) -> dict:
        parent = dict(block[owner])
        if not all(nm in parent for nm in names):
            return block
        parts = [parent.pop(nm) for nm in names]
        parent[fused] = {key: jnp.concatenate([part[key] for part in parts], axis=-1) for key in parts[0]}
        return {**block, owner: parent}

    def build(params, lora):
        merged = params if lora is None else merge_lora(params, lora, module.lora)
        out = unstack_layers(merged, n) if "layers" in merged else dict(merged)
        for i in range(n):
            block = fuse(out[f"layers_{i}"], "self_attn", ("q_proj", "k_proj", "v_proj"), "qkv_proj")
            fused = fuse(block, "mlp", ("gate_proj", "up_proj"), "gate_up_proj") if "mlp" in block else block
            out[f"layers_{i}"] = fused
        return out

    return module.clone(lora=None, scan_layers=False, fused=True), jax.jit(build)(params, lora)


def _seen(tokens_BxP: jax.Array, mask_BxP: jax.Array, vocab: int) -> jax.Array:
    """Which vocabulary ids occur among the real prompt tokens (the repetition penalty counts the prompt)."""
    rows = jnp.arange(tokens_BxP.shape[0])[:, None]
    return jnp.zeros((tokens_BxP.shape[0], vocab), bool).at[rows, tokens_BxP].max(mask_BxP.astype(bool))


@functools.partial(jax.jit, static_argnames=("module", "gen", "eos_ids", "pad_id"))
def _sample_loop(params, lora, tokens_BxP, mask_BxP, key, *, module: CausalLM, gen: GenerationConfig,
                 eos_ids: tuple[int, ...], pad_id: int):
    """Greedy / sampling: returns new tokens B x N (pad after each row's EOS)."""
    b, p = tokens_BxP.shape
    n, v = gen.max_new_tokens, module.config.vocab_size
    prefill, decode = _prefill_and_step(module, params, lora)
    logits_BxPxV, cache = prefill(tokens_BxP, mask_BxP, init_cache(module.config, b, p + n))
    eos = jnp.asarray(eos_ids, jnp.int32)
    proc = functools.partial(process_logits, sample=not gen.greedy, temperature=gen.temperature, top_k=gen.top_k,
                             top_p=gen.top_p, penalty=gen.repetition_penalty)

    def cond(state):
        step, _, _, _, _, done_B = state
        return (step < n) & ~jnp.all(done_B)

    def body(state):
        step, cache, logits_BxV, seen_BxV, out_BxU, done_B = state
        tok_B = choose(proc(logits_BxV, seen_BxV), jax.random.fold_in(key, step), not gen.greedy)
        tok_B = jnp.where(done_B, pad_id, tok_B)
        out_BxU = out_BxU.at[:, step].set(tok_B)
        seen_BxV = seen_BxV.at[jnp.arange(b), tok_B].set(True)
        done_B = done_B | jnp.any(tok_B[:, None] == eos[None, :], axis=-1)
        logits_Bx1xV, cache = decode(tok_B[:, None], jnp.ones((b, 1), jnp.int32), cache)
        return step + 1, cache, logits_Bx1xV[:, 0], seen_BxV, out_BxU, done_B

    state = (jnp.zeros((), jnp.int32), cache, logits_BxPxV[:, -1], _seen(tokens_BxP, mask_BxP, v),
             jnp.full((b, n), pad_id, jnp.int32), jnp.zeros((b,), bool))
    return jax.lax.while_loop(cond, body, state)[4]


@functools.partial(jax.jit, static_argnames=("module", "gen", "eos_ids", "pad_id"))
def _beam_loop(params, lora, tokens_BxP, mask_BxP, *, module: CausalLM, gen: GenerationConfig,
               eos_ids: tuple[int, ...], pad_id: int):
    prefill, decode = _prefill_and_step(module, params, lora)
    return beam_search(module.config, prefill, decode, tokens_BxP, mask_BxP, gen.num_beams, gen.max_new_tokens,
                       gen.length_penalty, gen.repetition_penalty, eos_ids, pad_id)


def generate_tokens(module: CausalLM, params: Any, tokens_BxP: np.ndarray, mask_BxP: np.ndarray,
                    gen: GenerationConfig, *, eos_ids: Sequence[int], pad_id: int, lora_params: Any = None
                    ) -> np.ndarray:
    """Token-level API: left-padded prompts in, B x max_new_tokens new ids out (pad after EOS)."""
    if not mask_BxP[:, -1].all():
        raise ValueError("prompts must be left-padded: the last column of mask_BxP has padding")
    if (module.lora is None) != (lora_params is None):
        raise ValueError("lora_params must be given exactly when the module was built with a LoraConfig")
    tokens, mask = jnp.asarray(tokens_BxP, jnp.int32), jnp.asarray(mask_BxP, jnp.int32)
    static = dataclasses.replace(gen, seed=0, length_bucket=1)  # neither changes the compiled program
    kw = dict(module=module, gen=static, eos_ids=tuple(int(e) for e in eos_ids), pad_id=int(pad_id))
    if gen.num_beams > 1:
        return np.asarray(_beam_loop(params, lora_params, tokens, mask, **kw))
    return np.asarray(_sample_loop(params, lora_params, tokens, mask, jax.random.key(gen.seed), **kw))


def pad_left(ids: Sequence[Sequence[int]], pad_id: int, bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad token lists to the next multiple of `bucket`: (tokens_BxP, mask_BxP)."""
    longest = max(len(x) for x in ids)
    if longest == 0:
        raise ValueError("an empty prompt has nothing to condition on")
    batch = pad_prompts([np.asarray(x, np.int32) for x in ids], -(-longest // bucket) * bucket, len(ids), pad_id)
    return batch.tokens_BxL, batch.segment_ids_BxL


def prompt_bucket(n: int, smallest: int = 64) -> int:
    """The padded length for a batch whose longest prompt has `n` tokens: the first of `smallest` x
    1, 1.5, 2, 3, 4, 6, ... that holds it (`smallest` even). Two shapes per doubling keep compiles few and
    padding under 50%."""
    size, base = smallest, smallest
    while size < n:
        size, base = (base * 3 // 2, base) if size == base else (2 * base, 2 * base)
    return size


def length_batches(lengths: Sequence[int], batch_size: int) -> list[tuple[np.ndarray, int]]:
    """Rows grouped longest first into batches of `batch_size`, each with its `prompt_bucket`: a batch of
    short prompts is not padded (prefilled, attended over) to the longest prompt of the whole split."""
    order = np.argsort(-np.asarray(lengths, np.int64), kind="stable")
    return [(rows, prompt_bucket(int(lengths[rows[0]])))
            for rows in (order[i:i + batch_size] for i in range(0, len(order), batch_size))]


def cut_at_eos(row: np.ndarray, eos_ids: Sequence[int]) -> tuple[list[int], bool]:
    """A row of `generate_tokens` up to its first EOS (excluded), and whether an EOS ended it."""
    hits = np.flatnonzero(np.isin(row, np.asarray(eos_ids, row.dtype)))
    return row[:hits[0] if hits.size else len(row)].tolist(), bool(hits.size)


def generate(loaded: Any, prompts: Sequence[str] | Sequence[Sequence[int]], gen: GenerationConfig,
             lora_params: Any = None, lora_config: Any = None) -> list[str]:
    """Text in, continuations out (cut at EOS, special tokens dropped). `loaded` is a `LoadedModel`."""
    tok, module = loaded.tokenizer, loaded.module
    if lora_params is not None and module.lora is None:
        if lora_config is None:
            raise ValueError("generate(lora_params=...) needs lora_config (or a module built with LoRA)")
        module = module.clone(lora=lora_config)
    eos_ids = tuple(loaded.config.eos_token_ids) or (tok.eos_token_id,)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
    ids = [tok(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompts]
    tokens, mask = pad_left(ids, pad_id, gen.length_bucket)
    out = generate_tokens(module, loaded.params, tokens, mask, gen, eos_ids=eos_ids, pad_id=pad_id,
                          lora_params=lora_params)
    return [tok.decode(cut_at_eos(row, eos_ids)[0], skip_special_tokens=True) for row in out]
