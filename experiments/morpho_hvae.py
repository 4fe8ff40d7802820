"""Deep SCM of Morpho digits with causal-gen's conditional HVAE as the image mechanism.

  causalvision train experiments/morpho_hvae.py --workdir runs/morpho_hvae       # full size
  causalvision train experiments/morpho_hvae.py:demo --workdir runs/demo         # make demo
  causalvision train experiments/morpho_hvae.py:tiny --workdir /tmp/hvae         # tests

Full size follows causal-gen's Morpho-MNIST settings (REFERENCE §2.2): widths 16-256, 20
stochastic decoder blocks, z_dim 16, conditional prior, AdamW lr 1e-3 with 100 warm-up steps,
weight decay 0.01, batch 32, EMA 0.999, gradient clipping 350, conditioning dropout of the
digit from the prior with probability 1/3.
"""

from causalvision.train import Config, DataConfig, TrainerConfig


def get_config(preset: str = "default") -> Config:
    config = Config(
        task="deep_scm",
        data=DataConfig(name="morpho_digits", source="generated", size=60_000, eval_size=1_024),
        trainer=TrainerConfig(
            num_steps=200_000,
            batch_size=32,
            optimizer="adamw",
            learning_rate=1e-3,
            schedule="warmup_cosine",
            warmup_steps=100,
            weight_decay=0.01,
            grad_clip_norm=350.0,
            ema_decay=0.999,
            log_every=200,
            eval_every=5_000,
            eval_batches=32,
            checkpoint_every=5_000,
        ),
        # causal-gen's conditioning dropout: the prior misses the digit for a third of the
        # images, so the latents cannot carry it alone and do(digit) redraws the digit.
        model={
            "image_model": "hvae",
            "image": {"conditional_prior": True},
            "prior_dropout": {"digit": 1 / 3},
        },
    )
    if preset == "default":
        return config
    if preset == "demo":  # `make demo`: about 6 minutes of training on 2 CPU cores
        config.data.size, config.data.eval_size = 8_192, 256
        config.model["image"].update(
            widths=(16, 32, 64, 128),
            encoder="32b1d2,16b1d2,8b1d8,1b1",
            decoder="1b1,8b1,16b1,32b1",
            z_dim=8,
        )
        # After 1,500 steps the latents still carry the digit with or without conditioning
        # dropout (digit accuracy under do(digit) 0.0 either way): it pays only in long runs.
        config.model.pop("prior_dropout")
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 1_500, 32, 50
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 50, 500, 500, 4
        return config
    if preset == "tiny":  # seconds, for tests
        config.data.size, config.data.eval_size = 128, 32
        config.model["image"].update(
            widths=(8, 16), encoder="32b1d32,1b1", decoder="1b1,32b1", z_dim=4
        )
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 6, 16, 2
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 3, 6, 3, 1
        t.progress = False
        return config
    raise ValueError(f"preset: expected 'default', 'demo' or 'tiny', got {preset!r}")
