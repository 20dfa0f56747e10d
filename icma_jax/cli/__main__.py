import sys

from icma_jax.cli import main

sys.exit(main())
