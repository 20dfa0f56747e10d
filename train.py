"""Train and evaluate ICMA (In-Context Molecule Tuning) from a config file.

  python train.py --config configs/icma.py:model=galactica-125m,task=mol2cap --workdir runs/g125m-m2c
  python train.py --config configs/demo.py --workdir runs/demo --config.train.max_steps=8

Re-running the same command resumes from the latest checkpoint in --workdir. A user error (unknown key,
bad value, missing file, non-finite loss) is one line and exit status 2. Everything else lives in
icma_jax.run (`from icma_jax.run import train_and_evaluate` in a notebook).
"""

from icma_jax import host_memory

host_memory.retain_freed_memory()  # before anything allocates: see icma_jax/host_memory.py

import sys  # noqa: E402

from icma_jax.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="train.py"))
