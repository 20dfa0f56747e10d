"""All attention of the models: one visibility rule, the training implementations behind `LMConfig.attention`,
the cached decode attention and the `Attention` layer (projections, RoPE, KV cache).

Visibility, one rule for every path (`visible`): key position s is visible to query position q iff s <= q,
s is a real token (segment id > 0), q - s < window (Mistral's sliding window) and, without a cache, both
carry the same segment id (packed rows; a left-padded row is the one-segment case, ids 0 and 1).

Without a cache (training, scoring) `self_attention` runs the implementation named by `LMConfig.attention`:
- "chunked" (the default; right for XLA:CPU): `chunked_attention_core`, a custom VJP whose backward pass
  recomputes the probabilities from q, k and the rows' max and sum (no stored B x A x L x S probabilities)
  and transposes only the small L x H / S x H operands. Queries go in chunks of `chunk` positions, each
  against only the keys it can see: at L = 512 and chunks of 128 that is 10/16 of the L x S products.
- "xla": `jax.nn.dot_product_attention(implementation="xla")` with one boolean B x 1 x L x S mask from the
  rule above; its `*_seq_lengths` arguments assume right padding and know no segments, so they are not used.
- "cudnn": the same call with `implementation="cudnn"` (cuDNN turns the mask into a dense bias) where cuDNN
  can run it (a GPU, bfloat16/float16, head dim a multiple of 8 up to 128); elsewhere "xla", with a
  one-line notice.
- "pallas": the Pallas flash kernels that take segment ids, GPU `mha` and TPU `flash_attention` (causal +
  segment ids = the rule above; kv heads repeated to the query heads). They have no sliding window and no
  CPU kernel: a window shorter than the row, or a CPU backend, is a ValueError naming `model.attention`.
With a cache (decoding) there is one path, whatever `LMConfig.attention` says: `cached_attention`, dense
fp32 scores over the cache slots.

Dims (package legend): B batch rows, L query tokens (or one chunk of them), S key positions / cache slots,
A query heads, K kv heads, J = A/K query heads per kv head, M = L J grouped query rows (query position
major), H head dim, D model width, Z layers.
"""

from __future__ import annotations

import logging
import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from icma_jax.models.config import LMConfig, LoraConfig, dtype_of
from icma_jax.models.linear import Linear
from icma_jax.models.rope import apply_rope, rope_inv_freq

CHUNK = 128  # default query-chunk length of the "chunked" implementation
IMPLEMENTATIONS = ("chunked", "xla", "cudnn", "pallas")
_MIN = float(np.finfo(np.float32).min)
_barrier = jax.lax.optimization_barrier
_log = logging.getLogger(__name__)
_noticed: set[str] = set()


def visible(q_pos_L: jax.Array, kv_seg_BxS: jax.Array, window: int | None, k_pos_S: jax.Array | None = None,
            q_seg_BxL: jax.Array | None = None) -> jax.Array:
    """B x L x S: key position s is visible to query position q iff s <= q, s is a real token (segment id > 0),
    q - s < window and, given query segments, both hold the same segment id."""
    k_pos_S = jnp.arange(kv_seg_BxS.shape[1]) if k_pos_S is None else k_pos_S
    vis_LxS = k_pos_S[None, :] <= q_pos_L[:, None]
    if window is not None:
        vis_LxS = vis_LxS & (q_pos_L[:, None] - k_pos_S[None, :] < window)
    vis_BxLxS = vis_LxS[None, :, :] & (kv_seg_BxS[:, None, :] > 0)
    if q_seg_BxL is not None:
        vis_BxLxS = vis_BxLxS & (q_seg_BxL[:, :, None] == kv_seg_BxS[:, None, :])
    return vis_BxLxS


# ---- "chunked": custom VJP, queries in causal chunks --------------------------------------------------------

def _t(x: jax.Array) -> jax.Array:
    """Swap the last two axes (a copy of a small operand, kept as one)."""
    return _barrier(jnp.swapaxes(x, -1, -2))


def _mm(x: jax.Array, y: jax.Array) -> jax.Array:
    """x @ y over the last two axes, batched over the leading B x K, accumulated in fp32."""
    return jnp.einsum("bkij,bkjo->bkio", x, y, preferred_element_type=jnp.float32)


def _chunks(length: int, window: int | None, chunk: int) -> list[tuple[int, int, int]]:
    """(q0, q1, k0) per query chunk: queries q0..q1-1 can see keys k0..q1-1 only."""
    return [(q0, min(q0 + chunk, length), 0 if window is None else max(0, q0 - window + 1))
            for q0 in range(0, length, chunk)]


def _cat(parts: list[jax.Array]) -> jax.Array:
    """Per-chunk B x K x M' x ... rows back in one array along the row axis."""
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=2)


def _scores(q_BxKxMxH, kT_BxKxHxS, seg_BxS, q0, q1, k0, window):
    """Masked, scaled scores of queries q0..q1-1 against keys k0..q1-1 (B x K x M x S') and the visibility."""
    b, kh, m, h = q_BxKxMxH.shape
    s_BxKxLxJxS = (_mm(q_BxKxMxH, kT_BxKxHxS[..., k0:q1]) * np.float32(1.0 / math.sqrt(h))).reshape(
        b, kh, q1 - q0, m // (q1 - q0), q1 - k0)
    vis_BxLxS = visible(jnp.arange(q0, q1), seg_BxS[:, k0:q1], window, jnp.arange(k0, q1), seg_BxS[:, q0:q1])
    return jnp.where(vis_BxLxS[:, None, :, None, :], s_BxKxLxJxS, _MIN).reshape(b, kh, m, q1 - k0), vis_BxLxS


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def chunked_attention_core(q_BxKxMxH: jax.Array, k_BxKxSxH: jax.Array, v_BxKxSxH: jax.Array, seg_BxS: jax.Array,
                           window: int | None, chunk: int) -> jax.Array:
    """softmax(where(visible, q k^T / sqrt(H), min)) v for self-attention (L = S), fp32 scores and softmax.

    Query rows that see no key (padding) return an average of the values they were compared with: they
    feed nothing a real token sees, so the value is never used."""
    return _forward(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxS, window, chunk)[0]


def _forward(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxS, window, chunk):
    j = q_BxKxMxH.shape[2] // k_BxKxSxH.shape[2]
    kT_BxKxHxS = _t(k_BxKxSxH)
    outs, maxes, sums = [], [], []
    for q0, q1, k0 in _chunks(k_BxKxSxH.shape[2], window, chunk):
        s_BxKxMxS, _ = _scores(q_BxKxMxH[:, :, q0 * j:q1 * j], kT_BxKxHxS, seg_BxS, q0, q1, k0, window)
        m_BxKxMx1 = jnp.max(s_BxKxMxS, axis=-1, keepdims=True)
        e_BxKxMxS = jnp.exp(s_BxKxMxS - m_BxKxMx1)
        z_BxKxMx1 = jnp.sum(e_BxKxMxS, axis=-1, keepdims=True)
        p_BxKxMxS = (e_BxKxMxS / z_BxKxMx1).astype(v_BxKxSxH.dtype)
        outs.append(_mm(p_BxKxMxS, v_BxKxSxH[:, :, k0:q1]).astype(v_BxKxSxH.dtype))
        maxes.append(m_BxKxMx1)
        sums.append(z_BxKxMx1)
    return _cat(outs), (_cat(maxes), _cat(sums))


def _fwd(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxS, window, chunk):
    o_BxKxMxH, (m_BxKxMx1, z_BxKxMx1) = _forward(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxS, window, chunk)
    return o_BxKxMxH, (q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxS, o_BxKxMxH, m_BxKxMx1, z_BxKxMx1)


def _bwd(window, chunk, res, do_BxKxMxH):
    """FlashAttention-2's backward pass (Dao 2023, Algorithm 2), one query chunk at a time, P recomputed from
    the saved row max m and sum z:  P = exp(S - m) / z,  dV = P^T dO,  dP = dO V^T,  D = rowsum(dO * O),
    dS = P * (dP - D),  dQ = dS K / sqrt(H),  dK = dS^T Q / sqrt(H). dK and dV are accumulated transposed
    (dK^T = Q^T dS), so the M x S operands are never transposed."""
    q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxS, o_BxKxMxH, m_BxKxMx1, z_BxKxMx1 = res
    h, length = q_BxKxMxH.shape[3], k_BxKxSxH.shape[2]
    j = q_BxKxMxH.shape[2] // length
    kT_BxKxHxS, vT_BxKxHxS, qT_BxKxHxM, doT_BxKxHxM = _t(k_BxKxSxH), _t(v_BxKxSxH), _t(q_BxKxMxH), _t(do_BxKxMxH)
    d_BxKxMx1 = jnp.sum(do_BxKxMxH.astype(jnp.float32) * o_BxKxMxH.astype(jnp.float32), axis=-1, keepdims=True)
    dqs = []
    dkT_BxKxHxS = jnp.zeros(kT_BxKxHxS.shape, jnp.float32)
    dvT_BxKxHxS = jnp.zeros(vT_BxKxHxS.shape, jnp.float32)
    for q0, q1, k0 in _chunks(length, window, chunk):
        rows = slice(q0 * j, q1 * j)
        s_BxKxMxS, vis_BxLxS = _scores(q_BxKxMxH[:, :, rows], kT_BxKxHxS, seg_BxS, q0, q1, k0, window)
        p_BxKxMxS = jnp.exp(s_BxKxMxS - m_BxKxMx1[:, :, rows]) / z_BxKxMx1[:, :, rows]
        dp_BxKxMxS = _mm(do_BxKxMxH[:, :, rows], vT_BxKxHxS[..., k0:q1])
        ds_BxKxLxJxS = (p_BxKxMxS * (dp_BxKxMxS - d_BxKxMx1[:, :, rows])).reshape(
            *p_BxKxMxS.shape[:2], q1 - q0, j, q1 - k0)
        ds_BxKxLxJxS = jnp.where(vis_BxLxS[:, None, :, None, :], ds_BxKxLxJxS, 0.0) * np.float32(1.0 / math.sqrt(h))
        ds_BxKxMxS = ds_BxKxLxJxS.reshape(p_BxKxMxS.shape).astype(q_BxKxMxH.dtype)
        dqs.append(_mm(ds_BxKxMxS, k_BxKxSxH[:, :, k0:q1]))
        dkT_BxKxHxS = dkT_BxKxHxS.at[..., k0:q1].add(_mm(qT_BxKxHxM[..., rows], ds_BxKxMxS))
        dvT_BxKxHxS = dvT_BxKxHxS.at[..., k0:q1].add(_mm(doT_BxKxHxM[..., rows], p_BxKxMxS.astype(v_BxKxSxH.dtype)))
    return (_cat(dqs).astype(q_BxKxMxH.dtype), _t(dkT_BxKxHxS).astype(k_BxKxSxH.dtype),
            _t(dvT_BxKxHxS).astype(v_BxKxSxH.dtype), None)


chunked_attention_core.defvjp(_fwd, _bwd)


def chunked_attention(q_BxLxAxH: jax.Array, k_BxLxKxH: jax.Array, v_BxLxKxH: jax.Array, seg_BxL: jax.Array,
                      window: int | None, chunk: int = CHUNK) -> jax.Array:
    """Self-attention through `chunked_attention_core` (query heads grouped by their kv head)."""
    b, length, a, h = q_BxLxAxH.shape
    kh = k_BxLxKxH.shape[2]
    j = a // kh
    q_BxKxMxH = q_BxLxAxH.reshape(b, length, kh, j, h).transpose(0, 2, 1, 3, 4).reshape(b, kh, length * j, h)
    k_BxKxSxH, v_BxKxSxH = (x.transpose(0, 2, 1, 3) for x in (k_BxLxKxH, v_BxLxKxH))
    o_BxKxMxH = chunked_attention_core(q_BxKxMxH, k_BxKxSxH, v_BxKxSxH, seg_BxL, window, chunk)
    return o_BxKxMxH.reshape(b, kh, length, j, h).transpose(0, 2, 1, 3, 4).reshape(b, length, a, h)


# ---- "xla", "cudnn", "pallas" -------------------------------------------------------------------------------

def attention_mask(seg_BxL: jax.Array, window: int | None) -> jax.Array:
    """The rule of `visible` as the one boolean B x 1 x L x S mask `jax.nn.dot_product_attention` takes."""
    return visible(jnp.arange(seg_BxL.shape[1]), seg_BxL, window, q_seg_BxL=seg_BxL)[:, None]


def dense_attention(q_BxLxAxH: jax.Array, k_BxLxKxH: jax.Array, v_BxLxKxH: jax.Array, seg_BxL: jax.Array,
                    window: int | None, implementation: str = "xla") -> jax.Array:
    """`jax.nn.dot_product_attention` ("xla" or "cudnn") under `attention_mask`."""
    return jax.nn.dot_product_attention(q_BxLxAxH, k_BxLxKxH, v_BxLxKxH, mask=attention_mask(seg_BxL, window),
                                        implementation=implementation)


def cudnn_unavailable(dtype: jnp.dtype, head_dim: int, backend: str | None = None) -> str | None:
    """Why cuDNN's fused attention cannot run this call, or None when it can."""
    backend = backend or jax.default_backend()
    if backend != "gpu":
        return f"the backend is {backend}, not gpu"
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return f"dtype {jnp.dtype(dtype).name} (cuDNN takes bfloat16 or float16)"
    if head_dim % 8 or head_dim > 128:
        return f"head dim {head_dim} (cuDNN takes multiples of 8 up to 128)"
    return None


def _notice(message: str) -> None:
    if message not in _noticed:
        _noticed.add(message)
        _log.warning(message)


def pallas_attention(q_BxLxAxH: jax.Array, k_BxLxKxH: jax.Array, v_BxLxKxH: jax.Array, seg_BxL: jax.Array,
                     window: int | None, backend: str | None = None, interpret: bool = False) -> jax.Array:
    """The Pallas flash kernels with segment ids: GPU `mha` (`interpret=True` runs it on any backend), TPU
    `flash_attention`."""
    b, length, a, h = q_BxLxAxH.shape
    backend = "gpu" if interpret else backend or jax.default_backend()
    if window is not None and window < length:
        raise ValueError(f"model.attention='pallas': the Pallas kernels have no sliding window (window {window} < "
                         f"row length {length}); use 'cudnn' or 'xla'")
    if backend not in ("gpu", "tpu"):
        raise ValueError(f"model.attention='pallas' needs a GPU or TPU (the backend is {backend}); use 'chunked' "
                         f"or 'xla'")
    j = a // k_BxLxKxH.shape[2]
    k_BxLxAxH, v_BxLxAxH = (jnp.repeat(x, j, axis=2) for x in (k_BxLxKxH, v_BxLxKxH))
    scale = 1.0 / math.sqrt(h)
    if backend == "gpu":
        from jax.experimental.pallas.ops.gpu.attention import mha

        return mha(q_BxLxAxH, k_BxLxAxH, v_BxLxAxH, seg_BxL, sm_scale=scale, causal=True, interpret=interpret)
    from jax.experimental.pallas.ops.tpu.flash_attention import SegmentIds, flash_attention

    q_BxAxLxH, k_BxAxSxH, v_BxAxSxH = (x.transpose(0, 2, 1, 3) for x in (q_BxLxAxH, k_BxLxAxH, v_BxLxAxH))
    o_BxAxLxH = flash_attention(q_BxAxLxH, k_BxAxSxH, v_BxAxSxH, segment_ids=SegmentIds(seg_BxL, seg_BxL),
                                causal=True, sm_scale=scale)
    return o_BxAxLxH.transpose(0, 2, 1, 3)


def self_attention(q_BxLxAxH: jax.Array, k_BxLxKxH: jax.Array, v_BxLxKxH: jax.Array, seg_BxL: jax.Array,
                   window: int | None, implementation: str = "chunked", chunk: int = CHUNK) -> jax.Array:
    """Attention of the L tokens of each row among themselves (no cache) by `implementation`."""
    if implementation == "chunked":
        return chunked_attention(q_BxLxAxH, k_BxLxKxH, v_BxLxKxH, seg_BxL, window, chunk)
    if implementation == "pallas":
        return pallas_attention(q_BxLxAxH, k_BxLxKxH, v_BxLxKxH, seg_BxL, window)
    if implementation == "cudnn":
        why = cudnn_unavailable(q_BxLxAxH.dtype, q_BxLxAxH.shape[-1])
        if why is None:
            return dense_attention(q_BxLxAxH, k_BxLxKxH, v_BxLxKxH, seg_BxL, window, "cudnn")
        _notice(f"model.attention='cudnn' cannot run here ({why}); using 'xla'")
    elif implementation != "xla":
        raise ValueError(f"model.attention={implementation!r} is not one of {IMPLEMENTATIONS}")
    return dense_attention(q_BxLxAxH, k_BxLxKxH, v_BxLxKxH, seg_BxL, window, "xla")


# ---- decoding: the one cached path ---------------------------------------------------------------------------

def cached_attention(q_BxLxAxH: jax.Array, k_BxSxKxH: jax.Array, v_BxSxKxH: jax.Array, kv_seg_BxS: jax.Array,
                     q_slot_L: jax.Array, window: int | None) -> jax.Array:
    """Causal softmax attention of L new tokens (at cache slots `q_slot_L`) over the S cache slots, under
    `visible` (no segments: a cached row holds one sequence). Scores and softmax in fp32."""
    b, length, a, h = q_BxLxAxH.shape
    kh = k_BxSxKxH.shape[2]
    q_BxLxKxJxH = q_BxLxAxH.reshape(b, length, kh, a // kh, h)
    s_BxKxJxLxS = jnp.einsum("blkjh,bskh->bkjls", q_BxLxKxJxH, k_BxSxKxH,
                             preferred_element_type=jnp.float32) / np.float32(math.sqrt(h))
    vis_BxLxS = visible(q_slot_L, kv_seg_BxS, window)
    s_BxKxJxLxS = jnp.where(vis_BxLxS[:, None, None, :, :], s_BxKxJxLxS, jnp.finfo(jnp.float32).min)
    p_BxKxJxLxS = jax.nn.softmax(s_BxKxJxLxS, axis=-1).astype(v_BxSxKxH.dtype)
    o_BxLxKxJxH = jnp.einsum("bkjls,bskh->blkjh", p_BxKxJxLxS, v_BxSxKxH)
    return o_BxLxKxJxH.reshape(b, length, a, h)


class Attention(nn.Module):
    """Multi-head / grouped-query self-attention with optional RoPE and an optional KV cache slice."""

    config: LMConfig
    out_name: str  # "o_proj" (Llama) or "out_proj" (OPT)
    lora: LoraConfig | None = None
    deterministic: bool = True
    fused: bool = False  # one `qkv_proj` kernel D x (A + 2K)H instead of q/k/v_proj (decoding layout)

    def _linear(self, name: str, features: int, axes: tuple[str, str]) -> Linear:
        c = self.config
        lora = self.lora if self.lora is not None and name in self.lora.targets else None
        return Linear(features, axes, c.attention_bias, dtype_of(c.dtype), dtype_of(c.param_dtype), lora,
                      self.deterministic, name=name)

    @nn.compact
    def __call__(self, x_BxLxD, pos_BxL, kv_seg_BxS, q_slot_L, cache_kv, layer):
        """`cache_kv`: None or the whole (k, v) cache, Z x B x S x K x H; this layer reads slice `layer` and writes
        only its L new entries back in place (so a decode step moves O(L) cache memory, not O(S))."""
        c = self.config
        b, length, _ = x_BxLxD.shape
        a, kh, h = c.n_heads, c.n_kv_heads, c.head_dim
        if self.fused:
            q, k, v = jnp.split(self._linear("qkv_proj", (a + 2 * kh) * h, ("embed", "heads"))(x_BxLxD),
                                [a * h, (a + kh) * h], axis=-1)
            q_BxLxAxH = q.reshape(b, length, a, h)
            k_BxLxKxH, v_BxLxKxH = k.reshape(b, length, kh, h), v.reshape(b, length, kh, h)
        else:
            q_BxLxAxH = self._linear("q_proj", a * h, ("embed", "heads"))(x_BxLxD).reshape(b, length, a, h)
            k_BxLxKxH = self._linear("k_proj", kh * h, ("embed", "kv_heads"))(x_BxLxD).reshape(b, length, kh, h)
            v_BxLxKxH = self._linear("v_proj", kh * h, ("embed", "kv_heads"))(x_BxLxD).reshape(b, length, kh, h)
        if c.family != "opt":
            inv_freq = rope_inv_freq(c)
            q_BxLxAxH, k_BxLxKxH = apply_rope(q_BxLxAxH, pos_BxL, inv_freq), apply_rope(k_BxLxKxH, pos_BxL, inv_freq)
        if cache_kv is None:
            o_BxLxAxH = self_attention(q_BxLxAxH, k_BxLxKxH, v_BxLxKxH, kv_seg_BxS, c.sliding_window, c.attention)
        else:
            k_ZxBxSxKxH, v_ZxBxSxKxH = (
                jax.lax.dynamic_update_slice(x, y.astype(x.dtype)[None], (layer, 0, q_slot_L[0], 0, 0))
                for x, y in zip(cache_kv, (k_BxLxKxH, v_BxLxKxH)))
            cache_kv = (k_ZxBxSxKxH, v_ZxBxSxKxH)
            o_BxLxAxH = cached_attention(q_BxLxAxH, k_ZxBxSxKxH[layer], v_ZxBxSxKxH[layer], kv_seg_BxS, q_slot_L,
                                         c.sliding_window)
        return self._linear(self.out_name, c.d_model, ("heads", "embed"))(o_BxLxAxH.reshape(b, length, a * h)), cache_kv
