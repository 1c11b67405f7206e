"""TRL adapter: :class:`GCPOTrainer`, a drop-in subclass of ``trl.GRPOTrainer`` (TRL 1.16)."""

from gcpo.tasks.prompts import prompt_text
from gcpo.trl.callbacks import MetricsJsonlCallback
from gcpo.trl.trainer import GCPOTrainer, OneGroupPerBatchWarning

__all__ = [
    "GCPOTrainer",
    "MetricsJsonlCallback",
    "OneGroupPerBatchWarning",
    "prompt_text",
]
