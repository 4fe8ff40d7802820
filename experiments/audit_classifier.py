"""Two digit classifiers for a worked counterfactual audit (issue 18): one trained on Morpho
digits whose intensity is confounded with the label, one on the ordinary dataset.

"confounded" trains on `MorphoDigits(digit_intensity=DIGIT_INTENSITY)`: intensity's logit is
shifted up by δ for digits >= 5 and down by δ below, so in training P(intensity > 159.5 | d)
is ≈ 0.996 for d >= 5 and ≈ 0.024 below; "unconfounded" trains on `MorphoDigits()`. Same
architecture, data size and budget; the digit is the only target (`model.targets`). The
audit (`experiments/run_audit.py`) then asks each, on unconfounded held-out digits, whether
do(intensity) changes its answer. The "_tiny" presets are the test suite's.

  causalvision train experiments/audit_classifier.py:confounded --workdir runs/audit/confounded
  causalvision train experiments/audit_classifier.py:unconfounded_tiny --workdir /tmp/unconf
"""

from causalvision.train import Config, DataConfig, TrainerConfig

#: δ, the logit shift of intensity by digit group in the confounded training set.
DIGIT_INTENSITY = 3.0
PRESETS = ("confounded", "unconfounded", "confounded_tiny", "unconfounded_tiny")


def get_config(preset: str = "confounded") -> Config:
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {PRESETS}, got {preset!r}")
    options = {"digit_intensity": DIGIT_INTENSITY} if preset.startswith("confounded") else {}
    config = Config(
        task="attribute_predictor",
        data=DataConfig(
            name="morpho_digits", source="generated", size=16_384, eval_size=512, options=options
        ),
        trainer=TrainerConfig(
            num_steps=2_000,
            batch_size=64,
            learning_rate=2e-3,
            schedule="warmup_cosine",
            warmup_steps=100,
            grad_clip_norm=1.0,
            ema_decay=0.999,
            log_every=100,
            eval_every=1_000,
            checkpoint_every=1_000,
        ),
        model={"widths": (32, 64), "hidden": 128, "targets": ("digit",)},
    )
    if preset.endswith("_tiny"):
        # A minute in all for the test suite. The encoder's GroupNorm makes it nearly blind to
        # a global brightness scale, so reading intensity takes a few hundred steps to learn.
        config.data.size, config.data.eval_size = 1_024, 64
        config.model = {"widths": (16, 32), "hidden": 64, "targets": ("digit",)}
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps, t.ema_decay = 600, 64, 30, None
        t.log_every, t.eval_every, t.checkpoint_every = 100, 600, 600
        t.progress = False
    return config
