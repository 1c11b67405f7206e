"""QA scores with the official SQuAD / HotpotQA normalisation: EM, token F1 and cover-EM.

``normalize_answer``, ``f1`` and ``em`` follow ``hotpot_evaluate_v1.py`` (HotpotQA) line by line,
which itself extends the SQuAD v1.1 script by scoring 0 F1 when exactly one side is one of
"yes" / "no" / "noanswer" and the two differ. ``cover_em`` ("accuracy" in Search-R1 / FlashRAG
style papers) is 1 when a normalised reference occurs in the normalised prediction; we require
whole-token occurrence (the reference's token sequence is a contiguous run of the prediction's
tokens), so "no" is not found in "not" nor "1" in "10".
"""

from __future__ import annotations

import re
import string
from collections import Counter

__all__ = ["normalize_answer", "qa_scores", "exact_match", "token_f1", "cover_exact_match"]

_PUNCT = set(string.punctuation)
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, the articles a/an/the, and extra whitespace (SQuAD)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 as in hotpot_evaluate_v1.py (yes/no/noanswer mismatch scores 0)."""
    pred_norm = normalize_answer(prediction)
    ref_norm = normalize_answer(reference)
    if pred_norm in _SPECIAL and pred_norm != ref_norm:
        return 0.0
    if ref_norm in _SPECIAL and pred_norm != ref_norm:
        return 0.0
    pred_tokens = pred_norm.split()
    ref_tokens = ref_norm.split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def cover_exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised reference occurs (as whole tokens) in the normalised prediction."""
    ref = normalize_answer(reference)
    if not ref:
        return 0.0
    return float(f" {ref} " in f" {normalize_answer(prediction)} ")


def qa_scores(prediction: str, answers: list[str] | str) -> dict[str, float]:
    """``{"em", "f1", "cover_em"}`` of ``prediction``, each the max over the reference ``answers``.

    A single string is accepted as one reference. Raises ValueError on a non-string prediction,
    an empty reference list or a non-string reference.
    """
    if not isinstance(prediction, str):
        raise ValueError(f"prediction must be a str, got {type(prediction).__name__}")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, (list, tuple)) or len(answers) == 0:
        raise ValueError(f"answers must be a non-empty list of str, got {answers!r}")
    for a in answers:
        if not isinstance(a, str):
            raise ValueError(f"answers must contain str, got {type(a).__name__}: {a!r}")
    return {
        "em": max(exact_match(prediction, a) for a in answers),
        "f1": max(token_f1(prediction, a) for a in answers),
        "cover_em": max(cover_exact_match(prediction, a) for a in answers),
    }
