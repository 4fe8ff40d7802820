"""Captioning captioned scenes, then See-or-Guess's counterfactual fine-tuning (issue 17;
REFERENCE §5.1).

  causalvision train experiments/captioning.py:cpu --workdir runs/cap               # baseline
  causalvision train experiments/captioning.py:cpu --workdir runs/cap_te \\
      --set model.effect=total --set model.init_from=runs/cap \\
      --set trainer.num_steps=1000 --set trainer.learning_rate=3e-5                 # + TE
  (+ NDE: the same with model.effect=direct)

The scenes' theme confounds which shapes co-occur (a star brings a triangle 90% of the
time), so a captioner can learn to name a triangle it does not see. The baseline trains the
language-model loss; the fine-tuning runs start from it and mix in L_TE or L_NDE with
α = 0.999 (See-or-Guess), for a fraction of the baseline's steps (See-or-Guess: 2 epochs
against 5) at a tenth of its learning rate, both set on the command line as above
(`benchmarks/cf_captioning.py` uses a third of the steps and a tenth of the rate).

Default: 64x64 scenes of 2-4 objects, a 3-layer 256-wide decoder. "cpu": 32x32 scenes of
2-3 objects and a small model, minutes on 2 cores. "tiny": tests.
"""

from causalvision.train import Config, DataConfig, TrainerConfig


def get_config(preset: str = "default") -> Config:
    config = Config(
        task="captioning",
        data=DataConfig(
            name="captioned_scenes",
            source="generated",
            size=50_000,
            eval_size=1_024,
            options={"image_size": 64, "max_objects": 4},
        ),
        trainer=TrainerConfig(
            num_steps=20_000,
            batch_size=64,
            optimizer="adamw",
            learning_rate=3e-4,
            schedule="warmup_cosine",
            warmup_steps=500,
            weight_decay=0.05,
            grad_clip_norm=1.0,
            log_every=200,
            eval_every=2_000,
            eval_batches=8,
            checkpoint_every=2_000,
        ),
        model={
            "captioner": {
                "max_len": 24,
                "encoder_widths": (64, 128, 256),
                "width": 256,
                "num_heads": 4,
                "num_layers": 3,
            }
        },
    )
    if preset == "default":
        return config
    if preset == "cpu":
        config.data.size, config.data.eval_size = 8_192, 512
        config.data.options = {"image_size": 32, "max_objects": 3}
        config.model["captioner"] = {
            "max_len": 20,
            "encoder_widths": (32, 64, 64),
            "width": 64,
            "num_heads": 4,
            "num_layers": 2,
            "mlp_ratio": 2,
        }
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 3_000, 32, 100
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 100, 1_000, 1_000, 4
        return config
    if preset == "tiny":  # seconds, for tests
        config.data.size, config.data.eval_size = 32, 16
        config.data.options = {"image_size": 32, "max_objects": 2}
        config.model["captioner"] = {
            "max_len": 12,
            "encoder_widths": (8, 16),
            "width": 16,
            "num_heads": 2,
            "num_layers": 1,
            "mlp_ratio": 2,
        }
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 4, 8, 1
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 2, 4, 4, 1
        t.progress = False
        return config
    raise ValueError(f"preset: expected 'default', 'cpu' or 'tiny', got {preset!r}")
