"""Fixtures for the training tests."""

import jax
import pytest

from training_tiny_lm import TinyLM, make_batch


@pytest.fixture(scope="session")
def tiny_lm():
    """(module, params, lora) of the tiny LM, initialised once."""
    module = TinyLM()
    batch = make_batch(0, 2, 8)
    variables = module.init(jax.random.key(0), batch.tokens_BxL, batch.segment_ids_BxL)
    lora = jax.tree.map(lambda x: x + 0.05, variables["lora"])  # non-zero B so LoRA gradients flow everywhere
    return module, variables["params"], lora


@pytest.fixture(autouse=True)
def _fast_compile():
    """XLA without most optimisations (as flax's lm1b tests): compiles much faster; every comparison here is
    between runs compiled the same way, and the benches measure the optimised build."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
