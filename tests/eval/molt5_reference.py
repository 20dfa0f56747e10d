"""MolT5's published evaluation scripts, transcribed line by line, as the independent reference.

Sources (blender-nlp/MolT5, `evaluation/`): `text_translation_metrics.py` (rouge_score version),
`mol_translation_metrics.py` (InChI exact match), `fingerprint_metrics.py`, `fcd_metric.py`. Only the
argparse/print scaffolding is left out. Two unavoidable translations, each marked below:
- transformers 5's `tokenize()` ignores `truncation`/`padding`; under 4.x `tokenize(text, **kw)` was
  `encode_plus(text, add_special_tokens=False, **kw).tokens()`, which is what we call.
- `fcd.canonical_smiles` maps `fcd.canonical` over a process Pool; we map it in-process (same function).
"""

import csv
import os.path as osp

import numpy as np
from Levenshtein import distance as lev
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import AllChem, MACCSkeys
from rouge_score import rouge_scorer
from transformers import BertTokenizerFast

RDLogger.DisableLog("rdApp.*")


def _tokenize(text_tokenizer, text, text_trunc_length):
    # transformers-4 semantics of `text_tokenizer.tokenize(text, truncation=True, max_length=..., padding='max_length')`
    return text_tokenizer(text, add_special_tokens=False, truncation=True, max_length=text_trunc_length,
                          padding="max_length").tokens()


def text_evaluate(text_model, input_file, text_trunc_length=512):
    """text_translation_metrics.evaluate -> (bleu2, bleu4, rouge_1, rouge_2, rouge_l, meteor)."""
    outputs = []

    with open(osp.join(input_file), encoding="utf8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, line in enumerate(reader):
            out_tmp = line["output"][6:] if line["output"].startswith("[CLS] ") else line["output"]
            outputs.append((line["SMILES"], line["ground truth"], out_tmp))

    text_tokenizer = BertTokenizerFast.from_pretrained(text_model)

    meteor_scores = []

    references = []
    hypotheses = []

    for i, (smi, gt, out) in enumerate(outputs):
        gt_tokens = _tokenize(text_tokenizer, gt, text_trunc_length)
        gt_tokens = list(filter(("[PAD]").__ne__, gt_tokens))
        gt_tokens = list(filter(("[CLS]").__ne__, gt_tokens))
        gt_tokens = list(filter(("[SEP]").__ne__, gt_tokens))

        out_tokens = _tokenize(text_tokenizer, out, text_trunc_length)
        out_tokens = list(filter(("[PAD]").__ne__, out_tokens))
        out_tokens = list(filter(("[CLS]").__ne__, out_tokens))
        out_tokens = list(filter(("[SEP]").__ne__, out_tokens))

        references.append([gt_tokens])
        hypotheses.append(out_tokens)

        mscore = meteor_score([gt_tokens], out_tokens)
        meteor_scores.append(mscore)

    bleu2 = corpus_bleu(references, hypotheses, weights=(0.5, 0.5))
    bleu4 = corpus_bleu(references, hypotheses, weights=(0.25, 0.25, 0.25, 0.25))
    _meteor_score = np.mean(meteor_scores)

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    rouge_scores = []
    for i, (smi, gt, out) in enumerate(outputs):
        rs = scorer.score(out, gt)
        rouge_scores.append(rs)
    rouge_1 = np.mean([rs["rouge1"].fmeasure for rs in rouge_scores])
    rouge_2 = np.mean([rs["rouge2"].fmeasure for rs in rouge_scores])
    rouge_l = np.mean([rs["rougeL"].fmeasure for rs in rouge_scores])
    return bleu2, bleu4, rouge_1, rouge_2, rouge_l, _meteor_score


def mol_evaluate(input_fp):
    """mol_translation_metrics.evaluate -> (bleu, exact_match, levenshtein, validity)."""
    outputs = []

    with open(osp.join(input_fp)) as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, line in enumerate(reader):
            gt_smi = line["ground truth"]
            ot_smi = line["output"]
            outputs.append((line["description"], gt_smi, ot_smi))

    references = []
    hypotheses = []

    for i, (smi, gt, out) in enumerate(outputs):
        gt_tokens = [c for c in gt]
        out_tokens = [c for c in out]
        references.append([gt_tokens])
        hypotheses.append(out_tokens)

    bleu_score = corpus_bleu(references, hypotheses)

    levs = []
    num_exact = 0
    bad_mols = 0

    for i, (smi, gt, out) in enumerate(outputs):
        try:
            m_out = Chem.MolFromSmiles(out)
            m_gt = Chem.MolFromSmiles(gt)

            if Chem.MolToInchi(m_out) == Chem.MolToInchi(m_gt):
                num_exact += 1
        except Exception:
            bad_mols += 1

        levs.append(lev(out, gt))

    exact_match_score = num_exact / (i + 1)
    levenshtein_score = np.mean(levs)
    validity_score = 1 - bad_mols / len(outputs)
    return bleu_score, exact_match_score, levenshtein_score, validity_score


def fingerprint_evaluate(input_file, morgan_r=2):
    """fingerprint_metrics.evaluate -> (validity, maccs, rdk, morgan)."""
    outputs = []
    bad_mols = 0

    with open(osp.join(input_file)) as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, line in enumerate(reader):
            try:
                gt_smi = line["ground truth"]
                ot_smi = line["output"]
                gt_m = Chem.MolFromSmiles(gt_smi)
                ot_m = Chem.MolFromSmiles(ot_smi)

                if ot_m is None:
                    raise ValueError("Bad SMILES")
                outputs.append((line["description"], gt_m, ot_m))
            except Exception:
                bad_mols += 1
    validity_score = len(outputs) / (len(outputs) + bad_mols)

    MACCS_sims = []
    morgan_sims = []
    RDK_sims = []

    for i, (desc, gt_m, ot_m) in enumerate(outputs):
        MACCS_sims.append(DataStructs.FingerprintSimilarity(MACCSkeys.GenMACCSKeys(gt_m), MACCSkeys.GenMACCSKeys(ot_m), metric=DataStructs.TanimotoSimilarity))
        RDK_sims.append(DataStructs.FingerprintSimilarity(Chem.RDKFingerprint(gt_m), Chem.RDKFingerprint(ot_m), metric=DataStructs.TanimotoSimilarity))
        morgan_sims.append(DataStructs.TanimotoSimilarity(AllChem.GetMorganFingerprint(gt_m, morgan_r), AllChem.GetMorganFingerprint(ot_m, morgan_r)))

    return validity_score, np.mean(MACCS_sims), np.mean(RDK_sims), np.mean(morgan_sims)


def fcd_evaluate(input_file):
    """fcd_metric.evaluate -> FCD."""
    from fcd import get_fcd, load_ref_model
    from fcd.utils import canonical

    gt_smis = []
    ot_smis = []

    with open(osp.join(input_file)) as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, line in enumerate(reader):
            gt_smi = line["ground truth"]
            ot_smi = line["output"]
            if len(ot_smi) == 0:
                ot_smi = "[]"

            gt_smis.append(gt_smi)
            ot_smis.append(ot_smi)

    model = load_ref_model()

    # fcd.canonical_smiles(x) == Pool().map(fcd.utils.canonical, x); mapped in-process here.
    canon_gt_smis = [w for w in map(canonical, gt_smis) if w is not None]
    canon_ot_smis = [w for w in map(canonical, ot_smis) if w is not None]

    return get_fcd(canon_gt_smis, canon_ot_smis, model)
