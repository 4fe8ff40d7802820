"""Slot Attention object discovery on `sprite_scenes` (issue 15; REFERENCE §6.1).

  causalvision train experiments/slots.py --workdir runs/slots            # the paper's sizes
  causalvision train experiments/slots.py:cpu --workdir runs/slots_cpu    # ~20 minutes, 2 cores
  causalvision evaluate --workdir runs/slots_cpu                          # FG-ARI, slots.png

Default: 64x64 scenes of 2-6 objects, 7 slots of 64, 3 iterations, the CLEVR autoencoder's
widths (4 convolutions of 64, 5x5), Adam 4e-4 with 10k warm-up steps, batch 64, MSE on
images in [-1, 1]. "cpu" is 32x32 with 2-4 objects, half the widths, a stride-2 first
encoder layer and BO-QSA's learned slot queries (Jia et al. 2023: `initializer="learned"`,
implicit differentiation with the straight-through initialiser gradient), so that a
20-minute run on two cores gets somewhere; "tiny" is for tests.
"""

from causalvision.train import Config, DataConfig, TrainerConfig


def get_config(preset: str = "default") -> Config:
    config = Config(
        task="slot_autoencoder",
        data=DataConfig(
            name="sprite_scenes",
            source="generated",
            size=100_000,
            eval_size=512,
            options={"image_size": 64, "min_objects": 2, "max_objects": 6},
        ),
        trainer=TrainerConfig(
            num_steps=500_000,
            batch_size=64,
            optimizer="adam",
            learning_rate=4e-4,
            schedule="warmup_cosine",
            warmup_steps=10_000,
            grad_clip_norm=None,
            log_every=500,
            eval_every=10_000,
            eval_batches=4,
            checkpoint_every=10_000,
        ),
        model={"autoencoder": {"num_slots": 7, "slot_size": 64, "num_iterations": 3}},
    )
    if preset == "default":
        return config
    if preset == "cpu":
        config.data.size, config.data.eval_size = 20_000, 256
        config.data.options = {"image_size": 32, "min_objects": 2, "max_objects": 4}
        config.model["autoencoder"].update(
            num_slots=5,
            slot_size=32,
            mlp_hidden=64,
            encoder_widths=(32, 32, 32, 32),
            encoder_strides=(2, 1, 1, 1),
            decoder_widths=(32, 32, 32),
            decoder_initial=8,
            # BO-QSA's learned queries: distinct slots from the first step leave the
            # background-only plateau in hundreds of steps, not thousands.
            initializer="learned",
            implicit_grad=True,
            straight_through_init=True,
        )
        t = config.trainer
        # 2,500 steps: about 20 minutes on 2 cores (2.3 steps/s).
        t.num_steps, t.batch_size, t.learning_rate, t.warmup_steps = 2_500, 32, 4e-4, 200
        t.log_every, t.eval_every, t.checkpoint_every = 50, 500, 500
        return config
    if preset == "tiny":  # seconds, for tests
        config.data.size, config.data.eval_size = 16, 8
        config.data.options = {"image_size": 32, "min_objects": 1, "max_objects": 2}
        config.model["autoencoder"].update(
            num_slots=3,
            slot_size=8,
            mlp_hidden=8,
            encoder_widths=(4, 4),
            encoder_strides=(2, 1),
            encoder_kernel=3,
            decoder_widths=(4, 4),
            decoder_initial=8,
            decoder_kernel=3,
            num_iterations=2,
        )
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 2, 4, 0
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 1, 2, 2, 1
        t.progress = False
        return config
    raise ValueError(f"preset: expected 'default', 'cpu' or 'tiny', got {preset!r}")
