"""The SCM engine against exact answers: hand-solved counterfactuals, brute-force noise
enumeration, the truncated factorisation and the path-product formula."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from flax import nnx

from causalvision.scm import (
    SCM,
    AdditiveNoise,
    Categorical,
    Inference,
    LinearGaussian,
    NumpyroMechanism,
    Root,
    from_world,
)


def primer_scm() -> SCM:
    """Pearl, Glymour & Jewell, Causal Inference in Statistics: A Primer, §4.2.3.

    X: time in the after-school programme, H: homework, Y: exam score;
    X = U_X, H = 0.5 X + U_H, Y = 0.7 X + 0.4 H + U_Y.
    """
    return SCM(
        {
            "X": Root(dist.Normal(0.0, 1.0)),
            "H": LinearGaussian(["X"], weights=[0.5]),
            "Y": LinearGaussian(["X", "H"], weights=[0.7, 0.4]),
        }
    )


def test_primer_homework_counterfactual_is_1_90():
    # Joe: X = 0.5, H = 1, Y = 1.5. Had he doubled his homework (H = 2), Y would be 1.90.
    joe = {"X": jnp.array([0.5]), "H": jnp.array([1.0]), "Y": jnp.array([1.5])}
    cf = primer_scm().counterfactual(joe, do={"H": 2.0})
    np.testing.assert_allclose(cf["Y"], [1.90], atol=1e-6)
    np.testing.assert_allclose(cf["X"], [0.5])  # not a descendant of H: unchanged
    noise = primer_scm().abduct(joe)
    np.testing.assert_allclose([noise["X"][0], noise["H"][0], noise["Y"][0]], [0.5, 0.75, 0.75])


def test_counterfactual_with_per_unit_and_shift_interventions():
    scm = primer_scm()
    units = scm.sample(jax.random.key(0), 64)
    per_unit = scm.counterfactual(units, do={"X": units["X"] + 1.0})
    shifted = scm.counterfactual(units, do={"X": lambda x: x + 1.0})
    # dY/dX along both paths: 0.7 + 0.5 * 0.4 = 0.9, exactly, unit by unit.
    np.testing.assert_allclose(per_unit["Y"] - units["Y"], 0.9, atol=1e-5)
    np.testing.assert_allclose(shifted["Y"], per_unit["Y"], atol=1e-6)
    # The null intervention reproduces the factual world.
    null = scm.counterfactual(units, do={"H": units["H"]})
    np.testing.assert_allclose(null["Y"], units["Y"], atol=1e-5)


def test_interventional_moments_match_truncated_factorisation():
    scm = primer_scm()
    draws = scm.sample(jax.random.key(1), 200_000, do={"H": 3.0})
    # do(H=3): Y = 0.7 X + 1.2 + U_Y, so E[Y] = 1.2 and Var[Y] = 0.49 + 1.
    assert float(draws["H"].std()) == 0.0
    np.testing.assert_allclose(draws["Y"].mean(), 1.2, atol=0.01)
    np.testing.assert_allclose(draws["Y"].var(), 1.49, rtol=0.02)


def discrete_scm() -> SCM:
    return SCM(
        {
            "Z": Categorical([], [0.4, 0.6]),
            "X": Categorical(["Z"], [[0.8, 0.2], [0.3, 0.7]]),
            "Y": Categorical(["X", "Z"], [[[0.9, 0.1], [0.6, 0.4]], [[0.5, 0.5], [0.2, 0.8]]]),
        }
    )


def test_discrete_interventional_distribution_matches_truncated_factorisation():
    scm = discrete_scm()
    draws = scm.sample(jax.random.key(2), 400_000, do={"X": 1})
    # P(Y=1 | do(X=1)) = Σ_z P(Y=1 | X=1, z) P(z) = 0.5 * 0.4 + 0.8 * 0.6 = 0.68.
    p = float(draws["Y"].mean())
    assert abs(p - 0.68) < 4 * np.sqrt(0.68 * 0.32 / 400_000)
    observational = scm.sample(jax.random.key(3), 400_000)
    conditional = float(observational["Y"][observational["X"] == 1].mean())
    assert abs(conditional - 0.68) > 0.03  # confounding by Z makes P(Y | X=1) differ


def test_binary_gumbel_counterfactual_matches_closed_form():
    # For a binary Gumbel-max node the shared noise is a logistic threshold, so
    # P(B'=1 | B=1, A=1, do(A=0)) = P(B=1 | A=0) / P(B=1 | A=1) = 0.1 / 0.8 and
    # P(B'=1 | B=0, A=1, do(A=0)) = 0.
    scm = SCM({"A": Categorical([], [0.5, 0.5]), "B": Categorical(["A"], [[0.9, 0.1], [0.2, 0.8]])})
    n = 100_000
    factual = {"A": jnp.ones(n, jnp.int32), "B": jnp.ones(n, jnp.int32)}
    cf = scm.counterfactual(factual, {"A": 0}, jax.random.key(4))
    assert abs(float(cf["B"].mean()) - 0.125) < 4 * np.sqrt(0.125 * 0.875 / n)
    factual["B"] = jnp.zeros(n, jnp.int32)
    assert int(scm.counterfactual(factual, {"A": 0}, jax.random.key(5))["B"].sum()) == 0


def test_three_way_gumbel_counterfactual_matches_brute_force_over_the_noise():
    table = [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]
    scm = SCM({"A": Categorical([], [0.5, 0.5]), "B": Categorical(["A"], table)})
    logits = jnp.log(jnp.asarray(table))
    # Brute force: draw the noise from its prior, keep draws consistent with B=1 under A=0,
    # and push each kept draw through A=1.
    g = jax.random.gumbel(jax.random.key(6), (2_000_000, 3))
    kept = g[jnp.argmax(logits[0][None] + g, axis=-1) == 1]
    brute = np.bincount(np.asarray(jnp.argmax(logits[1][None] + kept, axis=-1)), minlength=3)
    brute = brute / brute.sum()
    n = 200_000
    factual = {"A": jnp.zeros(n, jnp.int32), "B": jnp.ones(n, jnp.int32)}
    cf = scm.counterfactual(factual, {"A": 1}, jax.random.key(7))["B"]
    ours = np.bincount(np.asarray(cf), minlength=3) / n
    np.testing.assert_allclose(ours, brute, atol=0.01)
    assert ours[1] > 0.15  # stability: staying at the observed category is favoured


def test_gumbel_counterfactual_with_zero_probability_categories_matches_brute_force():
    # Row A=0 forbids B=0 and row A=1 forbids B=1: the abducted noise of a forbidden category
    # keeps its prior (not -inf - -inf = NaN, which argmax would pick under the other row).
    table = [[0.0, 0.7, 0.3], [0.5, 0.0, 0.5]]
    scm = SCM({"A": Categorical([], [0.5, 0.5]), "B": Categorical(["A"], table)})
    with np.errstate(divide="ignore"):
        logits = jnp.log(jnp.asarray(table))
    g = jax.random.gumbel(jax.random.key(16), (2_000_000, 3))
    kept = g[jnp.argmax(logits[0][None] + g, axis=-1) == 2]
    brute = np.bincount(np.asarray(jnp.argmax(logits[1][None] + kept, axis=-1)), minlength=3)
    n = 200_000
    factual = {"A": jnp.zeros(n, jnp.int32), "B": jnp.full(n, 2, jnp.int32)}
    cf = np.asarray(scm.counterfactual(factual, {"A": 1}, jax.random.key(17))["B"])
    assert (cf != 1).all()  # never a category of probability 0 under A=1
    np.testing.assert_allclose(np.bincount(cf, minlength=3) / n, brute / brute.sum(), atol=0.01)
    # A deterministic child follows its parent exactly.
    copy = SCM({"A": Categorical([], [0.5, 0.5]), "B": Categorical(["A"], [[1, 0], [0, 1]])})
    units = copy.sample(jax.random.key(18), 1_000)
    cf = copy.counterfactual(units, {"A": 1 - units["A"]}, jax.random.key(19))
    np.testing.assert_array_equal(cf["B"], 1 - units["A"])


def test_counterfactual_posterior_draws_add_a_leading_axis():
    scm = discrete_scm()
    units = scm.sample(jax.random.key(8), 10)
    cf = scm.counterfactual(units, {"X": 1}, jax.random.key(9), num_samples=7)
    assert cf["Y"].shape == (7, 10)
    np.testing.assert_array_equal(cf["Z"], jnp.broadcast_to(units["Z"], (7, 10)))


def mediation_scm(interaction: float = 0.0) -> SCM:
    # X -> M (a = 0.8), M -> Y (b = 1.5), X -> Y (c = 0.6), optional X*M interaction.
    def outcome(inputs):
        x, m = inputs[:, 0], inputs[:, 1]
        return 0.6 * x + 1.5 * m + interaction * x * m

    return SCM(
        {
            "X": Root(dist.Normal(0.0, 1.0)),
            "M": LinearGaussian(["X"], weights=[0.8], bias=1.0),
            "Y": AdditiveNoise(["X", "M"], outcome, dist.Normal(0.0, 0.5)),
        }
    )


def test_natural_effects_match_path_products_in_a_linear_model():
    scm, key = mediation_scm(), jax.random.key(10)
    nde = scm.nde(key, "X", "Y", 2.0, 0.0)
    nie = scm.nie(key, "X", "Y", 2.0, 0.0)
    te = scm.te(key, "X", "Y", 2.0, 0.0)
    np.testing.assert_allclose(nde.value, 0.6 * 2, atol=1e-5)
    np.testing.assert_allclose(nie.value, 0.8 * 1.5 * 2, atol=1e-5)
    np.testing.assert_allclose(te.value, nde.value + nie.value, atol=1e-5)
    assert float(te.stderr) < 1e-5  # common random numbers: unit differences are constant


def test_natural_direct_effect_with_interaction_uses_the_nested_counterfactual():
    # Y = 0.6 X + 1.5 M + X M + e, M = 1 + 0.8 X + u: NDE(0 -> 1) = 0.6 + E[M(0)] = 1.6,
    # NIE(0 -> 1) = 1.5 * 0.8 = 1.2 (the interaction term is zero at X = 0).
    scm, key = mediation_scm(interaction=1.0), jax.random.key(11)
    nde = scm.nde(key, "X", "Y", 1.0, 0.0, num_samples=200_000)
    nie = scm.nie(key, "X", "Y", 1.0, 0.0, num_samples=200_000)
    assert abs(float(nde.value) - 1.6) < 4 * float(nde.stderr) + 1e-4
    np.testing.assert_allclose(nie.value, 1.2, atol=1e-4)
    worlds = scm.multi_world(
        {"control": {"X": 0.0}, "direct": {"X": 1.0, "M": from_world("control", "M")}},
        key=key,
        num_samples=100,
    )
    np.testing.assert_allclose(worlds["direct"]["M"], worlds["control"]["M"])


def test_ate_and_cate_with_effect_modification():
    # Y = X * Z + e: ATE(X: 0 -> 1) = E[Z] = 0.5, CATE given Z = z is z.
    scm = SCM(
        {
            "Z": Root(dist.Normal(0.5, 1.0)),
            "X": LinearGaussian(["Z"], weights=[1.0]),
            "Y": AdditiveNoise(["X", "Z"], lambda v: v[:, 0] * v[:, 1]),
        }
    )
    ate = scm.ate(jax.random.key(12), "X", "Y", 1.0, 0.0, num_samples=100_000)
    assert abs(float(ate.value) - 0.5) < 4 * float(ate.stderr)
    cate = scm.cate(jax.random.key(13), "X", "Y", 1.0, 0.0, given={"Z": jnp.array([-1.0, 2.0])})
    np.testing.assert_allclose(cate.value, [-1.0, 2.0], atol=1e-5)
    with pytest.raises(ValueError, match=r"parent\(s\) \['Z'\]"):
        scm.cate(jax.random.key(0), "X", "Y", 1.0, 0.0, given={"X": 0.0})
    with pytest.raises(ValueError, match="`value` must be a treatment value"):
        scm.cate(jax.random.key(0), "X", "Y", lambda x: x + 1, 0.0, given={"Z": 0.0})


def test_twin_world_from_the_prior_gives_probability_of_necessity():
    scm = SCM({"A": Categorical([], [0.5, 0.5]), "B": Categorical(["A"], [[0.9, 0.1], [0.2, 0.8]])})
    factual, cf = scm.twin_world({"A": 0}, key=jax.random.key(14), num_samples=200_000)
    treated_and_b = (factual["A"] == 1) & (factual["B"] == 1)
    # P(B_{A=0} = 0 | A=1, B=1) = 1 - 0.1 / 0.8 for the monotone binary Gumbel-max node.
    pn = float(jnp.mean(cf["B"][treated_and_b] == 0))
    assert abs(pn - 0.875) < 0.01


def y_model(X):
    u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    return 2.0 * X + u


@pytest.mark.parametrize(
    "inference",
    [Inference(method="svi", num_steps=800), Inference(method="nuts", num_warmup=150)],
    ids=["svi", "nuts"],
)
def test_inference_abduction_agrees_with_exact_abduction(inference):
    exact = SCM(
        {"X": Root(dist.Normal(0.0, 1.0)), "Y": AdditiveNoise(["X"], lambda v: 2.0 * v[:, 0])}
    )
    inferred = exact.replace(Y=NumpyroMechanism(["X"], y_model, inference))
    units = exact.sample(jax.random.key(15), 100)
    truth = exact.counterfactual(units, {"X": 1.0})["Y"]
    approx = inferred.counterfactual(units, {"X": 1.0}, jax.random.key(16))["Y"]
    # The stated tolerance: posterior sd is about obs_scale = 0.01; allow 0.1 at worst.
    assert float(jnp.abs(approx - truth).mean()) < 0.03
    assert float(jnp.abs(approx - truth).max()) < 0.1


def test_fit_recovers_linear_gaussian_and_categorical_parameters():
    truth = primer_scm()
    data = truth.sample(jax.random.key(17), 20_000)
    start = SCM(
        {
            "X": Root(dist.Normal(0.3, 2.0)),
            "H": LinearGaussian(["X"], weights=[0.0], scale=2.0),
            "Y": LinearGaussian(["X", "H"], weights=[0.0, 0.0], scale=2.0),
        }
    )
    fitted = start.fit(
        data, num_steps=1500, optimizer=None, progress_bar=False, key=jax.random.key(7)
    )
    y = fitted.scm.mechanisms["Y"]
    np.testing.assert_allclose(y.weights, [0.7, 0.4], atol=0.03)
    np.testing.assert_allclose(y.scale, 1.0, atol=0.03)
    np.testing.assert_allclose(fitted.scm.mechanisms["X"].distribution_.loc, 0.0, atol=0.03)
    assert fitted.losses[-1] < fitted.losses[0]

    # The maximum-likelihood CPT is the table of empirical frequencies.
    discrete = discrete_scm()
    counts = discrete.sample(jax.random.key(18), 5_000)
    blank = SCM(
        {
            "Z": Categorical([], [0.5, 0.5]),
            "X": Categorical(["Z"], [[0.5, 0.5], [0.5, 0.5]]),
            "Y": discrete.mechanisms["Y"],
        }
    )
    learned = blank.fit(
        counts,
        learn=["Z", "X"],
        num_steps=600,
        optimizer=None,
        progress_bar=False,
        key=jax.random.key(7),
    )
    p_x1_given_z1 = jax.nn.softmax(learned.scm.mechanisms["X"].logits[1])[1]
    z, x = np.asarray(counts["Z"]), np.asarray(counts["X"])
    np.testing.assert_allclose(p_x1_given_z1, x[z == 1].mean(), atol=0.01)


class Quadratic(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.a = nnx.Param(jnp.zeros(()))
        self.b = nnx.Param(jnp.zeros(()))

    def __call__(self, inputs):
        return self.a[...] * inputs[:, 0] ** 2 + self.b[...] * inputs[:, 0]


def test_fit_learns_an_nnx_module_inside_an_additive_noise_mechanism():
    truth = SCM(
        {
            "X": Root(dist.Normal(0.0, 1.0)),
            "Y": AdditiveNoise(["X"], lambda v: 0.5 * v[:, 0] ** 2 - v[:, 0], dist.Normal(0, 0.3)),
        }
    )
    data = truth.sample(jax.random.key(19), 5_000)
    model = truth.replace(Y=AdditiveNoise(["X"], Quadratic(nnx.Rngs(0)), dist.Normal(0.0, 1.0)))
    fitted = model.fit(
        data, learn=["Y"], num_steps=1500, progress_bar=False, key=jax.random.key(7)
    ).scm
    quad = fitted.mechanisms["Y"].fn
    np.testing.assert_allclose([quad.a[...], quad.b[...]], [0.5, -1.0], atol=0.05)
    np.testing.assert_allclose(fitted.mechanisms["Y"].noise.scale, 0.3, atol=0.02)


def test_to_numpyro_supports_conditioning_and_numpyro_do():
    scm = primer_scm()
    model = scm.to_numpyro()
    intervened = numpyro.handlers.do(model, data={"H": jnp.full(50_000, 2.0)})
    trace = numpyro.handlers.trace(numpyro.handlers.seed(intervened, 0)).get_trace(num_units=50_000)
    # Under numpyro's do, Y's mean is 0.4 * 2 = 0.8 and X is untouched.
    np.testing.assert_allclose(trace["Y"]["value"].mean(), 0.8, atol=0.03)
    data = scm.sample(jax.random.key(20), 3)
    logp = numpyro.infer.util.log_density(model, (), {"data": data}, {})[0]
    np.testing.assert_allclose(logp, scm.log_prob(data).sum(), rtol=1e-5)


def test_bayesian_fit_with_nuts_recovers_a_weight():
    truth = primer_scm()
    data = truth.sample(jax.random.key(21), 500)
    result = truth.fit(
        data,
        learn=["H"],
        method="nuts",
        priors={"H": {"weights": dist.Normal(0.0, 1.0)}},
        num_warmup=200,
        num_samples=200,
        key=jax.random.key(0),
        progress_bar=False,
    )
    draws = result.samples["H.weights"]
    assert draws.shape == (200, 1)
    assert abs(float(draws.mean()) - 0.5) < 4 * 1 / np.sqrt(500)
    np.testing.assert_allclose(result.scm.mechanisms["H"].weights, draws.mean(0), atol=1e-5)


def test_queries_are_jit_compatible_and_scm_is_a_pytree():
    scm = primer_scm()
    units = scm.sample(jax.random.key(22), 8)
    jitted = jax.jit(lambda model, f: model.counterfactual(f, {"H": 2.0})["Y"])
    np.testing.assert_allclose(jitted(scm, units), scm.counterfactual(units, {"H": 2.0})["Y"])
    doubled = jax.tree.map(lambda leaf: 2 * leaf, scm)
    np.testing.assert_allclose(doubled.mechanisms["Y"].weights, [1.4, 0.8])


# Errors name the node and the problem. ----------------------------------------------------


def test_errors_name_the_node_and_the_problem():
    scm = discrete_scm()
    units = scm.sample(jax.random.key(23), 4)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"do: unknown node\(s\) \['W'\]"):
        scm.sample(key, 4, do={"W": 1})
    with pytest.raises(ValueError, match=r"missing value\(s\) for node\(s\) \['Y'\]"):
        scm.counterfactual({"Z": units["Z"], "X": units["X"]}, {"X": 1}, key)
    with pytest.raises(ValueError, match="mismatched batch sizes"):
        scm.counterfactual({**units, "Y": units["Y"][:2]}, {"X": 1}, key)
    with pytest.raises(ValueError, match=r"outside the support of node 'X'"):
        scm.counterfactual(units, {"X": 5}, key)
    with pytest.raises(ValueError, match=r"factual\['Y'\].*outside the support"):
        scm.counterfactual({**units, "Y": units["Y"] + 2}, {"X": 1}, key)
    with pytest.raises(ValueError, match="pass a PRNG `key`"):
        scm.counterfactual(units, {"X": 1})
    primer = primer_scm()
    data = primer.sample(key, 4)
    with pytest.raises(
        ValueError, match=r"factual\['H'\]: contains 1 non-finite value\(s\) \(NaN or inf\)"
    ):
        primer.counterfactual({**data, "H": data["H"].at[0].set(jnp.nan)}, {"X": 1.0})
    with pytest.raises(ValueError, match=r"data\['Y'\]: contains 1 non-finite"):
        primer.fit({**data, "Y": data["Y"].at[1].set(jnp.nan)}, progress_bar=False)
    gamma = SCM({"S": Root(dist.Gamma(2.0, 1.0))})
    with pytest.raises(ValueError, match=r"outside the support of node 'S'"):
        gamma.log_prob({"S": jnp.array([1.0, -1.0])})


def test_invalid_models_are_rejected():
    with pytest.raises(ValueError, match=r"parents of node 'Y': unknown node\(s\) \['Q'\]"):
        SCM({"Y": LinearGaussian(["Q"], weights=[1.0])})
    with pytest.raises(ValueError, match="cycle"):
        SCM({"A": LinearGaussian(["B"], [1.0]), "B": LinearGaussian(["A"], [1.0])})
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        LinearGaussian(["A", "B"], weights=[1.0])
    with pytest.raises(ValueError, match="sums to 1"):
        Categorical([], [0.5, 0.6])
    with pytest.raises(ValueError, match=r"Inference\.method"):
        Inference(method="hmc")


def test_vector_valued_nodes_flow_through_counterfactuals_and_densities():
    # X in R^2 with independent coordinates; Y = A X + e with e in R^2, A = [[1, 2], [0, -1]].
    a = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    scm = SCM(
        {
            "X": Root(dist.Normal(jnp.zeros(2), jnp.ones(2)).to_event(1)),
            "Y": AdditiveNoise(
                ["X"], lambda v: v @ a.T, dist.Normal(jnp.zeros(2), jnp.full(2, 0.5)).to_event(1)
            ),
        }
    )
    units = scm.sample(jax.random.key(30), 16)
    assert units["Y"].shape == (16, 2)
    cf = scm.counterfactual(units, {"X": jnp.array([1.0, -1.0])})
    expected = units["Y"] + (jnp.array([1.0, -1.0])[None] - units["X"]) @ a.T
    np.testing.assert_allclose(cf["Y"], expected, atol=1e-5)
    residual = units["Y"] - units["X"] @ a.T
    by_hand = dist.Normal(0.0, 1.0).log_prob(units["X"]).sum(-1) + dist.Normal(0.0, 0.5).log_prob(
        residual
    ).sum(-1)
    np.testing.assert_allclose(scm.log_prob(units), by_hand, rtol=1e-5)


def test_categorical_tables_must_match_discrete_parents():
    with pytest.raises(ValueError, match=r"parent 'X' must be discrete"):
        SCM({"X": Root(dist.Normal(0.0, 1.0)), "Y": Categorical(["X"], [[0.5, 0.5], [0.1, 0.9]])})
    with pytest.raises(ValueError, match=r"table axis 0 is for parent 'A' with 3 values"):
        SCM(
            {
                "A": Categorical([], [0.2, 0.3, 0.5]),
                "B": Categorical(["A"], [[0.5, 0.5], [0.1, 0.9]]),
            }
        )
    # A Bernoulli root has two values and may index a table.
    scm = SCM(
        {"A": Root(dist.Bernoulli(probs=0.3)), "B": Categorical(["A"], [[1.0, 0.0], [0.0, 1.0]])}
    )
    draws = scm.sample(jax.random.key(31), 1000)
    np.testing.assert_array_equal(draws["B"], draws["A"].astype(jnp.int32))


def test_linear_gaussian_rejects_vector_parents_with_a_clear_message():
    scm = SCM(
        {
            "X": Root(dist.Normal(jnp.zeros(2), jnp.ones(2)).to_event(1)),
            "Y": LinearGaussian(["X"], weights=[1.0]),
        }
    )
    with pytest.raises(ValueError, match=r"parent 'X' must be scalar per unit"):
        scm.sample(jax.random.key(32), 4)


def learnable_y_model(X):
    w = numpyro.param("w", 0.0)
    s = numpyro.param("s", 1.0, constraint=numpyro.distributions.constraints.positive)
    u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    return w * X + s * u


def test_fit_learns_the_params_of_a_numpyro_sub_model():
    truth = SCM(
        {"X": Root(dist.Normal(0.0, 1.0)), "Y": LinearGaussian(["X"], weights=[1.5], scale=0.5)}
    )
    data = truth.sample(jax.random.key(33), 2000)
    model = truth.replace(Y=NumpyroMechanism(["X"], learnable_y_model, Inference(obs_scale=0.1)))
    assert set(model.mechanisms["Y"].parameters()) == {"w", "s"}
    fitted = model.fit(
        data, learn=["Y"], num_steps=3000, progress_bar=False, key=jax.random.key(7)
    ).scm
    params = fitted.mechanisms["Y"].params
    # The marginal of Y given X is N(w X, s^2 + obs_scale^2): s is learned net of the kernel.
    np.testing.assert_allclose(params["w"], 1.5, atol=0.1)
    np.testing.assert_allclose(params["s"], np.sqrt(0.25 - 0.01), atol=0.06)
    assert float(params["s"]) > 0


def test_a_node_set_in_every_world_is_not_abducted():
    # Y's noise would need inference, but do(Y) overrides it: no inference runs, so no key
    # is needed, and Z follows from the set value.
    scm = SCM(
        {
            "X": Root(dist.Normal(0.0, 1.0)),
            "Y": NumpyroMechanism(["X"], y_model),
            "Z": LinearGaussian(["Y"], weights=[3.0]),
        }
    )
    units = {"X": jnp.zeros(4), "Y": jnp.ones(4), "Z": jnp.array([3.0, 4.0, 5.0, 6.0])}
    cf = scm.counterfactual(units, {"Y": 2.0})
    np.testing.assert_allclose(cf["Z"], units["Z"] + 3.0)
    np.testing.assert_allclose(cf["X"], units["X"])
    with pytest.raises(ValueError, match="pass a PRNG `key`"):
        scm.counterfactual(units, {"Y": lambda y: y + 1.0})  # a shift needs Y's own noise
    only_root = SCM({"X": Root(dist.Normal(0.0, 1.0))})
    np.testing.assert_allclose(only_root.counterfactual({"X": jnp.zeros(3)}, {"X": 1.5})["X"], 1.5)


def test_fit_and_to_numpyro_reject_bad_settings():
    scm = primer_scm()
    data = scm.sample(jax.random.key(34), 10)
    with pytest.raises(ValueError, match=r"method: expected one of \('mle', 'svi', 'nuts'\)"):
        scm.fit(data, method="em", progress_bar=False)
    with pytest.raises(ValueError, match=r"needs a prior for node\(s\) \['Y'\]"):
        scm.fit(data, learn=["H", "Y"], method="nuts", priors={"H": dist.Normal(0, 1)})
    with pytest.raises(ValueError, match="maximum likelihood takes no priors"):
        scm.fit(data, priors={"H": dist.Normal(0, 1)}, progress_bar=False)
    with pytest.raises(ValueError, match=r"learn: unknown node\(s\) \['W'\]"):
        scm.fit(data, learn=["W"], progress_bar=False)
    with pytest.raises(ValueError, match=r"data: unknown node\(s\) \['W'\]"):
        scm.fit({**data, "W": data["X"]}, progress_bar=False)
    with pytest.raises(ValueError, match="key: fitting by 'mle' draws random numbers"):
        scm.fit(data, progress_bar=False)  # no hidden default key
    with pytest.raises(ValueError, match="pass `data` or `num_units`"):
        scm.to_numpyro()()
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['slope'\]"):
        scm.mechanisms["Y"].with_parameters({"slope": jnp.ones(2)})


def test_log_prob_of_a_node_without_a_density_says_so():
    scm = SCM({"X": Root(dist.Normal(0.0, 1.0)), "Y": NumpyroMechanism(["X"], y_model)})
    units = {"X": jnp.zeros(3), "Y": jnp.ones(3)}
    with pytest.raises(NotImplementedError, match="NumpyroMechanism has no tractable density"):
        scm.log_prob(units)


def test_stochastic_abduction_needs_a_key_instead_of_a_hidden_default():
    scm = SCM({"X": Categorical([], [0.3, 0.7]), "Y": LinearGaussian(["X"], weights=[1.0])})
    data = scm.sample(jax.random.key(0), 5)
    with pytest.raises(ValueError, match=r"abduct: nodes \['X'\] abduct their noise stochastic"):
        scm.abduct(data)
    noise = scm.abduct(data, jax.random.key(1), nodes=["Y"])  # exact: no key needed either
    assert set(scm.abduct(data, nodes=["Y"])) == set(noise) == {"Y"}
