"""Pseudo-oracle for Morpho digits: a CNN that reads digit, thickness and intensity off images.

Its accuracy bounds how well "effectiveness" of a counterfactual can be measured.

  causalvision train experiments/morpho_oracle.py --workdir runs/morpho_oracle
  causalvision train experiments/morpho_oracle.py:tiny --workdir /tmp/oracle
"""

from causalvision.train import Config, DataConfig, TrainerConfig


def get_config(preset: str = "default") -> Config:
    config = Config(
        task="attribute_predictor",
        data=DataConfig(name="morpho_digits", source="generated", size=60_000, eval_size=1_024),
        trainer=TrainerConfig(
            num_steps=5_000,
            batch_size=128,
            learning_rate=2e-3,
            schedule="warmup_cosine",
            warmup_steps=200,
            grad_clip_norm=1.0,
            ema_decay=0.999,
            log_every=100,
            eval_every=1_000,
            checkpoint_every=1_000,
        ),
        model={"widths": (32, 64, 128), "hidden": 128},
    )
    if preset == "default":
        return config
    if preset == "demo":  # under a minute on 2 CPU cores, for `make demo`
        config.data.size, config.data.eval_size = 4_096, 256
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 600, 64, 50
        t.log_every, t.eval_every, t.checkpoint_every = 50, 300, 300
        return config
    if preset == "tiny":
        config.data.size, config.data.eval_size = 256, 64
        config.model = {"widths": (8, 16), "hidden": 16}
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 20, 16, 2
        t.log_every, t.eval_every, t.checkpoint_every = 5, 10, 10
        t.progress = False
        return config
    raise ValueError(f"preset: expected 'default', 'demo' or 'tiny', got {preset!r}")
