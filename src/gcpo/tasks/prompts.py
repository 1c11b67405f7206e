"""Prompt templates per benchmark, context truncation, answer post-processing, and the text of
TRL-format prompts and completions (a string, or chat messages).

* Math (math500, aime24, olympiadbench): the Qwen2.5-Math evaluation instruction
  ``{question}\\nPlease reason step by step, and put your final answer within \\boxed{}.``
  (the ``math`` task kind's template in :mod:`gcpo.tasks.registry`)
* Synthetic tasks (arithmetic, passage-qa): the generated question, which carries its own
  instruction.
* QA: the LongBench prompts for hotpotqa / qasper / narrativeqa (question + passages, "answer as
  concisely as you can"), with the LongBench typos fixed.
* The text goes in a single user turn through the tokenizer's chat template when it has one;
  otherwise the raw text is used, followed by a newline (math) or already ending in "Answer:"
  (QA): :func:`gcpo.tasks.evalsets.build_prompt`.
* Long contexts: only the ``context`` is cut, to ``max_context_tokens`` tokens of the model's
  tokenizer, LongBench-style *middle truncation*: keep the first ceil(b/2) and the last floor(b/2)
  tokens and join them with ``"\\n...\\n"``. The question and instructions are never cut.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MATH_INSTRUCTION",
    "QA_TEMPLATES",
    "completion_text",
    "prompt_text",
    "qa_prediction",
    "truncate_middle",
]

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

_HOTPOT = (
    "Answer the question based on the given passages. Only give me the answer and do not output "
    "any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question "
    "based on the given passages. Only give me the answer and do not output any other words."
    "\n\nQuestion: {question}\nAnswer:"
)
_QASPER_RULES = (
    "Answer the question as concisely as you can, using a single phrase or sentence if possible. "
    'If the question cannot be answered based on the information in the article, write "unanswerable". '
    'If the question is a yes/no question, answer "yes", "no", or "unanswerable". '
    "Do not provide any explanation."
)
_QASPER = (
    "You are given a scientific article and a question. " + _QASPER_RULES
    + "\n\nArticle: {context}\n\nAnswer the question based on the above article. " + _QASPER_RULES
    + "\n\nQuestion: {question}\n\nAnswer:"
)  # fmt: skip
_NARRATIVE = (
    "You are given a story, which can be either a novel or a movie script, and a question. "
    "Answer the question as concisely as you can, using a single phrase if possible. Do not "
    "provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the "
    "story as concisely as you can, using a single phrase if possible. Do not provide any "
    "explanation.\n\nQuestion: {question}\n\nAnswer:"
)
QA_TEMPLATES: dict[str, str] = {"hotpotqa": _HOTPOT, "qasper": _QASPER, "narrativeqa": _NARRATIVE}

_ELLIPSIS = "\n...\n"


def truncate_middle(text: str, tokenizer: Any, max_tokens: int) -> str:
    """``text`` cut to ``max_tokens`` tokens by dropping its middle (LongBench style).

    Keeps the first ceil(b/2) and last floor(b/2) tokens, joined by ``"\\n...\\n"``; text within
    budget is returned unchanged. Raises ValueError if ``max_tokens`` < 2.
    """
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    head = (max_tokens + 1) // 2
    tail = max_tokens - head
    return (
        tokenizer.decode(ids[:head], skip_special_tokens=True)
        + _ELLIPSIS
        + tokenizer.decode(ids[len(ids) - tail :], skip_special_tokens=True)
    )


def qa_prediction(generation: str) -> str:
    """The answer span of a QA generation: its first non-empty line, without a leading
    "Answer:" (LongBench scores the first line of the output)."""
    for line in generation.strip().splitlines():
        line = line.strip()
        if line:
            if line.lower().startswith("answer:"):
                line = line[len("answer:") :].strip()
            return line
    return ""


def prompt_text(prompt: Any) -> str:
    """A prompt as one string: plain text as is, a conversation as its message contents joined."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        parts = []
        for message in prompt:
            content = message.get("content", "") if isinstance(message, dict) else message
            parts.append(content if isinstance(content, str) else str(content))
        return "\n".join(parts)
    return str(prompt)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else str(content)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return ""
