"""Evaluation decodes prompts in length-sorted batches, each padded to its own bucket: the outputs are those of
every prompt decoded alone, in the order given, whatever the batch size and the mix of lengths."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import pytest

from icma_jax import config as cfg_lib
from icma_jax.data.batching import pad_prompts
from icma_jax.data.char_tokenizer import char_tokenizer
from icma_jax.eval.generate import decoding_layout, generate_tokens, length_batches, prompt_bucket
from icma_jax.run import evaluate
from icma_jax.run.backbone import load_backbone, tiny_lm_config
from icma_jax.sharding import make_mesh

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_prompt_bucket_ladder_holds_the_prompt_with_under_half_padding():
    assert [prompt_bucket(n) for n in (1, 64, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1313)] == \
        [64, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 1536]
    for n in range(64, 5000, 7):
        assert n <= prompt_bucket(n) < 1.5 * n


def test_length_batches_cover_every_row_once_longest_first():
    lengths = [5, 300, 12, 700, 40, 41, 7]
    batches = length_batches(lengths, 3)
    assert [b.tolist() for b, _ in batches] == [[3, 1, 5], [4, 2, 6], [0]]
    assert [size for _, size in batches] == [768, 64, 64]
    assert sorted(np.concatenate([b for b, _ in batches]).tolist()) == list(range(len(lengths)))


@pytest.fixture(scope="module")
def tiny_decoder():
    tok = char_tokenizer()
    lm_config = tiny_lm_config(len(tok))
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    bb = load_backbone("tiny", lm_config, tok, mesh, jax.random.key(3), lora=None)
    params = jax.tree.map(lambda x: 3.0 * x if x.ndim > 1 else x, bb.trainable)  # decisive logits: no near-ties
    module, params = decoding_layout(bb.module, params)
    return module, params, tok


def test_decode_rows_equal_each_prompt_decoded_alone(tiny_decoder):
    module, params, tok = tiny_decoder
    plan = evaluate.plan(cfg_lib.from_config_dict(_tiny_config(batch_size=2, max_new_tokens=6)))
    rng = np.random.default_rng(0)
    lengths = [130, 5, 90, 12, 40, 200, 7]  # four buckets; a batch of rows 5 and 0; a padded last batch
    prompts = [rng.integers(4, len(tok), n).astype(np.int32) for n in lengths]
    got = evaluate.decode_rows(plan, module, params, tok, prompts)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos_ids = tuple(sorted({tok.eos_token_id, *module.config.eos_token_ids} - {None}))
    for ids, d in zip(prompts, got):
        alone = pad_prompts([ids], len(ids), 1, pad_id)
        row = generate_tokens(module, params, alone.tokens_BxL, alone.segment_ids_BxL, plan.generation,
                              eos_ids=eos_ids, pad_id=pad_id)[0].tolist()
        cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        assert d.tokens == row[:cut]
        assert d.stopped == (cut < len(row))
    assert len({tuple(d.tokens) for d in got}) > 1  # the prompts lead to different continuations
    # seeds follow the length-sorted batches: rows 5 and 0 (longest) share batch 0, row 1 (shortest) is last
    assert got[5].seed == got[0].seed == plan.generation.seed and got[1].seed == plan.generation.seed + 6


def _tiny_config(batch_size: int, max_new_tokens: int):
    d = cfg_lib.load_config_file(str(REPO / "configs" / "tiny.py"))
    d.eval.batch_size, d.eval.max_new_tokens = batch_size, max_new_tokens
    return d
