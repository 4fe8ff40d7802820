# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Compose an SCM, intervene, ask a counterfactual, identify, estimate
#
# Two small models carry the whole tutorial:
#
# 1. **Smoking, tar and cancer** (discrete), with a hidden genotype that confounds smoking and
#    cancer: the textbook case for front-door adjustment.
# 2. **Homework and exam scores** (continuous), from Pearl, Glymour & Jewell's *Primer*
#    §4.2.3: counterfactuals solved by hand, and mediation.
#
# Every query is jit-compiled and batched over units.

# %% tags=["parameters"]
num_samples = 100_000  # units per Monte Carlo query
fit_steps = 1_000  # optimisation steps when learning parameters
seed = 0

# %%
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

import causalvision
from causalvision.scm import (
    SCM,
    Categorical,
    LinearGaussian,
    Root,
    estimate_effect,
    from_world,
)

causalvision.enable_compilation_cache()  # a program compiled once loads from disk later

keys = iter(jax.random.split(jax.random.key(seed), 16))

# %% [markdown]
# ## 1. Compose
# A mechanism per node; the graph follows from the parents. `genotype` is declared latent:
# it exists in the model but never in observed data.

# %%
smoking_scm = SCM(
    {
        "genotype": Categorical([], [0.7, 0.3]),
        "smoking": Categorical(["genotype"], [[0.8, 0.2], [0.3, 0.7]]),
        "tar": Categorical(["smoking"], [[0.9, 0.1], [0.15, 0.85]]),
        "cancer": Categorical(
            ["tar", "genotype"],
            # P(cancer | tar, genotype): rows tar = 0/1, columns genotype = 0/1.
            [[[0.95, 0.05], [0.7, 0.3]], [[0.8, 0.2], [0.5, 0.5]]],
        ),
    },
    latent=["genotype"],
)
print(smoking_scm)
print(smoking_scm.graph)

# %% [markdown]
# ## 2. Sample and intervene
# Observational `P(cancer | smoking)` mixes the effect of smoking with that of the genotype;
# `do(smoking)` cuts the genotype's arrow into smoking.

# %%
observed = smoking_scm.sample(next(keys), num_samples)
smokers = observed["smoking"] == 1
p_cancer_given_smoking = float(observed["cancer"][smokers].mean())
p_cancer_given_no_smoking = float(observed["cancer"][~smokers].mean())
p_cancer_do_smoking = float(
    smoking_scm.sample(next(keys), num_samples, do={"smoking": 1})["cancer"].mean()
)
p_cancer_do_no_smoking = float(
    smoking_scm.sample(next(keys), num_samples, do={"smoking": 0})["cancer"].mean()
)
print(f"P(cancer | smoking=1)     = {p_cancer_given_smoking:.3f}")
print(f"P(cancer | smoking=0)     = {p_cancer_given_no_smoking:.3f}")
print(f"P(cancer | do(smoking=1)) = {p_cancer_do_smoking:.3f}")
print(f"P(cancer | do(smoking=0)) = {p_cancer_do_no_smoking:.3f}")
true_ate = smoking_scm.ate(next(keys), "smoking", "cancer", 1, 0, num_samples=num_samples)
print("true ATE of smoking on cancer:", true_ate)

# %% [markdown]
# ## 3. Ask a counterfactual
# Take the smokers who got cancer. Had they not smoked, how many would still have got it?
# Categorical nodes carry Gumbel-max noise, so the answer is a posterior over each unit's
# noise: pass a key and, for several draws per unit, `num_samples`.

# %%
smokers_with_cancer = jnp.flatnonzero((observed["smoking"] == 1) & (observed["cancer"] == 1))
units = {name: value[smokers_with_cancer[:2_000]] for name, value in observed.items()}
cf = smoking_scm.counterfactual(units, do={"smoking": 0}, key=next(keys), num_samples=8)
p_still = float(cf["cancer"].mean())
print(f"P(cancer would still occur without smoking | smoked, got cancer) = {p_still:.3f}")
print(f"probability that smoking was necessary = {1 - p_still:.3f}")

# %% [markdown]
# ## 4. Identify
# Which adjustment answers `P(cancer | do(smoking))` from observed data? The genotype is
# latent, so no back-door set exists; tar satisfies the front-door criterion.

# %%
identification = smoking_scm.graph.identify("smoking", "cancer")
print("strategy:", identification.strategy, "| set:", sorted(identification.adjustment_set))
print(identification.estimand)

# %% [markdown]
# ## 5. Estimate from data
# Drop the latent column, as a study would never see it, and estimate the effect by the
# front-door formula, exactly from counts, with a bootstrap standard error.

# %%
study = {name: value for name, value in observed.items() if name != "genotype"}
estimate = estimate_effect(study, smoking_scm.graph, "smoking", "cancer", 1, 0, key=next(keys))
naive = p_cancer_given_smoking - p_cancer_given_no_smoking
print("front-door estimate of the ATE:", estimate)
print(f"naive difference of conditional means: {naive:.3f}")
print(f"truth from the model:                  {float(true_ate.value):.3f}")

# %% [markdown]
# ## 6. Continuous counterfactuals, solved by hand in the Primer
# X: time in an after-school programme, H: homework, Y: exam score.
# Joe has X = 0.5, H = 1, Y = 1.5. Had he doubled his homework, his score would be
# 0.7·0.5 + 0.4·2 + U_Y with U_Y = 0.75, i.e. 1.90.

# %%
primer = SCM(
    {
        "X": Root(dist.Normal(0.0, 1.0)),
        "H": LinearGaussian(["X"], weights=[0.5]),
        "Y": LinearGaussian(["X", "H"], weights=[0.7, 0.4]),
    }
)
joe = {"X": jnp.array([0.5]), "H": jnp.array([1.0]), "Y": jnp.array([1.5])}
joe_cf = primer.counterfactual(joe, do={"H": 2.0})
print(f"Joe's score had he doubled his homework: {float(joe_cf['Y'][0]):.2f}")
shifted = primer.counterfactual(joe, do={"X": lambda x: x + 1.0})
print(f"...had he spent one more unit of time in the programme: {float(shifted['Y'][0]):.2f}")

# %% [markdown]
# ## 7. Mediation: natural direct and indirect effects
# The effect of the programme X on the score Y splits into the direct path (0.7) and the
# path through homework (0.5 × 0.4 = 0.2). `nde` holds H at the value it would take without
# the programme: a nested counterfactual, also available through `multi_world`.

# %%
nde = primer.nde(next(keys), "X", "Y", 1.0, 0.0, num_samples=num_samples)
nie = primer.nie(next(keys), "X", "Y", 1.0, 0.0, num_samples=num_samples)
te = primer.te(next(keys), "X", "Y", 1.0, 0.0, num_samples=num_samples)
print(f"NDE = {float(nde.value):.3f}  NIE = {float(nie.value):.3f}  TE = {float(te.value):.3f}")
worlds = primer.multi_world(
    {"control": {"X": 0.0}, "direct": {"X": 1.0, "H": from_world("control", "H")}},
    key=next(keys),
    num_samples=5,
)
print("Y in the direct world minus control:", worlds["direct"]["Y"] - worlds["control"]["Y"])

# %% [markdown]
# ## 8. Back-door estimation and learning parameters from data
# X confounds H and Y; `identify` finds the back-door set {X}, and a linear regression
# recovers the effect of homework (0.4). `fit` learns every mechanism's parameters by
# maximum likelihood through the SCM's numpyro model.

# %%
scores = primer.sample(next(keys), num_samples)
print(primer.graph.identify("H", "Y"))
print(
    "back-door estimate of the effect of H on Y:",
    estimate_effect(scores, primer.graph, "H", "Y", 1.0, 0.0, key=next(keys)),
)
blank = SCM(
    {
        "X": Root(dist.Normal(0.0, 2.0)),
        "H": LinearGaussian(["X"], weights=[0.0], scale=2.0),
        "Y": LinearGaussian(["X", "H"], weights=[0.0, 0.0], scale=2.0),
    }
)
fitted = blank.fit(scores, num_steps=fit_steps, key=next(keys), progress_bar=True).scm
print("learned weights of Y:", fitted.mechanisms["Y"].weights, "(truth [0.7, 0.4])")
