"""icma-jax: In-Context Molecule Adaptation (retrieval, re-ranking, in-context molecule tuning) in JAX/Flax.

Dimension legend, one for the whole package: a tensor's name ends in its shape, e.g. `h_BxLxD`. A letter says
what an axis runs over; a selection or reordering of it keeps the letter (`perm_G`: the valid database rows by
length) unless it has its own (W). Juxtaposed letters multiply (`logp_BXxV`: B X rows), digits are literal sizes
(`seed_2`, `logits_Bx1xV`), a leading `x` stands for any leading axes (`sums_xF`). Letters:
A query heads · B batch rows · C candidates (a beam row's top 2X continuations; the (query, row) pairs a retrieval
top-k re-scores) · D model / embedding width · E graph edges · F features (feed-forward width, fingerprint bits,
extra atom inputs, a metric's per-example statistics) · G molecules (graphs of a jraph batch; rows of a retrieval
database, one molecule-caption pair each) · H head dim · I, O input / output features of a linear · J = A/K query
heads per kv head · K kv heads · L tokens of a row (the token axis everywhere; in a cached call, the tokens fed in)
· M = L J grouped query rows · N graph nodes (atoms) · P prompt bucket · Q queries (retrieval queries; the evaluated
examples of a run) · R rank (LoRA; the caption LSA) · S key positions / KV-cache slots · T = B L tokens of a batch
flattened · U generated tokens · V vocabulary (tokens; BM25 terms; atom types) · W head (target) positions of a row
· X beams · Y micro-batches · Z layers.
"""

import os

# transformers advises at import time that PyTorch is missing; JAX is the engine here, torch only a test reference.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
