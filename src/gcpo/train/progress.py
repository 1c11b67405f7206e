"""A progress bar that shows reward and the applied GCPO weights instead of every log dict."""

from __future__ import annotations

from typing import Any

from transformers.trainer_callback import ProgressCallback

__all__ = ["CompactProgressCallback", "postfix"]


def _num(logs: dict[str, Any], key: str) -> float | None:
    value = logs.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def postfix(logs: dict[str, Any]) -> dict[str, str]:
    """The bar's postfix for one log dict: reward; the applied weights as their range over the
    active groups (``w=min-max``) and spread (``w_sd``) -- not their mean, which renormalisation
    makes 1 by construction; how many groups were active; reward dispersion; loss."""
    out: dict[str, str] = {}
    reward = _num(logs, "reward")
    if reward is not None:
        out["reward"] = f"{reward:.3g}"
    lo, hi = _num(logs, "gcpo/weight_min"), _num(logs, "gcpo/weight_max")
    if lo is not None and hi is not None:
        out["w"] = f"{lo:.3f}-{hi:.3f}"
        std = _num(logs, "gcpo/weight_std")
        if std is not None:
            out["w_sd"] = f"{std:.3f}"
    active = _num(logs, "gcpo/active_groups")
    if active is not None:
        out["active"] = f"{active:.3g}"
    rd = _num(logs, "gcpo/reward_dispersion")
    if rd is not None:
        out["rd"] = f"{rd:.3g}"
    loss = _num(logs, "loss")
    if loss is not None:
        out["loss"] = f"{loss:.3g}"
    return out


class CompactProgressCallback(ProgressCallback):
    """transformers' tqdm bar, with :func:`postfix` of the last log as its postfix."""

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        post = postfix(logs)
        if post:
            self.training_bar.set_postfix(post, refresh=True)
