"""A character-level Hugging Face tokenizer built in memory: for tiny test runs, no downloads."""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable ASCII character; `<s>` prepended; `</s>` in text is the EOS token."""
    chars = [c for c in string.printable if c not in "\x0b\x0c"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate([*SPECIALS, *chars])}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
