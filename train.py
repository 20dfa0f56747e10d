"""Train and evaluate ICMA (In-Context Molecule Tuning) from a config file.

  python train.py --config configs/icma.py:model=galactica-125m,task=mol2cap --workdir runs/g125m-m2c
  python train.py --config configs/demo.py --workdir runs/demo --config.train.max_steps=8

Re-running the same command resumes from the latest checkpoint in --workdir. Everything else lives in
icma_jax.training.loop.train_and_evaluate (importable from a notebook).
"""

from icma_jax import host_memory

host_memory.retain_freed_memory()  # before anything allocates: see icma_jax/host_memory.py

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from icma_jax.training import loop  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file: path/to/config.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: config, checkpoints, metrics, predictions")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # library INFO chatter (Orbax, XLA) off; progress is printed
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
