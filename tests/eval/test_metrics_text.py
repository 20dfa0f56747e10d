"""Mol2Cap metrics: hand-computed BLEU/METEOR/ROUGE cases and the SciBERT wordpieces."""

import math
import pathlib

import pytest
import reference_deps
from metrics_support import chebi  # noqa: F401  (fixture)

from icma_jax.eval import wordpiece
from icma_jax.eval.metrics import mol2cap_metrics
from icma_jax.eval.text_metrics import corpus_bleu_score, meteor_scores
from icma_jax.eval.wordpiece import load_text_tokenizer, scibert_tokenizer


@pytest.fixture(scope="module")
def scibert():
    return load_text_tokenizer("scibert")


def test_shipped_vocab_is_the_shared_scibert_vocab(shared_data: pathlib.Path):
    shipped = wordpiece.SCIBERT_VOCAB.read_bytes()
    assert shipped == (shared_data / "vocab" / "scibert_scivocab_uncased.txt").read_bytes()
    assert len(shipped.decode("utf-8").splitlines()) == wordpiece.SCIBERT_VOCAB_SIZE == 31090


def test_scibert_wordpieces_on_a_real_caption(scibert, shared_data: pathlib.Path):
    lines = (shared_data / "chebi20" / "test.txt").read_text(encoding="utf-8").splitlines()
    caption = next(line.split("\t")[2] for line in lines if "dihydro-1H,5H-pyrido[3,2,1-ij]quinoline" in line)
    tokens = scibert.tokenize(caption)
    assert tokens[:7] == ["the", "molecule", "is", "a", "member", "of", "the"]
    i = tokens.index("quin")
    assert tokens[i : i + 2] == ["quin", "##oline"]
    assert "[UNK]" not in tokens
    assert scibert.vocab_size == 31090 and "scibert" in scibert.name


def test_truncation_at_512_happens_before_special_tokens_are_dropped(scibert):
    tokens = scibert.tokenize("[SEP] " + "acid " * 600)
    assert len(tokens) == 511 and set(tokens) == {"acid"}  # [SEP] used one of the 512 slots, then removed
    assert scibert.tokenize("[CLS] the acid [PAD] [SEP]") == ["the", "acid"]
    assert scibert.tokenize("") == []


def test_vocabulary_size_is_checked(tmp_path: pathlib.Path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nacid\nacid\n", encoding="utf-8")  # duplicate line
    with pytest.raises(ValueError, match="loaded 6 wordpieces, expected 7"):
        scibert_tokenizer(vocab)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        scibert_tokenizer(tmp_path / "nope.txt")


def test_scibert_matches_transformers_bert_tokenizer(scibert, chebi, tmp_path: pathlib.Path):
    # The hub repo allenai/scibert_scivocab_uncased holds vocab.txt and a BERT config.json, no more.
    (tmp_path / "vocab.txt").write_bytes(wordpiece.SCIBERT_VOCAB.read_bytes())
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    hf = load_text_tokenizer(str(tmp_path))
    assert hf.vocab_size == 31090 and "BertTokenizer" in hf.name
    texts = chebi.test_texts[:500] + ["Ångström CAFÉ 中文 β-D-gluco", "[CLS] a [SEP] b [PAD]", "x " * 700, ""]
    assert hf.tokenize_batch(texts) == scibert.tokenize_batch(texts)


def test_bleu_brevity_penalty_by_hand(scibert):
    # hypothesis = first 4 of 6 reference words: every n-gram precision is 1, BP = exp(1 - 6/4).
    m = mol2cap_metrics(["the acid is a base salt"], ["the acid is a"], tokenizer=scibert)
    assert m["bleu2"] == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert m["bleu4"] == pytest.approx(math.exp(-0.5), abs=1e-12)


def test_bleu_is_corpus_level_not_a_mean_of_sentences():
    refs = [["a", "b", "c", "d"], ["e", "f", "g", "h"]]
    hyps = [["a", "b", "c", "d"], ["e", "x", "g", "y"]]
    # p1 = 6/8, p2 = 3/6 (ab bc cd + none), BP = 1 -> sqrt(0.75 * 0.5)
    assert corpus_bleu_score(refs, hyps, (0.5, 0.5)) == pytest.approx(math.sqrt(0.75 * 0.5), abs=1e-12)
    want = (0.75 * 0.5 * (2 / 4) * (1 / 2)) ** 0.25
    assert corpus_bleu_score(refs, hyps, (0.25,) * 4) == pytest.approx(want, abs=1e-12)


def test_meteor_synonym_match_through_wordnet():
    # "auto" matches "car" only through WordNet (car.n.01): 4 matches in 1 chunk,
    # P = R = 1, penalty 0.5 * (1/4)^3 -> 1 - 1/128. Without the synonym: 3 matches, 2 chunks -> 0.6389.
    (score,) = meteor_scores([["the", "car", "is", "red"]], [["the", "auto", "is", "red"]])
    assert score == pytest.approx(1 - 1 / 128, abs=1e-12)
    (plain,) = meteor_scores([["the", "car", "is", "red"]], [["the", "boat", "is", "red"]])
    assert plain == pytest.approx(0.75 * (1 - 0.5 * (2 / 3) ** 3), abs=1e-12)


def test_rouge_by_hand(scibert):
    m = mol2cap_metrics(["the cat sat on the mat"], ["The cat sat"], tokenizer=scibert)
    assert m["rouge1"] == pytest.approx(2 * 1 * 0.5 / 1.5, abs=1e-12)  # P = 3/3, R = 3/6
    assert m["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4, abs=1e-12)  # P = 2/2, R = 2/5
    assert m["rougeL"] == pytest.approx(2 / 3, abs=1e-12)  # LCS 3


def test_empty_prediction_counts_as_zero_and_is_never_dropped(scibert):
    full = mol2cap_metrics(["the car is red"], ["the car is red"], tokenizer=scibert)
    both = mol2cap_metrics(["the car is red", "the dog is big"], ["the car is red", ""], tokenizer=scibert)
    assert both["n"] == 2 and both["n_empty"] == 1
    assert both["meteor"] == pytest.approx(full["meteor"] / 2, abs=1e-12)
    assert both["rouge1"] == pytest.approx(0.5, abs=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        mol2cap_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no rows"):
        mol2cap_metrics([], [])


def test_any_hf_tokenizer_folder_truncates_and_drops_its_own_pad(tmp_path: pathlib.Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "the": 2, "acid": 3, "is": 4, "red": 5}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>").save_pretrained(tmp_path)
    tok = load_text_tokenizer(str(tmp_path), max_length=3)
    assert tok.tokenize("the <pad> acid is red") == ["the", "acid"]  # 3 kept, then "<pad>" dropped
    assert tok.tokenize("the blue acid") == ["the", "<unk>", "acid"]


def test_unknown_tokenizer_is_a_clear_error(tmp_path: pathlib.Path):
    with pytest.raises(FileNotFoundError, match="not 'scibert', a vocab.txt, or a loadable HF tokenizer"):
        load_text_tokenizer(str(tmp_path / "no-such-tokenizer"))


def test_wordnet_from_a_debian_style_folder_is_copied_with_lexnames(tmp_path: pathlib.Path, monkeypatch):
    from icma_jax.eval import wordnet

    if wordnet._missing(wordnet.DEBIAN_DIR):
        reference_deps.missing(f"Debian's WordNet is not in {wordnet.DEBIAN_DIR}: apt-get install wordnet-base "
                               "wordnet-sense-index (make install-test)")
    monkeypatch.setenv("ICMA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(wordnet.nltk.data, "path", list(wordnet.nltk.data.path))  # our root is appended: undo after
    reader = wordnet.load_wordnet.__wrapped__(str(wordnet.DEBIAN_DIR))  # uncached: build the copy in tmp_path
    copied = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert (copied / "lexnames").read_bytes() == wordnet.LEXNAMES.read_bytes()
    assert not (wordnet.DEBIAN_DIR / "lexnames").exists()
    assert "automobile" in {lemma.name() for s in reader.synsets("car") for lemma in s.lemmas()}
    assert reader.get_version() == "3.0"
    (copied / "data.adv").write_text("truncated")  # a copy that no longer matches its source is redone
    assert wordnet._mirror(wordnet.DEBIAN_DIR, tmp_path / "nltk_data") == copied
    assert (copied / "data.adv").read_bytes() == (wordnet.DEBIAN_DIR / "data.adv").read_bytes()


def test_missing_wordnet_says_how_to_install(tmp_path: pathlib.Path, monkeypatch):
    from icma_jax.eval import wordnet

    monkeypatch.setenv("ICMA_WORDNET_DIR", str(tmp_path))
    how = "missing data.noun.*apt-get install .*wordnet-base wordnet-sense-index"
    with pytest.raises(wordnet.WordNetMissingError, match=how):
        wordnet.wordnet_source()
