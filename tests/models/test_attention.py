"""The training attention implementations agree: chunked (custom VJP) == xla (one boolean mask) == pallas
(GPU kernel in interpret mode), values and gradients, on the real-token rows; the switch's fallbacks/errors."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.models import attention as attention_lib
from icma_jax.models.attention import chunked_attention, dense_attention, pallas_attention, self_attention

L = 11  # not a multiple of the chunk (4)
SEGMENTS = {
    "left_padding": [[1] * L, [0] * 4 + [1] * (L - 4), [0] * (L - 1) + [1]],
    "packed": [[0, 0] + [1] * 4 + [2] * 5, [1] * 3 + [2] * 3 + [3] * 5, [0] * 6 + [1] * 5],
}
TOL = {"float32": 2e-5, "bfloat16": 3e-2}


def _inputs(a, kh, dtype, h=8, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    b = len(SEGMENTS["packed"])
    q, kk, v, w = (jax.random.normal(k[0], (b, L, a, h)), jax.random.normal(k[1], (b, L, kh, h)),
                   jax.random.normal(k[2], (b, L, kh, h)), jax.random.normal(k[3], (b, L, a, h)))
    return tuple(x.astype(dtype) for x in (q, kk, v)), w


def _real(seg_BxL):
    return (seg_BxL > 0)[:, :, None, None]


def _value_and_grads(fn, q, kk, v, seg_BxL, w):
    """Outputs on real rows, and the gradients of sum(out * w) over real rows (padding rows feed nothing)."""
    real = _real(seg_BxL)
    out = jnp.where(real, fn(q, kk, v).astype(jnp.float32), 0.0)
    grads = jax.grad(lambda *x: jnp.sum(jnp.where(real, fn(*x).astype(jnp.float32) * w, 0.0)), argnums=(0, 1, 2))(
        q, kk, v)
    return [out] + [g.astype(jnp.float32) for g in grads]


def _assert_close(xs, ys, tol):
    for x, y in zip(xs, ys):
        scale = max(1.0, float(jnp.max(jnp.abs(y))))
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("segments", sorted(SEGMENTS))
@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("a,kh", [(6, 2), (4, 4)])
def test_chunked_equals_xla(a, kh, window, segments, dtype):
    """Left padding or packed rows, GQA or MHA, a window shorter than L, L not a multiple of the chunk."""
    seg = jnp.asarray(np.array(SEGMENTS[segments], np.int32))
    (q, kk, v), w = _inputs(a, kh, dtype)
    chunked = _value_and_grads(lambda *x: chunked_attention(*x, seg, window, chunk=4), q, kk, v, seg, w)
    xla = _value_and_grads(lambda *x: dense_attention(*x, seg, window), q, kk, v, seg, w)
    _assert_close(chunked, xla, TOL[dtype])


@pytest.mark.parametrize("segments", sorted(SEGMENTS))
@pytest.mark.parametrize("chunk", [1, 4, 128])
def test_chunk_size_changes_nothing(chunk, segments):
    seg = jnp.asarray(np.array(SEGMENTS[segments], np.int32))
    (q, kk, v), w = _inputs(6, 2, "float32", seed=1)
    ref = _value_and_grads(lambda *x: chunked_attention(*x, seg, 5, chunk=L), q, kk, v, seg, w)
    _assert_close(_value_and_grads(lambda *x: chunked_attention(*x, seg, 5, chunk=chunk), q, kk, v, seg, w), ref, 2e-5)


def test_pallas_gpu_kernel_in_interpret_mode_equals_chunked():
    """The GPU `mha` kernel's segment ids + causal flag implement our visibility (run by the Pallas
    interpreter on CPU; the compiled GPU and TPU kernels need an accelerator)."""
    seg = jnp.asarray(np.array([[0, 0, 0] + [1] * 6 + [2] * 7], np.int32))
    k = jax.random.split(jax.random.key(2), 4)
    q, kk, v, w = (jax.random.normal(k[0], (1, 16, 4, 16)), jax.random.normal(k[1], (1, 16, 2, 16)),
                   jax.random.normal(k[2], (1, 16, 2, 16)), jax.random.normal(k[3], (1, 16, 4, 16)))
    pallas = _value_and_grads(lambda *x: pallas_attention(*x, seg, None, interpret=True), q, kk, v, seg, w)
    chunked = _value_and_grads(lambda *x: chunked_attention(*x, seg, None, chunk=8), q, kk, v, seg, w)
    _assert_close(pallas, chunked, 2e-5)


def test_pallas_refuses_what_it_cannot_run():
    seg = jnp.ones((1, 8), jnp.int32)
    q = jnp.zeros((1, 8, 2, 8))
    with pytest.raises(ValueError, match="model.attention='pallas' needs a GPU or TPU"):
        pallas_attention(q, q, q, seg, None, backend="cpu")
    with pytest.raises(ValueError, match="no sliding window"):
        pallas_attention(q, q, q, seg, 4, backend="gpu")


def test_cudnn_falls_back_to_xla_with_one_notice(caplog):
    seg = jnp.asarray(np.array(SEGMENTS["left_padding"], np.int32))
    (q, kk, v), _ = _inputs(4, 2, "float32")
    attention_lib._noticed.clear()
    with caplog.at_level(logging.WARNING, logger=attention_lib.__name__):
        out = [self_attention(q, kk, v, seg, None, "cudnn") for _ in range(2)]
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "model.attention='cudnn' cannot run here" in notices[0] and "'xla'" in notices[0]
    np.testing.assert_array_equal(out[0], self_attention(q, kk, v, seg, None, "xla"))
    assert attention_lib.cudnn_unavailable(jnp.float32, 64, "gpu").startswith("dtype float32")
    assert attention_lib.cudnn_unavailable(jnp.bfloat16, 72, "gpu") is None
    assert "head dim 100" in attention_lib.cudnn_unavailable(jnp.bfloat16, 100, "gpu")
    with pytest.raises(ValueError, match="not one of"):
        self_attention(q, kk, v, seg, None, "flash")


@pytest.mark.parametrize("family", ["mistral", "opt"])
def test_model_switch_xla_equals_chunked(family):
    """A whole model (window 3 < L for Mistral, GQA, packed and left-padded rows): the same real-token logits and
    LoRA gradients with `LMConfig.attention` "chunked" and "xla"."""
    from icma_jax.models.config import LMConfig, LoraConfig
    from icma_jax.models.lora import init_lora
    from icma_jax.models.transformer import build_model

    extra = {"n_kv_heads": 4, "activation": "relu"} if family == "opt" else {"n_kv_heads": 2, "sliding_window": 3}
    cfg = LMConfig(family=family, vocab_size=32, d_model=16, n_layers=2, n_heads=4, head_dim=4, d_ff=32,
                   max_positions=64, **extra)
    lora_cfg = LoraConfig.for_family(family, rank=2, alpha=4.0, dropout=0.0)
    seg = jnp.asarray(np.array(SEGMENTS["packed"] + SEGMENTS["left_padding"][1:], np.int32))
    tokens = jax.random.randint(jax.random.key(0), seg.shape, 1, 32)
    module = build_model(cfg, lora_cfg)
    variables = module.init(jax.random.key(1), tokens, seg)
    lora = jax.tree.map(lambda x: x + 0.05, init_lora(module, lora_cfg, jax.random.key(2)))
    real = (seg > 0)[:, :, None]

    def run(attention):
        m = build_model(cfg.replace(attention=attention), lora_cfg)
        f = lambda lo: jnp.where(real, m.apply({"params": variables["params"], "lora": lo}, tokens, seg), 0.0)  # noqa: E731
        return f(lora), jax.grad(lambda lo: jnp.sum(jnp.sin(f(lo))))(lora)

    (chunked, g_chunked), (xla, g_xla) = run("chunked"), run("xla")
    np.testing.assert_allclose(chunked, xla, rtol=2e-5, atol=2e-5)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), g_chunked, g_xla)
    with pytest.raises(ValueError, match="LMConfig.attention='flash'"):
        cfg.replace(attention="flash")


def test_run_config_key_model_attention():
    from icma_jax.config import from_config_dict

    assert from_config_dict({"model": {"attention": "xla"}}).model.attention == "xla"
    assert from_config_dict({}).model.attention == "chunked"
    with pytest.raises(ValueError, match="model.attention"):
        from_config_dict({"model": {"attention": "flash"}})
