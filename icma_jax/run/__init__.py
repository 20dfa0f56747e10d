"""The run layer: a run config (`icma_jax.config`) in, a trained model, predictions and metrics out.

Only this package and `icma_jax.cli` read the run config; they turn it into the libraries' own small
configs. `from icma_jax.run import train_and_evaluate` is the notebook entry point.
"""


def __getattr__(name: str):
    # imported on first use: `icma_jax.run.report` and friends should not pay for JAX, Flax and Orbax
    if name == "train_and_evaluate":
        from icma_jax.run.loop import train_and_evaluate

        return train_and_evaluate
    raise AttributeError(f"module 'icma_jax.run' has no attribute {name!r}")


__all__ = ["train_and_evaluate"]
