"""Classifiers of confounded shapes: plain ERM, the deconfounding layers and their baselines.

  causalvision train experiments/deconfounding.py --workdir runs/erm              # plain ERM
  causalvision train experiments/deconfounding.py:shortcut --workdir runs/shortcut
  causalvision train experiments/deconfounding.py:inferred --workdir runs/inferred \\
      --set model.features_from=runs/shortcut
  causalvision train experiments/deconfounding.py:frontdoor --workdir runs/frontdoor
  causalvision train experiments/deconfounding.py:oracle --workdir runs/oracle

Presets: a method of the `deconfounding` task ("erm", "reweight", "backdoor", "frontdoor",
"inferred", "observed"), "oracle" (ERM on unconfounded data) or "shortcut" (ERM stopped after
200 steps); append ",tiny" for a run of seconds (tests). "backdoor" and "inferred" read the
features of a trained run (`model.features_from`): the "shortcut" run's, because a briefly
trained model has learned the easy feature (the background) and not yet the shape, so its
features cluster by the confounder (k-means purity 1.00 against the background, 0.28 against
the shape, on unconfounded data) while a fully trained ERM's mix both (0.54 and 0.50,
`benchmarks/deconfounding.py`). The data: `confounded_shapes`,
4 shapes on 4 background colours that agree 95% of the time in training; the periodic
evaluation reads the anti-correlated split (agreement 0), where a shortcut fails.
`benchmarks/deconfounding.py` trains them all on 3 seeds and scores every test split.
"""

from causalvision.train import Config, DataConfig, TrainerConfig

PRESETS = ("erm", "reweight", "backdoor", "frontdoor", "inferred", "observed", "oracle", "shortcut")


def get_config(preset: str = "default") -> Config:
    method, _, size = preset.partition(",")
    method = "erm" if method == "default" else method
    if method not in PRESETS or size not in ("", "tiny"):
        raise ValueError(f"preset: expected one of {PRESETS}, optionally ',tiny'; got {preset!r}")
    config = Config(
        task="deconfounding",
        data=DataConfig(
            name="confounded_shapes",
            source="generated",
            size=20_000,
            eval_size=1_024,
            options={"num_classes": 4, "agreement": 0.95, "image_size": 32},
        ),
        trainer=TrainerConfig(
            num_steps=1_500,
            batch_size=64,
            optimizer="adam",
            learning_rate=2e-3,
            schedule="warmup_cosine",
            warmup_steps=100,
            grad_clip_norm=1.0,
            log_every=100,
            eval_every=500,
            eval_batches=8,
            checkpoint_every=1_500,
            max_to_keep=1,
        ),
        model={
            "method": "erm" if method in ("oracle", "shortcut") else method,
            "label": "shape",
            "confounder": "background",
            "widths": (16, 32, 64),
            "hidden": 64,
            "eval_options": {"agreement": 0.0},
        },
    )
    if method == "oracle":  # label and background independent in training
        config.data.options["agreement"] = 1 / config.data.options["num_classes"]
    if method == "shortcut":
        t = config.trainer
        t.num_steps, t.warmup_steps, t.eval_every, t.checkpoint_every = 200, 20, 200, 200
    if size == "tiny":
        config.data.size, config.data.eval_size = 128, 64
        config.data.options["image_size"] = 16
        config.model.update(widths=(8, 16), hidden=16)
        t = config.trainer
        t.num_steps, t.batch_size, t.warmup_steps = 4, 16, 0
        t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 2, 4, 4, 1
        t.progress = False
    return config
