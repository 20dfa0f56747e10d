"""icma-jax: In-Context Molecule Adaptation (retrieval, re-ranking, in-context molecule tuning) in JAX/Flax."""

import os

# transformers advises at import time that PyTorch is missing; JAX is the engine here, torch only a test reference.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
