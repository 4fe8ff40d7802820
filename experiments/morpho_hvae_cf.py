"""Counterfactual fine-tuning of a trained Morpho deep SCM (causal-gen's constrained objective).

Needs a trained deep SCM and a trained attribute predictor:

  causalvision train experiments/morpho_hvae_cf.py --workdir runs/morpho_hvae_cf \\
      --set model.init_from=runs/morpho_hvae --set model.oracle=runs/morpho_oracle

Settings follow causal-gen's `train_cf.py` (REFERENCE §2.2): lr 1e-4, batch 32, EMA 0.999,
damping 100; the ELBO bound is measured from the trained model (`bound_slack` above it).
AdamW's weight decay is left out: it would also shrink the frozen predictor.
"""

from causalvision.train import Config, DataConfig, TrainerConfig


def get_config(preset: str = "default") -> Config:
    config = Config(
        task="deep_scm_cf",
        data=DataConfig(name="morpho_digits", source="generated", size=60_000, eval_size=1_024),
        trainer=TrainerConfig(
            num_steps=20_000,
            batch_size=32,
            optimizer="adam",
            learning_rate=1e-4,
            grad_clip_norm=350.0,
            ema_decay=0.999,
            log_every=100,
            eval_every=2_000,
            eval_batches=8,
            checkpoint_every=2_000,
        ),
        model={"init_from": None, "oracle": None, "damping": 100.0, "bound_slack": 0.0},
    )
    if preset == "default":
        return config
    if preset == "tiny":
        config.data.size, config.data.eval_size = 128, 32
        t = config.trainer
        t.num_steps, t.batch_size = 4, 16
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 2, 4, 4, 1
        t.progress = False
        return config
    raise ValueError(f"preset: expected 'default' or 'tiny', got {preset!r}")
