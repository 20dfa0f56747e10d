"""Caption tokenizers for BLEU/METEOR: SciBERT uncased wordpieces (MolT5's protocol) or any HF tokenizer.

MolT5's `text_translation_metrics.py` does, per caption,
`BertTokenizerFast.from_pretrained('allenai/scibert_scivocab_uncased').tokenize(text, truncation=True,
max_length=512, padding='max_length')` under transformers 4.x, then drops `[PAD]`, `[CLS]`, `[SEP]`.
That is: wordpieces without special tokens, cut to the first 512, pad/cls/sep strings removed (a
literal "[SEP]" in the text is one special token, so it counts towards the 512 and is then removed).
transformers 5 silently ignores `truncation` in `.tokenize()`, so we truncate explicitly.
"""

import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence

SCIBERT = "scibert"
SCIBERT_VOCAB = pathlib.Path(__file__).resolve().parents[1] / "assets" / "scibert_scivocab_uncased.txt"
SCIBERT_VOCAB_SIZE = 31090
MAX_LENGTH = 512
DROPPED = ("[PAD]", "[CLS]", "[SEP]")


@dataclasses.dataclass(frozen=True)
class TextTokenizer:
    """A named caption tokenizer: `tokenize_batch(texts) -> wordpieces per text`."""

    name: str  # what reports print, e.g. "scibert (…/scibert_scivocab_uncased.txt, 31090 wordpieces)"
    vocab_size: int
    max_length: int
    dropped: frozenset[str]
    _encode: Callable[[list[str]], list[list[str]]] = dataclasses.field(repr=False)

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokens of each text, cut to `max_length`, with pad/cls/sep tokens removed (after the cut)."""
        return [[t for t in toks[: self.max_length] if t not in self.dropped] for toks in self._encode(list(texts))]

    def tokenize(self, text: str) -> list[str]:
        """Tokens of one text (see `tokenize_batch`)."""
        return self.tokenize_batch([text])[0]


def _vocab_lines(path: pathlib.Path) -> int:
    """Number of lines (= wordpieces) in a vocab.txt."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def scibert_tokenizer(vocab_file: str | os.PathLike = SCIBERT_VOCAB, max_length: int = MAX_LENGTH) -> TextTokenizer:
    """SciBERT uncased wordpieces from a `vocab.txt` (default: the copy shipped in `icma_jax/assets`)."""
    from tokenizers import BertWordPieceTokenizer

    path = pathlib.Path(vocab_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SciBERT vocabulary file not found")
    tok = BertWordPieceTokenizer(str(path), lowercase=True)
    expected = SCIBERT_VOCAB_SIZE if path.resolve() == SCIBERT_VOCAB.resolve() else _vocab_lines(path)
    # Guard against a constructor that ignores the vocabulary and maps everything to [UNK].
    if tok.get_vocab_size() != expected:
        raise ValueError(f"{path}: loaded {tok.get_vocab_size()} wordpieces, expected {expected}")

    def encode(texts: list[str]) -> list[list[str]]:
        return [e.tokens for e in tok.encode_batch(texts, add_special_tokens=False)]

    return TextTokenizer(
        name=f"{SCIBERT} ({path}, {expected} wordpieces, uncased)",
        vocab_size=expected,
        max_length=max_length,
        dropped=frozenset(DROPPED),
        _encode=encode,
    )


def hf_tokenizer(name_or_path: str, max_length: int = MAX_LENGTH) -> TextTokenizer:
    """Any HF tokenizer (local folder or hub id), e.g. MolT5's T5 tokenizer as ICMA's scripts used.

    Besides MolT5's `[PAD]`/`[CLS]`/`[SEP]`, the tokenizer's own pad/cls/sep tokens are removed (a T5
    tokenizer pads with `<pad>`).
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:  # no such folder/repo, offline, or no tokenizer files in it
        raise FileNotFoundError(f"{name_or_path}: not 'scibert', a vocab.txt, or a loadable HF tokenizer ({e})") from e
    size = len(tok)
    if size <= len(tok.all_special_tokens) + 1:
        raise ValueError(f"{name_or_path}: tokenizer loaded with only {size} tokens (vocabulary not read)")
    own = {t for t in (tok.pad_token, tok.cls_token, tok.sep_token) if t}

    def encode(texts: list[str]) -> list[list[str]]:
        ids = tok(texts, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
        return [tok.convert_ids_to_tokens(row) for row in ids]

    return TextTokenizer(
        name=f"{name_or_path} (HF {type(tok).__name__}, {size} tokens)",
        vocab_size=size,
        max_length=max_length,
        dropped=frozenset(DROPPED) | own,
        _encode=encode,
    )


def load_text_tokenizer(spec: str = SCIBERT, max_length: int = MAX_LENGTH) -> TextTokenizer:
    """`"scibert"` (shipped vocab), a SciBERT-style `vocab.txt` path, or an HF tokenizer folder / hub id."""
    if spec == SCIBERT:
        return scibert_tokenizer(SCIBERT_VOCAB, max_length)
    if spec.endswith(".txt") and os.path.isfile(spec):
        return scibert_tokenizer(spec, max_length)
    return hf_tokenizer(spec, max_length)
