"""Deep SCMs whose image mechanism is a diffusion autoencoder (CausalDiffAE / Diff-SCM,
REFERENCE §2.3-2.4), on Morpho digits and the pendulum.

  causalvision train experiments/diffusion_scm.py:morpho --workdir runs/morpho_diffusion
  causalvision train experiments/diffusion_scm.py:pendulum --workdir runs/pendulum_diffusion
  causalvision train experiments/diffusion_scm.py:pendulum_demo --workdir runs/pd   # CPU
  causalvision evaluate --workdir runs/pd                   # counterfactuals vs the truth

The attribute mechanisms are the same flows as the HVAE experiments'; the image is
`DiffusionAutoEncoder` ("diffusion" image model) with CausalDiffAE's causal encoder: one latent
block per continuous attribute, a latent SCM over the blocks whose edges come from the
dataset's graph, a label-aligned prior with KL annealing, and a UNet ε_θ(x_t, t, [digit;
blocks; free latent]) that reads the causal attributes only through their blocks.
Counterfactuals abduct by DDIM inversion over 50 steps. `--set model.labelled_fraction=0.1`
trains semi-supervised (10% of the images with attributes); `model.image.causal_variables=()`
turns the causal encoder off (the UNet then reads every parent directly beside a free z).

Full size follows CausalDiffAE's training (lr 1e-4, 1000 diffusion steps, conditioning
dropout) with a 64-wide UNet (CausalDiffAE: 128) on 32x32 Morpho digits and 64x64 pendulum
images. "*_demo" presets are minutes on 2 CPU cores; "*_tiny" seconds, for tests.
"""

from causalvision.train import Config, DataConfig, TrainerConfig

DATA = {
    "morpho": {"name": "morpho_digits", "source": "generated"},
    "pendulum": {"name": "pendulum", "options": {"image_size": 64}},
}
CAUSAL_VARIABLES = {
    "morpho": ("thickness", "intensity"),
    "pendulum": ("angle", "light", "shadow_length", "shadow_position"),
}
FULL = {
    "morpho": {"channel_mult": (1, 2, 2), "attention_resolutions": (16, 8)},
    "pendulum": {"channel_mult": (1, 2, 2, 2), "attention_resolutions": (16, 8)},
}
PRESETS = tuple(f"{d}{s}" for d in DATA for s in ("", "_demo", "_tiny"))


def get_config(preset: str = "morpho") -> Config:
    dataset, _, size = preset.partition("_")
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {PRESETS}, got {preset!r}")
    config = Config(
        task="deep_scm",
        data=DataConfig(**DATA[dataset], size=60_000, eval_size=1_024),
        trainer=TrainerConfig(
            num_steps=200_000,
            batch_size=32,
            optimizer="adam",
            learning_rate=1e-4,
            schedule="warmup_cosine",
            warmup_steps=1_000,
            ema_decay=0.9999,
            log_every=200,
            eval_every=10_000,
            eval_batches=8,
            checkpoint_every=10_000,
        ),
        model={
            "image_model": "diffusion",
            "image": {
                "causal_variables": CAUSAL_VARIABLES[dataset],
                "block_size": 16,
                "latent_size": 32,
                "kl_anneal_steps": 50_000,
                "base_width": 64,
                "num_res_blocks": 2,
                **FULL[dataset],
                "num_train_steps": 1_000,
                "cond_drop_prob": 0.1,
            },
        },
    )
    t = config.trainer
    if size == "demo":  # 32x32, a 16-wide UNet: minutes on 2 CPU cores
        config.data.size, config.data.eval_size = 8_192, 256
        if dataset == "pendulum":
            config.data.options = {"image_size": 32}
        config.model["image"].update(
            block_size=4,
            latent_size=8,
            kl_anneal_steps=1_000,
            base_width=16,
            channel_mult=(1, 2, 2),
            num_res_blocks=1,
            attention_resolutions=(8,),
            num_groups=8,
        )
        t.num_steps, t.learning_rate, t.warmup_steps, t.ema_decay = 3_000, 3e-4, 100, 0.999
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 50, 1_000, 1_000, 4
    if size == "tiny":  # seconds, for tests
        config.data.size, config.data.eval_size = 64, 16
        side = 32  # Morpho's padded digits
        if dataset == "pendulum":
            side = 16  # the renderer's smallest: the test compiles a quarter of the pixels
            config.data.options = {"image_size": side}
        config.model["image"] = {
            "causal_variables": CAUSAL_VARIABLES[dataset],
            "block_size": 2,
            "kl_anneal_steps": 2,
            "latent_size": 4,
            "encoder_widths": (4, 8),
            "base_width": 4,
            "channel_mult": (1, 2),
            "num_res_blocks": 1,
            "attention_resolutions": (side // 2,),
            "num_groups": 1,
            "num_train_steps": 100,
            "ddim_steps": 5,
        }
        t.num_steps, t.batch_size, t.warmup_steps, t.ema_decay = 4, 8, 1, None
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 2, 4, 4, 1
        t.progress = False
    return config
