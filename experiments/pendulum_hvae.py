"""Deep SCM of the CausalVAE pendulum: attribute flows plus a conditional HVAE for the image.

  causalvision train experiments/pendulum_hvae.py --workdir runs/pendulum_hvae      # full size
  causalvision train experiments/pendulum_hvae.py:demo --workdir runs/pendulum      # minutes, CPU
  causalvision train experiments/pendulum_hvae.py:tiny --workdir /tmp/pendulum      # tests
  causalvision evaluate --workdir runs/pendulum                                     # vs the truth

The graph comes from the dataset (angle and light are roots, shadow length and position
their deterministic children, the image depends on all four), so this file holds settings
only. Full size: 64x64 RGB, a five-resolution HVAE of causal-gen's shape (REFERENCE §2.2),
AdamW 1e-3 with warm-up, batch 64 (CausalVAE's), EMA 0.999.
"""

from causalvision.train import Config, DataConfig, TrainerConfig


def get_config(preset: str = "default") -> Config:
    config = Config(
        task="deep_scm",
        data=DataConfig(name="pendulum", size=60_000, eval_size=1_024, options={"image_size": 64}),
        trainer=TrainerConfig(
            num_steps=100_000,
            batch_size=64,
            optimizer="adamw",
            learning_rate=1e-3,
            schedule="warmup_cosine",
            warmup_steps=200,
            weight_decay=0.01,
            grad_clip_norm=350.0,
            ema_decay=0.999,
            log_every=200,
            eval_every=5_000,
            eval_batches=16,
            checkpoint_every=5_000,
        ),
        model={
            "image_model": "hvae",
            "image": {
                "widths": (16, 32, 64, 128, 256),
                "encoder": "64b2d2,32b2d2,16b2d2,8b2d8,1b2",
                "decoder": "1b2,8b2,16b2,32b2,64b2",
                "z_dim": 16,
            },
        },
    )
    if preset == "default":
        return config
    if preset == "demo":  # 32x32 and the Morpho demo's budget: minutes on 2 CPU cores
        config.data.size, config.data.eval_size = 8_192, 256
        config.data.options = {"image_size": 32}
        config.model["image"] = {
            "widths": (16, 32, 64, 128),
            "encoder": "32b1d2,16b1d2,8b1d8,1b1",
            "decoder": "1b1,8b1,16b1,32b1",
            "z_dim": 8,
        }
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 1_500, 32, 50
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 50, 500, 500, 4
        return config
    if preset == "tiny":  # seconds, for tests
        config.data.size, config.data.eval_size = 128, 32
        config.data.options = {"image_size": 16}  # the renderer's smallest
        config.model["image"] = {
            "widths": (8, 16),
            "encoder": "16b1d16,1b1",
            "decoder": "1b1,16b1",
            "z_dim": 4,
        }
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 6, 16, 2
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 3, 6, 3, 1
        t.progress = False
        return config
    raise ValueError(f"preset: expected 'default', 'demo' or 'tiny', got {preset!r}")
