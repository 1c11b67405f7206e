"""Math rewards: final-answer extraction, canonical answer keys and time-bounded verification.

Two layers, both safe to call on every completion of a training batch:

* :func:`extract_answer` / :func:`canonical_answer` — pure-regex, no sympy, microseconds. The
  key is what the ``answer`` clusterer of semantic entropy groups on: the same answer written
  differently (``\\dfrac{1}{2}`` / ``1/2``, ``0.50`` / ``.5``, ``1,000`` / ``1000``,
  ``90^\\circ`` / ``90``, ``x = 3`` / ``3``, ``025`` / ``25``) gets the same key where that is
  cheap to see.
* :func:`math_reward` — 1.0 when the completion's final answer is equivalent to the gold answer.
  Equal canonical keys short-cut to 1.0; otherwise ``math-verify`` decides (fractions, LaTeX vs
  plain, intervals, sets, ...) inside a small pool of persistent worker *processes* with a hard
  per-call deadline (see :mod:`gcpo.tasks._verifier`). That works from any thread and never
  stalls: a call that overruns returns 0.0 and is counted in :func:`verifier_stats`.
"""

from __future__ import annotations

import re

__all__ = [
    "canonical_answer",
    "extract_answer",
    "extract_boxed",
    "math_reward",
    "math_rewards",
    "verifier_stats",
]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:)\s*[:\s]*(.+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _closing_braces(text: str) -> dict[int, int]:
    """``{open index: matching close index}`` for every unescaped ``{`` (-1 if never closed).

    One left-to-right pass with a stack, so finding the last complete box stays linear even for
    adversarial output with thousands of unclosed ``\\boxed{`` (a scan per box was quadratic).
    """
    closing: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
            closing[i] = -1
        elif ch == "}" and stack:
            closing[stack.pop()] = i
        i += 1
    return closing


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed 5``) in ``text``.

    Nested braces are balanced; an unclosed last box falls back to the previous closed one.
    Returns None when there is no complete box.
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    closing: dict[int, int] | None = None
    for start in reversed(starts):
        if start < len(text) and text[start] == "{":
            if closing is None:
                closing = _closing_braces(text)
            end = closing.get(start, -1)
            if end != -1:
                return text[start + 1 : end]
        elif start < len(text):
            # "\boxed 5" form: the argument runs to the next space or "$".
            m = re.match(r"[^\s$]+", text[start:])
            if m:
                return m.group(0)
    return None


def _answer_phrase(text: str) -> str | None:
    """The expression after the last "the answer is" / "final answer:" in ``text``."""
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    if last is None:
        return None
    tail = last.group(1).strip()
    if tail.startswith("$"):
        # A math span: take it whole (it may contain periods).
        end = tail.find("$", 1) if not tail.startswith("$$") else tail.find("$$", 2)
        if end != -1:
            return tail[: end + (2 if tail.startswith("$$") else 1)]
    # Plain text: stop at the end of the sentence (a period not inside a number).
    sentence = re.match(r"(.*?)(?:\.(?!\d)|\n|$)", tail)
    phrase = (sentence.group(1) if sentence else tail).strip()
    return phrase or None


def _last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text)
    return matches[-1] if matches else None


def extract_answer(completion: str, *, last_number_fallback: bool = False) -> str | None:
    """Canonical final answer of a completion: the key the ``answer`` clusterer groups on.

    Looks for, in order: the last ``\\boxed{...}`` (nested braces balanced), the phrase after the
    last "the answer is" / "final answer:", and — only when ``last_number_fallback`` — the last
    number in the text. The result is passed through :func:`canonical_answer`. Returns None
    when nothing is found (SEED-GRPO treats such a completion as its own cluster).

    Raises ValueError if ``completion`` is not a string.
    """
    if not isinstance(completion, str):
        raise ValueError(f"completion must be a str, got {type(completion).__name__}")
    raw = extract_boxed(completion)
    if raw is None:
        raw = _answer_phrase(completion)
    if raw is None and last_number_fallback:
        raw = _last_number(completion)
    if raw is None:
        return None
    key = canonical_answer(raw)
    return key or None


_REMOVE = (
    "\\left",
    "\\right",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\ ",
    "\\displaystyle",
    "\\$",
    "\\bigl",
    "\\bigr",
    "\\Bigl",
    "\\Bigr",
    "\\big",
    "\\Big",
    "$",
)
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_TRAILING_UNIT = re.compile(
    r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z\s./^\d]*\}\s*(?:\^\s*\{?\d\}?)?$"
)
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_SHORT_BRACED = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")
_SIMPLE_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(\d+)\}$")
_ASSIGNMENT = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*(?!=)")
_MAX_KEY_CHARS = 1000
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _normalise_number(s: str) -> str:
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(s):
        return s
    sign = "-" if s.startswith("-") else ""
    s = s.lstrip("+-")
    if "." in s:
        whole, frac = s.split(".", 1)
        frac = frac.rstrip("0")
        whole = whole.lstrip("0") or "0"
        s = f"{whole}.{frac}" if frac else whole
    else:
        s = s.lstrip("0") or "0"
    if s == "0":
        sign = ""
    return sign + s


def canonical_answer(answer: str) -> str:
    """Cheap string normalisation of a final answer (no sympy): equal keys => same answer.

    Strips ``$``, ``\\left``/``\\right``, spacing commands, ``^\\circ``, ``\\%``, trailing
    ``\\text{units}``, a trailing period and all whitespace; ``\\dfrac``/``\\tfrac`` -> ``\\frac``;
    ``\\frac12`` -> ``\\frac{1}{2}``; integer fractions -> ``a/b``; a single-variable assignment
    ``x = 3`` -> ``3``; numbers ``0.50`` -> ``0.5``, ``1,000`` -> ``1000``, ``025`` -> ``25``.
    """
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a str, got {type(answer).__name__}")
    s = answer.strip()
    if len(s) > _MAX_KEY_CHARS:
        # Adversarially long: no model answer is this long; keep the key cheap and exact.
        return "".join(s.split())
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for token in _REMOVE:
        s = s.replace(token, "")
    s = s.replace("{,}", ",")
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.strip().rstrip(".").strip()
    s = _TRAILING_UNIT.sub("", s)
    # Unwrap \text{...} and friends (innermost first), e.g. \text{(C)} -> (C).
    for _ in range(4):
        new = _TEXT_WRAP.sub(r"\1", s)
        if new == s:
            break
        s = new
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_SHORT_BRACED.sub(r"\\frac{\1}{\2}", s)
    s = "".join(s.split())
    s = _ASSIGNMENT.sub("", s, count=1) if s.count("=") == 1 else s
    s = s.rstrip(".")
    m = _SIMPLE_FRAC.match(s)
    if m:
        sign = "-" if (m.group(1) == "-") != m.group(2).startswith("-") else ""
        s = f"{sign}{m.group(2).lstrip('-')}/{m.group(3)}"
    return _normalise_number(s)


def math_reward(
    completion: str,
    answer: str,
    *,
    timeout: float | None = None,
    use_math_verify: bool = True,
) -> float:
    """1.0 if the final answer of ``completion`` is equivalent to ``answer``, else 0.0.

    Equal canonical keys (:func:`extract_answer` vs :func:`canonical_answer`) give 1.0 without
    sympy. Otherwise ``math-verify`` parses the gold answer and the completion and compares them
    (equivalent forms: fractions, LaTeX vs plain, intervals, sets, units), in a worker process
    with a hard deadline of ``timeout`` seconds (default: the verifier's, 3 s). A call that
    overruns, or a verifier crash, returns 0.0 and is counted in :func:`verifier_stats`.
    Safe to call from any thread. ``use_math_verify=False`` uses the canonical keys only.

    Raises ValueError if either argument is not a string.
    """
    if not isinstance(completion, str):
        raise ValueError(f"completion must be a str, got {type(completion).__name__}")
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a str, got {type(answer).__name__}")
    if not completion.strip() or not answer.strip():
        return 0.0
    key = extract_answer(completion)
    if key is not None and key == canonical_answer(answer):
        return 1.0
    if not use_math_verify:
        return 0.0
    from gcpo.tasks._verifier import default_verifier

    return 1.0 if default_verifier().verify(answer, completion, timeout=timeout) else 0.0


def math_rewards(
    completions: list[str],
    answers: list[str],
    *,
    timeout: float | None = None,
) -> list[float]:
    """:func:`math_reward` over pairs, spread over the verifier's worker processes."""
    if len(completions) != len(answers):
        raise ValueError(
            f"completions and answers must have the same length, got {len(completions)} "
            f"and {len(answers)}"
        )
    from concurrent.futures import ThreadPoolExecutor

    from gcpo.tasks._verifier import default_verifier

    n_workers = default_verifier().num_workers
    if len(completions) <= 1 or n_workers <= 1:
        return [
            math_reward(c, a, timeout=timeout) for c, a in zip(completions, answers, strict=True)
        ]
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return list(
            pool.map(
                lambda ca: math_reward(ca[0], ca[1], timeout=timeout),
                zip(completions, answers, strict=True),
            )
        )


def verifier_stats() -> dict[str, int]:
    """Counters of the shared math verifier: calls, timeouts, errors, worker restarts."""
    from gcpo.tasks._verifier import default_verifier

    return default_verifier().stats()
