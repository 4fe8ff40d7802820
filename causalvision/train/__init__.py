"""One generic trainer for Flax NNX models, from one CPU to a multi-host pod.

`train(task, trainer_config, workdir)` trains any `Task` (model + loss + data);
`train_and_evaluate(config, workdir)` does the same for a named task from an experiment
config (`load_config("experiments/x.py:tiny")`). Runs resume from their newest verified
checkpoint, and one run at a time holds a workdir.
Tasks are found by name (`TASKS`) or module path; see `causalvision.train.tasks`.
"""

from causalvision.train.checkpoint import Checkpointer, CheckpointSaveError
from causalvision.train.config import (
    CONFIG_VERSION,
    Config,
    DataConfig,
    TrainerConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    upgrade_config,
)
from causalvision.train.distributed import initialize
from causalvision.train.metrics_io import plot_curves, read_metrics
from causalvision.train.optim import learning_rate_schedule, make_optimizer
from causalvision.train.tasks import TASKS, TaskSpec, build_model, build_task, get_task
from causalvision.train.trainer import (
    NonFiniteLossError,
    Task,
    TrainResult,
    load_run,
    prng_streams,
    restore,
    train,
    train_and_evaluate,
)
from causalvision.train.workdir import WorkdirBusyError

__all__ = [
    "CONFIG_VERSION",
    "TASKS",
    "CheckpointSaveError",
    "Checkpointer",
    "Config",
    "DataConfig",
    "NonFiniteLossError",
    "Task",
    "TaskSpec",
    "TrainResult",
    "TrainerConfig",
    "WorkdirBusyError",
    "apply_overrides",
    "build_model",
    "build_task",
    "config_from_dict",
    "config_to_dict",
    "get_task",
    "initialize",
    "learning_rate_schedule",
    "load_config",
    "load_run",
    "make_optimizer",
    "plot_curves",
    "prng_streams",
    "read_metrics",
    "restore",
    "train",
    "train_and_evaluate",
    "upgrade_config",
]
