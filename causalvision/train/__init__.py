"""One generic trainer for Flax NNX models, from one CPU to a multi-host pod.

`train(task, trainer_config, workdir)` trains any `Task` (model + loss + data);
`train_and_evaluate(config, workdir)` does the same for a named task from an experiment
config (`load_config("experiments/x.py:tiny")`). Runs resume from their last checkpoint.
"""

from causalvision.train.checkpoint import Checkpointer
from causalvision.train.config import (
    Config,
    DataConfig,
    TrainerConfig,
    apply_overrides,
    load_config,
)
from causalvision.train.distributed import initialize
from causalvision.train.metrics_io import plot_curves, read_metrics
from causalvision.train.optim import learning_rate_schedule, make_optimizer
from causalvision.train.tasks import build_task, register_task
from causalvision.train.trainer import (
    NonFiniteLossError,
    Task,
    TrainResult,
    load_run,
    restore,
    train,
    train_and_evaluate,
)

__all__ = [
    "Checkpointer",
    "Config",
    "DataConfig",
    "NonFiniteLossError",
    "Task",
    "TrainResult",
    "TrainerConfig",
    "apply_overrides",
    "build_task",
    "initialize",
    "learning_rate_schedule",
    "load_config",
    "load_run",
    "make_optimizer",
    "plot_curves",
    "read_metrics",
    "register_task",
    "restore",
    "train",
    "train_and_evaluate",
]
