"""The training recipe of ``gcpo train``: config, data and rewards, run directory, resume."""

from gcpo.rundir import last_checkpoint
from gcpo.train.config import TrainConfig, load_train_config
from gcpo.train.run import resume_training, run_training

__all__ = ["TrainConfig", "load_train_config", "run_training", "resume_training", "last_checkpoint"]
