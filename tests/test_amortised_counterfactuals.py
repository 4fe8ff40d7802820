"""Counterfactuals of units whose parents are missing, by importance sampling from a proposal.

Small SCMs with closed-form posteriors check the weights and the resampled draws against the
exact posterior (tolerances: 5 Monte Carlo standard errors); a tiny untrained deep SCM of
Morpho digits checks that an image-alone query runs through `SCM.counterfactual` with an
attribute predictor as the proposal, and reproduces the image under a null intervention.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from flax import nnx
from scipy import stats

from causalvision.data import MorphoDigits
from causalvision.nn import VAE, AttributePredictor, DeepSCM, PredictorProposal, VAEConfig
from causalvision.scm import (
    SCM,
    Categorical,
    Inference,
    LinearGaussian,
    NumpyroMechanism,
    Root,
    importance_posterior,
    lenient_promotion,
)

# D ~ Categorical(PRIOR), Y = W D + SCALE e: p(D | y) by Bayes' rule over three classes.
PRIOR = np.array([0.2, 0.5, 0.3])
W, SCALE = 1.5, 0.8
Y_OBS = jnp.array([-0.5, 1.2, 3.4], jnp.float32)


def discrete_scm(prior=PRIOR) -> SCM:
    return SCM(
        {
            "D": Categorical([], prior),
            "Y": LinearGaussian(["D"], weights=[W], scale=SCALE),
        }
    )


def exact_posterior(y) -> np.ndarray:
    """p(D = d | y), `(N, 3)`."""
    y = np.asarray(y, np.float64)
    log_p = np.log(PRIOR) + stats.norm.logpdf(y[:, None], W * np.arange(3), SCALE)
    p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def uniform_proposal(observed, key, k):
    """Deliberately imperfect: every class equally likely whatever Y says."""
    n = observed["Y"].shape[0]
    return {"D": jax.random.randint(key, (k, n), 0, 3)}, jnp.full((k, n), -np.log(3.0))


def posterior_proposal(observed, key, k):
    """The exact posterior p(D | y): perfect."""
    y = observed["Y"][:, None]
    means = W * jnp.arange(3, dtype=jnp.float32)[None, :]
    log_joint = jnp.log(jnp.asarray(PRIOR, jnp.float32))[None, :] + jax.scipy.stats.norm.logpdf(
        y, means, jnp.float32(SCALE)
    )
    log_probs = jax.nn.log_softmax(log_joint, axis=1)
    d = jax.random.categorical(key, log_probs, shape=(k, log_probs.shape[0]))
    return {"D": d}, jnp.take_along_axis(log_probs, d.T, axis=1).T


def test_discrete_parent_recovers_the_exact_posterior_from_a_uniform_proposal():
    k = 4000
    draws = importance_posterior(
        discrete_scm(),
        {"Y": Y_OBS},
        jax.random.key(0),
        Inference(method="importance", proposal=uniform_proposal, num_proposals=k),
    )
    weights = np.exp(np.asarray(draws.log_weights, np.float64))
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-5)
    d = np.asarray(draws.values["D"])
    estimate = np.stack([(weights * (d == c)).sum(axis=0) for c in range(3)], axis=1)
    exact = exact_posterior(Y_OBS)
    ess = np.asarray(draws.ess)
    assert (ess > 0.2 * k).all() and (ess <= k + 1e-3).all()
    tolerance = 5 * np.sqrt(exact * (1 - exact) / ess[:, None]) + 1e-3
    assert (np.abs(estimate - exact) < tolerance).all(), (estimate, exact)


def test_counterfactual_resamples_the_posterior_of_a_discrete_parent():
    # Y_do(D=2) = Y + W (2 - D): its posterior mean is y + W (2 - E[D | y]).
    s = 4000
    inference = Inference(method="importance", proposal=uniform_proposal, num_proposals=4000)
    factual, cf = discrete_scm().twin_world(
        {"D": 2}, factual={"Y": Y_OBS}, key=jax.random.key(1), num_samples=s, inference=inference
    )
    exact = exact_posterior(Y_OBS)
    d = np.asarray(factual["D"])
    frequencies = np.stack([(d == c).mean(axis=0) for c in range(3)], axis=1)
    # Resampling S of K weighted draws: at most S and the ESS (about K/2 here) count.
    tolerance = 5 * np.sqrt(exact * (1 - exact) / 1500) + 1e-3
    assert (np.abs(frequencies - exact) < tolerance).all(), (frequencies, exact)
    mean_d = exact @ np.arange(3)
    sd_d = np.sqrt(exact @ np.arange(3) ** 2 - mean_d**2)
    expected = np.asarray(Y_OBS) + W * (2 - mean_d)
    y_cf = np.asarray(cf["Y"]).mean(axis=0)
    assert (np.abs(y_cf - expected) < 5 * W * sd_d / np.sqrt(1500) + 1e-3).all()
    np.testing.assert_array_equal(np.asarray(cf["D"]), 2)


def test_linear_gaussian_posterior_from_a_wide_proposal():
    # X ~ N(0, 1), Y = 2 X + 0.5 e: X | y ~ N(8 y / 17, 1 / 17); Y_do(X=1) = y + 2 (1 - X).
    scm = SCM(
        {"X": Root(dist.Normal(0.0, 1.0)), "Y": LinearGaussian(["X"], weights=[2.0], scale=0.5)}
    )
    y = jnp.array([-1.0, 0.4, 2.0], jnp.float32)

    def wide(observed, key, k):
        x = 2.0 * jax.random.normal(key, (k, observed["Y"].shape[0]), jnp.float32)
        return {"X": x}, jax.scipy.stats.norm.logpdf(x, 0.0, 2.0)

    inference = Inference(method="importance", proposal=wide, num_proposals=8000)
    draws = importance_posterior(scm, {"Y": y}, jax.random.key(2), inference)
    w = np.exp(np.asarray(draws.log_weights, np.float64))
    x = np.asarray(draws.values["X"], np.float64)
    mean, var = 8 * np.asarray(y) / 17, 1 / 17
    ess = np.asarray(draws.ess)
    assert (np.abs((w * x).sum(0) - mean) < 5 * np.sqrt(var / ess)).all()
    second = (w * (x - mean) ** 2).sum(0)
    assert (np.abs(second - var) < 5 * var * np.sqrt(2 / ess)).all()

    cf = scm.counterfactual(
        {"Y": y}, {"X": 1.0}, key=jax.random.key(3), num_samples=4000, inference=inference
    )
    y_cf = np.asarray(cf["Y"], np.float64)
    expected = np.asarray(y) + 2 * (1 - mean)
    effective = min(4000, ess.min()) / 2
    assert (np.abs(y_cf.mean(0) - expected) < 5 * np.sqrt(4 * var / effective)).all()
    assert (np.abs(y_cf.var(0) - 4 * var) < 5 * 4 * var * np.sqrt(2 / effective)).all()


def test_a_perfect_proposal_gets_uniform_weights():
    k = 64
    draws = importance_posterior(
        discrete_scm(),
        {"Y": Y_OBS},
        jax.random.key(4),
        Inference(method="importance", proposal=posterior_proposal, num_proposals=k),
    )
    np.testing.assert_allclose(np.asarray(draws.log_weights), -np.log(k), atol=2e-5)
    np.testing.assert_allclose(np.asarray(draws.ess), k, rtol=1e-4)


# -- a tiny deep SCM of Morpho digits, image alone ---------------------------------------------

SPECS = MorphoDigits.attribute_specs
SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def deep():
    rngs = nnx.Rngs(0)
    vae = VAE(VAEConfig.tiny(SHAPE, DeepSCM.context_dim(SPECS)), rngs=rngs)
    model = DeepSCM(SPECS, vae, flow_layers=("affine",), rngs=rngs)
    predictor = AttributePredictor(
        SHAPE,
        {"digit": 10},
        ["thickness", "intensity"],
        widths=(4,),
        hidden=8,
        standardise={s.name: s.standardise for s in SPECS if not s.categorical},
        rngs=rngs,
    )
    images = jnp.round(jax.random.uniform(jax.random.key(5), (3, *SHAPE)) * 255.0)
    proposal = PredictorProposal(predictor, SPECS)
    return model.scm(), proposal, images


def test_image_alone_identity_shift_reproduces_the_image(deep):
    scm, proposal, images = deep
    inference = Inference(method="importance", proposal=proposal, num_proposals=8)
    # An identity shift of thickness reaches intensity and the image: both are recomputed
    # from the noise abducted under the drawn parents, which must give the factual back.
    worlds = scm.multi_world(
        {"same": {"thickness": lambda t: t}},
        factual={"image": images},
        key=jax.random.key(6),
        inference=inference,
    )
    np.testing.assert_allclose(np.asarray(worlds["same"]["image"]), np.asarray(images), atol=2e-3)
    factual = worlds["factual"]
    np.testing.assert_allclose(factual["intensity"], worlds["same"]["intensity"], rtol=1e-4)
    assert (np.asarray(factual["thickness"]) > 0.5).all()
    intensity = np.asarray(factual["intensity"])
    assert ((intensity > 64) & (intensity < 255)).all()

    # One engine: the image-alone counterfactual is the full-factual one at the drawn parents.
    cf = scm.counterfactual(
        {"image": images}, {"thickness": 3.0}, key=jax.random.key(6), inference=inference
    )
    drawn = {n: factual[n] for n in ("digit", "thickness", "intensity")}
    full = scm.counterfactual({**drawn, "image": images}, {"thickness": 3.0})
    np.testing.assert_allclose(np.asarray(cf["image"]), np.asarray(full["image"]), atol=2e-3)
    np.testing.assert_allclose(np.asarray(cf["intensity"]), np.asarray(full["intensity"]), 1e-4)


def test_image_alone_weights_are_the_scm_densities_over_the_proposal(deep):
    scm, proposal, images = deep
    inference = Inference(method="importance", proposal=proposal, num_proposals=3)
    draws = importance_posterior(scm, {"image": images}, jax.random.key(7), inference)
    # Recompute unnormalised weights by hand: prior of the parents, image likelihood, minus
    # the proposal's density; they must differ from the returned ones by one constant a unit.
    mech = scm.mechanisms

    @jax.jit
    def weight(v):
        laws = proposal.distributions(images, ["digit", "thickness", "intensity"])
        with lenient_promotion():
            log_q = sum(laws[n].log_prob(v[n]) for n in v)
        log_p = (
            mech["digit"].log_prob(v["digit"], {})
            + mech["thickness"].log_prob(v["thickness"], {})
            + mech["intensity"].log_prob(v["intensity"], {"thickness": v["thickness"]})
            + mech["image"].log_likelihood(images, v)
        )
        return log_p - log_q

    by_hand = [
        np.asarray(weight({n: v[k] for n, v in draws.values.items()}), np.float64) for k in range(3)
    ]
    by_hand = np.stack(by_hand)
    by_hand -= np.log(np.exp(by_hand - by_hand.max(0)).sum(0)) + by_hand.max(0)
    np.testing.assert_allclose(np.asarray(draws.log_weights), by_hand, atol=1e-3)
    assert np.isfinite(by_hand).all()


def test_image_likelihood_is_decoder_density_plus_latent_prior(deep):
    scm, _, images = deep
    mech = scm.mechanisms["image"]
    parents = {
        "digit": jnp.array([1, 2, 3], jnp.int32),
        "thickness": jnp.array([2.0, 2.5, 3.0]),
        "intensity": jnp.array([100.0, 150.0, 200.0]),
    }
    noise = mech.abduct(images, parents)
    loc, log_scale = mech.model.decode(noise["latent"], mech.encoding(parents))
    x = np.asarray(images, np.float64) / 127.5 - 1.0
    loc, scale = np.asarray(loc, np.float64), np.exp(np.asarray(log_scale, np.float64))
    upper = stats.norm.cdf((x - loc + 1 / 255) / scale)
    lower = stats.norm.cdf((x - loc - 1 / 255) / scale)
    log_px = np.where(
        x < -0.999, np.log(upper), np.where(x > 0.999, np.log1p(-lower), np.log(upper - lower))
    )
    z = np.asarray(noise["latent"], np.float64)
    expected = log_px.reshape(3, -1).sum(1) + stats.norm.logpdf(z).sum(1)
    np.testing.assert_allclose(np.asarray(mech.log_likelihood(images, parents)), expected, 1e-4)


# -- errors ---------------------------------------------------------------------------------


def run(proposal, scm=None, y=Y_OBS, k=4):
    inference = Inference(method="importance", proposal=proposal, num_proposals=k)
    return importance_posterior(scm or discrete_scm(), {"Y": y}, jax.random.key(0), inference)


def test_inference_settings_errors():
    with pytest.raises(ValueError, match=r"Inference\.proposal: method 'importance' needs"):
        Inference(method="importance")
    with pytest.raises(ValueError, match=r"Inference\.proposal: only method 'importance'"):
        Inference(proposal=uniform_proposal)
    with pytest.raises(ValueError, match=r"Inference\.num_proposals"):
        Inference(method="importance", proposal=uniform_proposal, num_proposals=0)
    with pytest.raises(ValueError, match=r"NumpyroMechanism\.inference: method 'importance'"):
        NumpyroMechanism(
            ("x",), lambda x: x, Inference(method="importance", proposal=uniform_proposal)
        )
    with pytest.raises(ValueError, match="inference: expected Inference\\(method='importance'"):
        importance_posterior(discrete_scm(), {"Y": Y_OBS}, jax.random.key(0), Inference())


def test_proposal_output_errors():
    n = Y_OBS.shape[0]

    def extra(observed, key, k):
        return {"D": jnp.zeros((k, n), jnp.int32), "Y": jnp.zeros((k, n))}, jnp.zeros((k, n))

    def shape(observed, key, k):
        return {"D": jnp.zeros((k, n + 1), jnp.int32)}, jnp.zeros((k, n))

    def log_q(observed, key, k):
        return {"D": jnp.zeros((k, n), jnp.int32)}, jnp.zeros((k,))

    def floats(observed, key, k):
        return {"D": jnp.zeros((k, n))}, jnp.zeros((k, n))

    def not_a_pair(observed, key, k):
        return {"D": jnp.zeros((k, n), jnp.int32)}

    with pytest.raises(ValueError, match=r"returned node\(s\) \['Y'\], which the query"):
        run(extra)
    with pytest.raises(ValueError, match=r"values\['D'\]: expected shape \(K, N, ...\)"):
        run(shape)
    with pytest.raises(ValueError, match=r"log_q: expected floats of shape \(K, N\) = \(4, 3\)"):
        run(log_q)
    with pytest.raises(ValueError, match=r"values\['D'\]: node 'D' is discrete"):
        run(floats)
    with pytest.raises(ValueError, match=r"inference\.proposal: expected \(values"):
        run(not_a_pair)


def test_a_missing_node_the_proposal_does_not_cover():
    scm = SCM(
        {
            "Z": Root(dist.Normal(0.0, 1.0)),
            "X": LinearGaussian(["Z"], weights=[1.0]),
            "Y": LinearGaussian(["X"], weights=[1.0]),
        }
    )

    def only_x(observed, key, k):
        return {"X": jnp.zeros((k, 3))}, jnp.zeros((k, 3))

    with pytest.raises(ValueError, match=r"returned no values for missing node\(s\) \['Z'\]"):
        run(only_x, scm)


def test_non_finite_weights_are_refused():
    def nan_q(observed, key, k):
        d, log_q = uniform_proposal(observed, key, k)
        return d, log_q.at[0, 1].set(jnp.nan)

    def impossible(observed, key, k):  # class 2 has prior probability 0
        return {"D": jnp.full((k, 3), 2, jnp.int32)}, jnp.zeros((k, 3))

    with pytest.raises(ValueError, match=r"non-finite importance weights .* unit\(s\) \[1\]"):
        run(nan_q)
    scm = discrete_scm(prior=[0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match=r"every proposal of unit\(s\) \[0, 1, 2\] has weight"):
        run(impossible, scm)
    # Through the counterfactual query too.
    inference = Inference(method="importance", proposal=nan_q, num_proposals=4)
    with pytest.raises(ValueError, match="non-finite importance weights"):
        discrete_scm().counterfactual(
            {"Y": Y_OBS}, {"D": 0}, key=jax.random.key(0), inference=inference
        )


def test_a_missing_node_without_density_is_refused():
    def model(X):
        return X + numpyro.sample("u", dist.Normal(0.0, 1.0))

    scm = SCM(
        {
            "X": NumpyroMechanism((), lambda: numpyro.sample("u", dist.Normal(0.0, 1.0))),
            "Y": LinearGaussian(["X"], weights=[1.0]),
        }
    )

    def propose_x(observed, key, k):
        return {"X": jnp.zeros((k, 3))}, jnp.zeros((k, 3))

    with pytest.raises(ValueError, match="factual: node 'X' is missing, and importance"):
        run(propose_x, scm)
    joint = SCM({"X": Root(dist.Normal(0.0, 1.0)), "Y": NumpyroMechanism(("X",), model)})
    with pytest.raises(ValueError, match="factual: node 'Y' is observed but its parent"):
        run(propose_x, joint)


def test_predictor_proposal_errors(deep):
    _, proposal, images = deep
    with pytest.raises(ValueError, match=r"scales: \['digit'\] are not continuous"):
        PredictorProposal(proposal.predictor, SPECS, scales={"digit": 1.0})
    with pytest.raises(ValueError, match=r"scales\['thickness'\]: expected a positive"):
        PredictorProposal(proposal.predictor, SPECS, scales={"thickness": 0.0})
    with pytest.raises(ValueError, match="uniform: expected a share"):
        PredictorProposal(proposal.predictor, SPECS, uniform=1.0)
    with pytest.raises(ValueError, match="observed: the proposal reads the image node"):
        proposal({"digit": jnp.zeros((3,), jnp.int32)}, jax.random.key(0), 2)
    truth = {"thickness": np.full(3, 2.0), "intensity": np.full(3, 150.0)}
    fitted = proposal.fit_scales(images, truth)
    guess = proposal.point_estimates(images)
    for name in truth:
        rmse = np.sqrt(np.mean((np.asarray(guess[name], np.float64) - truth[name]) ** 2))
        assert fitted.scales[name] == pytest.approx(rmse, rel=1e-5)
