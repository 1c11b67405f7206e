"""Tiny tokenizers built offline in milliseconds, for the static-embedder and verl tests."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

CORPUS = [
    "The answer is 4. So x = 2 and y = 3.",
    "Step 1: add the numbers. Step 2: divide by two.",
    "We compute 12 * 3 = 36, then 36 - 1 = 35.",
    "Therefore the final answer is \\boxed{35}.",
    "Is 91 prime? No, because 91 = 7 * 13.",
    "A paraphrase says the same thing in other words.",
    "The cat sat on the mat while the dog slept.",
] * 4


@lru_cache(maxsize=1)
def tiny_bpe() -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` (GPT-2 / Qwen style) with eos and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>"
    )


@lru_cache(maxsize=1)
def tiny_wordpiece() -> Any:
    """A BERT-style WordPiece ``tokenizers.Tokenizer`` (lower-cased, [CLS]/[SEP]/[UNK]...)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=200,
        special_tokens=["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok
