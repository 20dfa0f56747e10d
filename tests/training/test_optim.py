"""make_optimizer against HF: the schedule vs get_linear_schedule_with_warmup, updates vs torch AdamW + clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icma_jax.training.optim import current_lr, linear_schedule_with_warmup, make_optimizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("warmup,total", [(3, 10), (0, 5), (4, 4)])
def test_schedule_matches_hf(warmup, total):
    lr = 2e-4
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = transformers.get_linear_schedule_with_warmup(opt, warmup, total)
    ours = linear_schedule_with_warmup(lr, warmup, total)
    for t in range(total + 3):
        np.testing.assert_allclose(float(ours(t)), opt.param_groups[0]["lr"], rtol=1e-6, atol=1e-12, err_msg=f"t={t}")
        opt.step()
        sched.step()


def test_schedule_rejects_bad_lengths():
    with pytest.raises(ValueError, match="warmup_steps"):
        linear_schedule_with_warmup(1e-3, 5, 3)
    with pytest.raises(ValueError, match="total_steps"):
        linear_schedule_with_warmup(1e-3, 0, 0)


@pytest.mark.parametrize("clip_norm", [1.0, 1e3])
def test_updates_match_torch_adamw_with_clipping(clip_norm):
    """Five updates on fixed random gradients: our params == torch's (clip active with 1.0, inactive with 1e3)."""
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=(3,)).astype(np.float32)}
    grads_seq = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()} for _ in range(5)]
    lr, warmup, total, wd = 1e-2, 2, 6, 0.1

    tx = make_optimizer(lr, warmup, total, weight_decay=wd, clip_norm=clip_norm)
    ours = jax.tree.map(jnp.asarray, params)
    opt_state = tx.init(ours)
    used_lrs = []
    for g in grads_seq:
        updates, opt_state = tx.update(jax.tree.map(jnp.asarray, g), opt_state, ours)
        ours = jax.tree.map(lambda p, u: p + u, ours, updates)
        used_lrs.append(float(current_lr(opt_state)))

    t_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    groups = [{"params": [t_params["w"]], "weight_decay": wd}, {"params": [t_params["b"]], "weight_decay": 0.0}]
    t_opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    t_sched = transformers.get_linear_schedule_with_warmup(t_opt, warmup, total)
    torch_lrs = []
    for g in grads_seq:
        for k, p in t_params.items():
            p.grad = torch.tensor(g[k])
        torch.nn.utils.clip_grad_norm_(list(t_params.values()), clip_norm)
        torch_lrs.append(t_opt.param_groups[0]["lr"])
        t_opt.step()
        t_sched.step()

    np.testing.assert_allclose(used_lrs, torch_lrs, rtol=1e-6)
    for k in params:
        np.testing.assert_allclose(np.asarray(ours[k]), t_params[k].detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.allclose(np.asarray(ours["w"]), params["w"])  # the updates did move the parameters


def test_current_lr_is_nan_without_injected_hyperparams():
    import optax

    assert np.isnan(float(current_lr(optax.adam(1.0).init({"w": jnp.zeros(2)}))))
