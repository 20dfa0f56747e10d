"""Fixtures for the data tests: a character-level tokenizer built in memory (no downloads)."""

import pytest
from transformers import PreTrainedTokenizerFast

from icma_jax.data.char_tokenizer import char_tokenizer as make_char_tokenizer


@pytest.fixture(scope="module")
def char_tokenizer() -> PreTrainedTokenizerFast:
    return make_char_tokenizer()
