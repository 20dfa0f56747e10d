"""Beam search with transformers' (v5) semantics, as one `lax.while_loop` over a KV cache of B*X rows.

Per step: log-softmax, repetition penalty, add running scores, keep the top 2X continuations; those hitting EOS
(or the length limit) among the top X become finished hypotheses scored sum_logp / new_len ** length_penalty;
the best X others keep running. Stops when no running beam can beat the worst finished one (HF's
`early_stopping=False` heuristic). Dims (package legend):
B batch rows, X beams, C = 2X candidates, U generated tokens, P prompt bucket, V vocabulary.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from icma_jax.eval.sampling import repetition_penalty
from icma_jax.models.config import LMConfig
from icma_jax.models.transformer import init_cache

_NEG = -1.0e9


def _take(x_BxKx, idx_BxC):
    """Gather along the beam axis."""
    return jnp.take_along_axis(x_BxKx, idx_BxC.reshape(idx_BxC.shape + (1,) * (x_BxKx.ndim - 2)), axis=1)


def beam_search(config: LMConfig, prefill: Callable, decode: Callable, tokens_BxP: jax.Array, mask_BxP: jax.Array,
                k: int, n: int, length_penalty: float, penalty: float, eos_ids: tuple[int, ...],
                pad_id: int) -> jax.Array:
    """Best hypothesis per row: B x N new tokens (pad after EOS). `prefill`/`decode(tokens, mask, cache)` ->
    (logits, cache) run the model (see `generate._prefill_and_step`)."""
    b, p = tokens_BxP.shape
    v, c = config.vocab_size, max(2, 1 + len(eos_ids)) * k
    tok_BXxP = jnp.repeat(tokens_BxP, k, axis=0)
    mask_BXxP = jnp.repeat(mask_BxP, k, axis=0)
    logits_BXxPxV, cache = prefill(tok_BXxP, mask_BXxP, init_cache(config, b * k, p + n))
    rows = jnp.arange(b * k)[:, None]
    seen_BXxV = jnp.zeros((b * k, v), bool).at[rows, tok_BXxP].max(mask_BXxP.astype(bool))
    eos = jnp.asarray(eos_ids, jnp.int32)
    top_k_C = jnp.arange(c) < k

    def cond(s):
        return (s["t"] < n) & ~s["stop"]

    def body(s):
        t = s["t"]
        logp_BXxV = jax.nn.log_softmax(s["logits"].astype(jnp.float32), axis=-1)
        logp_BXxV = repetition_penalty(logp_BXxV, s["seen"], penalty)
        acc_BxXV = (logp_BXxV.reshape(b, k, v) + s["run_score"][:, :, None]).reshape(b, k * v)
        cand_score_BxC, idx_BxC = jax.lax.top_k(acc_BxXV, c)
        beam_BxC, tok_BxC = idx_BxC // v, (idx_BxC % v).astype(jnp.int32)
        cand_seq_BxCxU = _take(s["run_seq"], beam_BxC).at[:, :, t].set(tok_BxC)
        hits_BxC = jnp.any(tok_BxC[..., None] == eos[None, None, :], axis=-1) | (t == n - 1)
        # running beams: best K that did not stop
        run_score_BxC = cand_score_BxC + jnp.where(hits_BxC, _NEG, 0.0)
        run_score_BxX, keep_BxX = jax.lax.top_k(run_score_BxC, k)
        run_seq = _take(cand_seq_BxCxU, keep_BxX)
        src_BxX = _take(beam_BxC, keep_BxX)
        # finished hypotheses: stopped among the top X candidates, length-normalised, merged with the old ones
        did_BxC = hits_BxC & top_k_C[None, :]
        norm_BxC = cand_score_BxC / ((t + 1).astype(jnp.float32) ** length_penalty)
        norm_BxC = norm_BxC + jnp.where(s["unsat"], 0.0, _NEG) + jnp.where(did_BxC, 0.0, _NEG)
        merged_score = jnp.concatenate([s["fin_score"], norm_BxC], axis=1)
        best_score_BxX, best_BxX = jax.lax.top_k(merged_score, k)
        fin_seq = _take(jnp.concatenate([s["fin_seq"], cand_seq_BxCxU], axis=1), best_BxX)
        fin_flag = _take(jnp.concatenate([s["fin_flag"], did_BxC], axis=1), best_BxX)
        # reorder cache and seen-token sets to the surviving beams, then feed their new tokens
        flat_src_BX = (src_BxX + jnp.arange(b)[:, None] * k).reshape(-1)
        cache = s["cache"]
        cache = cache._replace(k_ZxBxSxKxH=cache.k_ZxBxSxKxH[:, flat_src_BX],
                               v_ZxBxSxKxH=cache.v_ZxBxSxKxH[:, flat_src_BX], mask_BxS=cache.mask_BxS[flat_src_BX])
        new_tok_BX = run_seq[:, :, t].reshape(-1)
        seen = s["seen"][flat_src_BX].at[jnp.arange(b * k), new_tok_BX].set(True)
        logits_BXx1xV, cache = decode(new_tok_BX[:, None], jnp.ones((b * k, 1), jnp.int32), cache)
        # HF's early_stopping=False heuristic: can the best running beam still beat the worst finished one?
        best_possible_Bx1 = run_score_BxX[:, :1] / ((t + 1).astype(jnp.float32) ** length_penalty)
        worst_BxX = jnp.where(fin_flag, jnp.min(best_score_BxX, axis=1, keepdims=True), _NEG)
        unsat = s["unsat"] & jnp.any(best_possible_Bx1 > worst_BxX, axis=-1, keepdims=True)
        stop = ~jnp.any(unsat) | jnp.all(hits_BxC)
        return dict(t=t + 1, cache=cache, logits=logits_BXx1xV[:, 0], seen=seen, run_seq=run_seq,
                    run_score=run_score_BxX, fin_seq=fin_seq, fin_score=best_score_BxX, fin_flag=fin_flag,
                    unsat=unsat, stop=stop)

    init = dict(
        t=jnp.zeros((), jnp.int32), cache=cache, logits=logits_BXxPxV[:, -1], seen=seen_BXxV,
        run_seq=jnp.full((b, k, n), pad_id, jnp.int32),
        run_score=jnp.zeros((b, k), jnp.float32).at[:, 1:].set(_NEG),
        fin_seq=jnp.full((b, k, n), pad_id, jnp.int32), fin_score=jnp.full((b, k), _NEG, jnp.float32),
        fin_flag=jnp.zeros((b, k), bool), unsat=jnp.ones((b, 1), bool), stop=jnp.zeros((), bool),
    )
    return jax.lax.while_loop(cond, body, init)["fin_seq"][:, 0]
