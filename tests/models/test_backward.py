"""Hand-written backward passes (chunked attention, SwiGLU, LoRA dropout) against autodiff of the plain math."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.models.attention import cached_attention, chunked_attention
from icma_jax.models.dropout import hashed_dropout as _drop
from icma_jax.models.dropout import keep_mask
from icma_jax.models.linear import lora_delta_dropout
from icma_jax.models.llama import swiglu


def _close(xs, ys, tol=2e-6):
    for x, y in zip(xs, ys):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunk", [4, 128])
@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("n,kh", [(6, 2), (4, 4)])
def test_chunked_attention_equals_cached_attention(window, n, kh, chunk):
    """Values of the real rows and gradients, with several query chunks (4) and one (128)."""
    b, t, h = 3, 11, 8
    k = jax.random.split(jax.random.key(0), 4)
    q, kk, v = (jax.random.normal(k[0], (b, t, n, h)), jax.random.normal(k[1], (b, t, kh, h)),
                jax.random.normal(k[2], (b, t, kh, h)))
    mask = jnp.asarray(np.array([[1] * t, [0] * 4 + [1] * (t - 4), [0] * (t - 1) + [1]], np.int32))
    w = jax.random.normal(k[3], (b, t, n, h)) * mask[:, :, None, None]  # padding rows' outputs are unused
    ref = lambda q, kk, v: cached_attention(q, kk, v, mask, jnp.arange(t), window) * mask[:, :, None, None]  # noqa: E731
    ours = lambda q, kk, v: chunked_attention(q, kk, v, mask, window, chunk) * mask[:, :, None, None]  # noqa: E731
    _close([ours(q, kk, v)], [ref(q, kk, v)])
    grads = [jax.grad(lambda *x: jnp.sum(f(*x) * w), argnums=(0, 1, 2))(q, kk, v) for f in (ours, ref)]
    _close(*grads, tol=5e-6)


def test_packed_segments_attend_like_separate_rows():
    """Two sequences packed in one row (segment ids 1, 2, then padding) = each in a left-padded row of its own."""
    t, n, kh, h, la, lb = 13, 4, 2, 8, 5, 6
    k = jax.random.split(jax.random.key(5), 3)
    q, kk, v = (jax.random.normal(k[0], (1, t, n, h)), jax.random.normal(k[1], (1, t, kh, h)),
                jax.random.normal(k[2], (1, t, kh, h)))
    seg = jnp.asarray([[1] * la + [2] * lb + [0] * (t - la - lb)], jnp.int32)
    packed = chunked_attention(q, kk, v, seg, None, chunk=4)[0]
    for lo, hi in ((0, la), (la, la + lb)):
        pad = t - (hi - lo)
        row = lambda x: jnp.pad(x[:, lo:hi], ((0, 0), (pad, 0), (0, 0), (0, 0)))  # noqa: E731
        mask = jnp.asarray([[0] * pad + [1] * (hi - lo)], jnp.int32)
        alone = chunked_attention(row(q), row(kk), row(v), mask, None, chunk=4)[0, pad:]
        np.testing.assert_allclose(packed[lo:hi], alone, rtol=1e-5, atol=1e-6)


def test_swiglu_backward_equals_autodiff():
    k = jax.random.split(jax.random.key(1), 3)
    g, u, w = (3 * jax.random.normal(x, (6, 9)) for x in k)
    np.testing.assert_allclose(swiglu(g, u), nn.silu(g) * u, rtol=1e-6)
    _close(jax.grad(lambda g, u: jnp.sum(swiglu(g, u) * w), (0, 1))(g, u),
           jax.grad(lambda g, u: jnp.sum(nn.silu(g) * u * w), (0, 1))(g, u), tol=1e-5)


def test_lora_dropout_backward_recomputes_the_forward_mask():
    k = jax.random.split(jax.random.key(2), 5)
    x, a, b, w = (jax.random.normal(k[0], (64, 40)), jax.random.normal(k[1], (40, 3)),
                  jax.random.normal(k[2], (3, 7)), jax.random.normal(k[3], (64, 7)))
    seed = jax.random.bits(k[4], (2,), jnp.uint32)
    np.testing.assert_allclose(lora_delta_dropout(x, a, b, seed, 0.3), _drop(x, seed, 0.3) @ a @ b, rtol=1e-5)
    _close(jax.grad(lambda *p: jnp.sum(lora_delta_dropout(*p, seed, 0.3) * w), (0, 1, 2))(x, a, b),
           jax.grad(lambda *p: jnp.sum(_drop(p[0], seed, 0.3) @ p[1] @ p[2] * w), (0, 1, 2))(x, a, b), tol=1e-4)
    kept = _drop(jnp.ones((64, 40)), seed, 0.3)
    np.testing.assert_allclose(np.unique(np.asarray(kept)), [0.0, 1 / 0.7], rtol=1e-6)  # inverted dropout


def test_keep_mask_is_fair_and_independent():
    """Keep rate within 4 sigma of 1 - p; no correlation between seeds, neighbouring rows or columns."""
    seeds = jax.random.bits(jax.random.key(3), (2, 2), jnp.uint32)
    m1, m2 = (np.asarray(keep_mask(s, 2048, 512, 0.1)).astype(np.float64) for s in seeds)
    sigma = np.sqrt(0.09 / m1.size)
    for m in (m1, m2):
        assert abs(m.mean() - 0.9) < 4 * sigma
    assert abs(np.corrcoef(m1.ravel(), m2.ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(m1[:-1].ravel(), m1[1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(m1[:, :-1].ravel(), m1[:, 1:].ravel())[0, 1]) < 0.01
    assert np.asarray(keep_mask(seeds[0], 8, 8, 0.0)).all()
    # a function of each element's global (row, column): a bigger mask extends a smaller one (sharding-invariant)
    np.testing.assert_array_equal(keep_mask(seeds[0], 16, 8, 0.5)[:8, :4], keep_mask(seeds[0], 8, 4, 0.5))
