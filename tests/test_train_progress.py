"""The gcpo train progress bar shows the weights that were applied, not their mean (1)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gcpo.train.progress import CompactProgressCallback


class Bar:
    def __init__(self) -> None:
        self.postfix: dict[str, Any] = {}

    def set_postfix(self, post: dict[str, Any], refresh: bool = True) -> None:
        self.postfix = dict(post)


def _shown(logs: dict[str, Any]) -> dict[str, Any]:
    callback = CompactProgressCallback()
    callback.training_bar = Bar()
    callback.on_log(None, SimpleNamespace(is_world_process_zero=True), None, logs=logs)
    return callback.training_bar.postfix


def test_bar_shows_the_applied_range_and_spread_over_active_groups() -> None:
    shown = _shown({
        "reward": 0.4583, "loss": 0.01, "gcpo/reward_dispersion": 0.31,
        "gcpo/weight_mean": 1.0, "gcpo/weight_min": 0.928, "gcpo/weight_max": 1.077,
        "gcpo/weight_std": 0.0281, "gcpo/active_groups": 3.0,
    })  # fmt: skip
    assert shown["w"] == "0.928-1.077" and shown["w_sd"] == "0.028"
    assert shown["active"] == "3" and shown["reward"] == "0.458"


def test_bar_shows_no_weight_when_no_group_was_active() -> None:
    shown = _shown({"reward": 0.0, "gcpo/active_groups": 0.0, "gcpo/reward_dispersion": 0.0})
    assert "w" not in shown and shown["active"] == "0"
