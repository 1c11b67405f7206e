"""A progress bar that shows reward and GCPO weight instead of printing every log dict."""

from __future__ import annotations

from typing import Any

from transformers.trainer_callback import ProgressCallback

__all__ = ["CompactProgressCallback"]

_SHOWN = {
    "reward": "reward",
    "gcpo/weight_mean": "w",
    "gcpo/reward_dispersion": "rd",
    "loss": "loss",
}


class CompactProgressCallback(ProgressCallback):
    """transformers' tqdm bar, with the last reward / weight / loss as its postfix."""

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        post = {
            short: f"{logs[k]:.3g}"
            for k, short in _SHOWN.items()
            if isinstance(logs.get(k), (int, float))
        }
        if post:
            self.training_bar.set_postfix(post, refresh=True)
