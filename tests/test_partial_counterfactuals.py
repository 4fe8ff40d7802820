"""Counterfactuals from partially observed units against closed-form Gaussian posteriors.

Linear-Gaussian SCMs make every posterior Gaussian, so the counterfactual's mean and
variance per unit are known exactly. Tolerances are Monte Carlo errors of `S` draws: the
mean within 5 sd/sqrt(S/2) and the variance within 5 var sqrt(2/(S/2)) (NUTS draws counted
as S/2 effective ones); SVI adds an optimisation allowance (it fits the guide by noisy
gradient steps).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from causalvision.scm import (
    SCM,
    AdditiveNoise,
    Categorical,
    Inference,
    LinearGaussian,
    Mechanism,
    NumpyroMechanism,
    Root,
    mechanism_dataclass,
    summarize,
)

S = 4000
NUTS = Inference(method="nuts", num_warmup=300)
SVI = Inference(num_steps=3000, learning_rate=0.01)
SVI_ALLOWANCE = 0.1

# Hidden confounder: U ~ N(0, 1), X = A U + SX e_x, Y = B X + C U + SY e_y.
A, B, C, SX, SY = 1.0, 0.5, 2.0, 0.5, 0.5
X_OBS = jnp.array([1.0, -0.5, 0.0])
Y_OBS = jnp.array([2.5, -1.0, 0.3])
X_NEW = 2.0


def confounded_scm() -> SCM:
    return SCM(
        {
            "U": Root(dist.Normal(0.0, 1.0)),
            "X": LinearGaussian(["U"], weights=[A], scale=SX),
            "Y": LinearGaussian(["X", "U"], weights=[B, C], scale=SY),
        }
    )


def u_posterior(x: jax.Array, y: jax.Array | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of U | X (and Y): a Gaussian prior times Gaussian likelihoods."""
    precision = 1.0 + A**2 / SX**2 + (0.0 if y is None else C**2 / SY**2)
    weighted = A * x / SX**2 + (0.0 if y is None else C * (y - B * x) / SY**2)
    return np.asarray(weighted / precision), np.full(x.shape, 1.0 / precision)


def tolerances(variance: np.ndarray, allowance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    effective = S / 2
    mean_tol = 5 * np.sqrt(variance / effective) + allowance
    var_tol = 5 * variance * np.sqrt(2 / effective) + allowance
    return mean_tol, var_tol


def assert_gaussian(draws: jax.Array, mean, variance, allowance: float = 0.0) -> None:
    assert draws.shape == (S, *np.shape(mean))
    summary = summarize({"node": draws})["node"]
    mean_tol, var_tol = tolerances(np.asarray(variance), allowance)
    assert np.all(np.abs(np.asarray(summary.mean) - mean) < mean_tol), (summary, mean, variance)
    assert np.all(np.abs(np.asarray(summary.variance) - variance) < var_tol), (summary, variance)


@pytest.fixture(scope="module", params=[NUTS, SVI], ids=["nuts", "svi"])
def x_only(request) -> tuple[dict, float]:
    """Counterfactual Y under do(X = X_NEW) given X alone: U and Y both omitted."""
    cf = confounded_scm().counterfactual(
        {"X": X_OBS}, {"X": X_NEW}, jax.random.key(1), num_samples=S, inference=request.param
    )
    return cf, SVI_ALLOWANCE if request.param is SVI else 0.0


def test_hidden_confounder_and_outcome_omitted_match_the_gaussian_conditional(x_only):
    # Y_cf = B x' + C U + SY e_y: U from U | X, e_y (Y unobserved) from its prior.
    cf, allowance = x_only
    mu, var = u_posterior(X_OBS)
    assert_gaussian(cf["Y"], B * X_NEW + C * mu, C**2 * var + SY**2, allowance)
    assert_gaussian(cf["U"], mu, var, allowance)
    np.testing.assert_array_equal(cf["X"], jnp.full((S, 3), X_NEW))


def test_hidden_confounder_posterior_given_both_children():
    # U omitted, X and Y observed: U | X, Y is Gaussian; Y_cf = Y + B (x' - X) in every draw.
    factual, cf = confounded_scm().twin_world(
        {"X": X_NEW},
        factual={"X": X_OBS, "Y": Y_OBS},
        key=jax.random.key(2),
        num_samples=S,
        inference=NUTS,
    )
    mu, var = u_posterior(X_OBS, Y_OBS)
    assert_gaussian(factual["U"], mu, var)
    np.testing.assert_allclose(factual["Y"], jnp.broadcast_to(Y_OBS, (S, 3)))
    np.testing.assert_allclose(
        cf["Y"], jnp.broadcast_to(Y_OBS + B * (X_NEW - X_OBS), (S, 3)), atol=1e-4
    )
    np.testing.assert_allclose(cf["U"], factual["U"])


def test_missing_mediator_matches_its_gaussian_posterior():
    # X -> M -> Y with M omitted: M | X, Y is Gaussian; M_cf = M + MX (x' - X) draw by draw,
    # and Y_cf = Y + MY MX (x' - X) exactly.
    mx, my, sm, sy = 1.5, -1.0, 0.8, 0.6
    scm = SCM(
        {
            "X": Root(dist.Normal(0.0, 1.0)),
            "M": LinearGaussian(["X"], weights=[mx], scale=sm),
            "Y": LinearGaussian(["M"], weights=[my], scale=sy),
        }
    )
    x, y = jnp.array([0.5, -1.0]), jnp.array([-1.0, 2.0])
    cf = scm.counterfactual(
        {"X": x, "Y": y}, {"X": X_NEW}, jax.random.key(3), num_samples=S, inference=SVI
    )
    precision = 1 / sm**2 + my**2 / sy**2
    mean = (mx * x / sm**2 + my * y / sy**2) / precision + mx * (X_NEW - x)
    assert_gaussian(cf["M"], np.asarray(mean), np.full(2, 1 / precision), SVI_ALLOWANCE)
    np.testing.assert_allclose(
        cf["Y"], jnp.broadcast_to(y + my * mx * (X_NEW - x), (S, 2)), atol=1e-4
    )


def test_inference_based_child_of_a_missing_node_has_its_noise_inferred_jointly():
    # Y's noise site is inferred together with U (its value depends on the missing U).
    def outcome(X, U):
        e = numpyro.sample("e", dist.Normal(0.0, 1.0))
        return B * X + C * U + SY * e

    scm = confounded_scm().replace(
        Y=NumpyroMechanism(["X", "U"], outcome, Inference(obs_scale=0.02))
    )
    cf = scm.counterfactual(
        {"X": X_OBS, "Y": Y_OBS},
        {"X": X_NEW},
        jax.random.key(6),
        num_samples=500,
        inference=Inference(method="nuts", num_warmup=200),
    )
    expected = Y_OBS + B * (X_NEW - X_OBS)  # up to the kernel's width, per draw
    np.testing.assert_allclose(summarize(cf)["Y"].mean, expected, atol=0.05)
    mu, var = u_posterior(X_OBS, Y_OBS)
    assert np.all(np.abs(np.asarray(summarize(cf)["U"].mean) - mu) < 5 * np.sqrt(var / 250))


def test_everything_observed_is_unchanged_and_unobserved_latent_nodes_need_no_opt_in():
    scm = confounded_scm()
    units = scm.sample(jax.random.key(4), 5)
    plain = scm.counterfactual(units, {"X": 1.0})
    with_settings = scm.counterfactual(units, {"X": 1.0}, inference=NUTS)
    for name in scm.nodes:
        np.testing.assert_array_equal(with_settings[name], plain[name])
    np.testing.assert_allclose(plain["Y"], units["Y"] + B * (1.0 - units["X"]), atol=1e-5)
    # A declared latent node with no observed descendant: drawn from its prior, exactly.
    latent = SCM(
        {**scm.mechanisms, "W": LinearGaussian(["Y"], weights=[1.0], scale=2.0)}, latent=["W"]
    )
    cf = latent.counterfactual(units, {"X": 1.0}, jax.random.key(5), num_samples=S)
    summary = summarize(cf)["W"]
    assert summary.mean.shape == (5,)
    mean_tol, var_tol = tolerances(np.full(5, 4.0))
    assert np.all(np.abs(np.asarray(summary.mean - plain["Y"])) < mean_tol)
    assert np.all(np.abs(np.asarray(summary.variance) - 4.0) < var_tol)
    one = latent.counterfactual(units, {"X": 1.0}, jax.random.key(5))
    assert one["W"].shape == (5,)


@mechanism_dataclass
class Doubled(Mechanism):
    """`x = 2 (u + Σ parents)`: invertible, but without a density."""

    parents: tuple[str, ...] = ()

    def sample_noise(self, key, num_units):
        return jax.random.normal(key, (num_units,))

    def predict(self, noise, parents):
        return 2.0 * (noise + sum(parents.values(), jnp.zeros_like(noise)))

    def abduct(self, value, parents, key=None, num_samples=None):
        noise = value / 2.0 - sum(parents.values(), jnp.zeros_like(value))
        return self._broadcast_noise(noise, num_samples)


def test_missing_nodes_that_cannot_be_inferred_are_refused_by_name():
    scm = confounded_scm()
    x, key = {"X": X_OBS}, jax.random.key(0)
    with pytest.raises(
        ValueError, match=r"missing value\(s\) for node\(s\) \['U', 'Y'\].*Inference"
    ):
        scm.counterfactual(x, {"X": 1.0}, key)
    with pytest.raises(ValueError, match=r"omits node\(s\) \['U', 'Y'\].*pass a PRNG `key`"):
        scm.counterfactual(x, {"X": 1.0}, inference=SVI)
    with pytest.raises(ValueError, match="observe at least one node"):
        scm.counterfactual({}, {"X": 1.0}, key, inference=SVI)
    discrete = SCM(
        {
            "Z": Root(dist.Bernoulli(probs=0.3)),
            "X": Categorical(["Z"], [[0.9, 0.1], [0.2, 0.8]]),
        }
    )
    with pytest.raises(ValueError, match=r"node 'Z' is missing and discrete"):
        discrete.counterfactual({"X": jnp.array([1])}, {"X": 0}, key, inference=SVI)
    no_density = SCM({"H": Doubled(), "X": LinearGaussian(["H"], weights=[1.0])})
    with pytest.raises(ValueError, match=r"node 'H' is missing.*density p\(H \| parents\)"):
        no_density.counterfactual(x, {"X": 1.0}, key, inference=SVI)
    child = SCM({"H": Root(dist.Normal(0.0, 1.0)), "X": Doubled(("H",))})
    with pytest.raises(ValueError, match=r"node 'X' is observed but its parent\(s\) \['H'\]"):
        child.counterfactual(x, {"X": 1.0}, key, inference=SVI)


def interaction_scm() -> SCM:
    """Y = B X + C U X + SY e_y: the effect of X depends on the hidden U."""
    return SCM(
        {
            "U": Root(dist.Normal(0.0, 1.0)),
            "X": LinearGaussian(["U"], weights=[A], scale=SX),
            "Y": AdditiveNoise(
                ["X", "U"], lambda xu: B * xu[:, 0] + C * xu[:, 1] * xu[:, 0], dist.Normal(0, SY)
            ),
        }
    )


@pytest.mark.parametrize("inference", [NUTS, SVI], ids=["nuts", "svi"])
def test_cate_given_a_node_without_its_parent_infers_the_parent(inference):
    """E[Y_1 - Y_0 | X = x] = B + C E[U | X = x]: the hidden U's posterior sets the effect."""
    scm = interaction_scm()
    effect = scm.cate(
        jax.random.key(2), "X", "Y", 1.0, 0.0, {"X": X_OBS}, num_samples=S, inference=inference
    )
    u_mean, u_var = u_posterior(X_OBS)
    expected = B + C * u_mean
    allowance = SVI_ALLOWANCE if inference is SVI else 0.0
    # Each draw's effect is B + C U: its spread is C sd(U | x), and the stderr says so.
    spread = np.abs(C) * np.sqrt(u_var)
    np.testing.assert_allclose(effect.stderr, spread / np.sqrt(S), rtol=0.25)
    assert np.all(
        np.abs(np.asarray(effect.value) - expected) < 5 * spread / np.sqrt(S / 2) + allowance
    )
    one = scm.cate(
        jax.random.key(2), "X", "Y", 1.0, 0.0, {"X": 1.0}, num_samples=S, inference=inference
    )
    assert (
        np.shape(one.value) == ()
        and abs(float(one.value) - expected[0]) < 5 * spread[0] / np.sqrt(S / 2) + allowance
    )


def test_cate_given_an_open_family_without_inference_says_how_to_infer_it():
    with pytest.raises(ValueError, match=r"parent\(s\) \['U'\] are not.*inference=Inference"):
        interaction_scm().cate(jax.random.key(0), "X", "Y", 1.0, 0.0, {"X": 1.0})
    with pytest.raises(TypeError, match="inference: expected an Inference"):
        interaction_scm().cate(jax.random.key(0), "X", "Y", 1.0, 0.0, {"X": 1.0}, inference="svi")
