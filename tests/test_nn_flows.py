"""Conditional normalizing flows: bijector algebra, densities, and Morpho attribute mechanisms."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from causalvision.data.morpho import MorphoDigits
from causalvision.nn.flows import (
    ConditionalFlow,
    ConditionalSpline,
    FlowMechanism,
    Interval,
    Positive,
    fit_flow_mechanism,
    rational_quadratic_spline,
)
from causalvision.nn.image_mechanism import ParentEncoding
from causalvision.scm import SCM

SUPPORTS = [None, ("positive", 0.5), ("positive", 0.0, "exp"), ("interval", -1.0, 2.0)]


def _randomize(module: nnx.Module, seed: int, scale: float = 0.1) -> nnx.Module:
    """Fill the zero-initialised parameters with N(0, scale²) draws.

    Fresh flows start as the identity (zero output layers); this gives a random, moderately
    curved flow. Much larger random outputs make splines nearly flat somewhere, where the
    inverse is ill-conditioned in float32 and no round trip reaches 1e-5. (numpy draws: eager
    JAX would compile a sampler per parameter shape.)
    """
    rng = np.random.default_rng(seed)
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    new = [
        v if np.asarray(v).any() else jnp.asarray(scale * rng.standard_normal(v.shape), jnp.float32)
        for v in leaves
    ]
    nnx.update(module, jax.tree.unflatten(treedef, new))
    return module


# Jitted entry points: eager dispatch compiles every primitive on first use, which is slower.
_forward = jax.jit(lambda module, x, context: module.forward(x, context))
_inverse = jax.jit(lambda module, x, context: module.inverse(x, context))
_forward_log_det = jax.jit(lambda flow, u, context: flow.forward_and_log_det(u, context))
_inverse_log_det = jax.jit(lambda flow, x, context: flow.inverse_and_log_det(x, context))
_log_prob = jax.jit(lambda flow, x, context: flow.log_prob(x, context))


def _flow(support, *, dim=2, context_dim=3, layers=("spline", "affine"), seed=0):
    flow = ConditionalFlow(
        dim, context_dim, layers=layers, num_bins=5, support=support, rngs=nnx.Rngs(seed)
    )
    return _randomize(flow, seed + 100)


# ---------------------------------------------------------------------------------------------
# Bijectors.


def test_spline_inverts_forward_inside_and_in_the_tails(key):
    k_x, k_c = jax.random.split(key)
    spline = _randomize(ConditionalSpline(2, 3, num_bins=6, bound=2.0, rngs=nnx.Rngs(0)), 1)
    x = 2.0 * jax.random.normal(k_x, (4000, 2))  # about a third lands in the tails |x| > 2
    context = jax.random.normal(k_c, (4000, 3))
    y, log_det = _forward(spline, x, context)
    back, inv_log_det = _inverse(spline, y, context)
    np.testing.assert_allclose(back, x, atol=1e-5)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=5e-5)
    tails = np.abs(np.asarray(x)) > 2.0
    assert 0.2 < tails.mean() < 0.5
    np.testing.assert_array_equal(np.asarray(y)[tails], np.asarray(x)[tails])
    np.testing.assert_array_equal(np.asarray(log_det)[tails], 0.0)
    assert not np.allclose(np.asarray(y)[~tails], np.asarray(x)[~tails], atol=1e-2)


def test_spline_with_zero_parameters_is_the_identity():
    x = jnp.linspace(-4.0, 4.0, 101)[:, None]
    zeros = jnp.zeros((101, 1, 4))
    spline = jax.jit(partial(rational_quadratic_spline, bound=3.0))
    y, log_det = spline(x, zeros, zeros, zeros[..., :3])
    np.testing.assert_allclose(y, x, atol=1e-5)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-5)


def test_support_transforms_invert_with_exact_log_dets():
    transforms = (Positive(0.5), Positive(0.0, "exp"), Interval(-1.0, 2.0))
    y = jnp.linspace(-8.0, 8.0, 801)[:, None]

    @jax.jit
    def run(y):
        out = []
        for t in transforms:
            x, log_det = t.forward(y)
            back, inv_log_det = t.inverse(x)
            slope = jax.vmap(jax.grad(lambda v, t=t: t.forward(v[None, None])[0][0, 0]))(y[:, 0])
            out.append((log_det, back, inv_log_det, slope, t.contains(x)))
        return out

    for log_det, back, inv_log_det, slope, inside in run(y):
        assert bool(inside.all())
        # (autodiff of the saturated sigmoid loses a few digits that log_sigmoid keeps)
        np.testing.assert_allclose(log_det[:, 0], jnp.log(slope), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-4, rtol=1e-4)
        # Near a bound float32 cannot resolve x finely: compare where the map is not flat.
        ok = np.asarray(log_det[:, 0]) > -5.0
        np.testing.assert_allclose(np.asarray(back)[ok], np.asarray(y)[ok], atol=1e-4)


@pytest.mark.parametrize("support", [None, ("interval", -1.0, 2.0)])
def test_flow_inverts_and_its_log_det_matches_the_jacobian(support, key):
    k_u, k_c = jax.random.split(key)
    u = jax.random.normal(k_u, (512, 2))
    context = jax.random.normal(k_c, (512, 3))
    flow = _flow(support)

    @jax.jit
    def run(flow, u, context):
        x, log_det = flow.forward_and_log_det(u, context)
        back, inv_log_det = flow.inverse_and_log_det(x, context)
        one = lambda u_row, c_row: flow.forward(u_row[None], c_row[None])[0]
        jac = jax.vmap(jax.jacfwd(one))(u, context)  # (N, D, D)
        slope = jnp.diagonal(jac, axis1=1, axis2=2)
        return x, log_det, back, inv_log_det, jac, slope, flow.sample(k_u, context)

    x, log_det, back, inv_log_det, jac, slope, draws = run(flow, u, context)
    assert draws.shape == (512, 2)
    if support is not None:
        assert bool(flow.contains(draws).all())
    # Elementwise bijectors: a diagonal Jacobian whose log|det| is the flow's log_det.
    np.testing.assert_array_equal(jac * (1.0 - jnp.eye(2))[None], 0.0)
    np.testing.assert_allclose(
        log_det, jnp.sum(jnp.log(jnp.abs(slope)), axis=1), atol=2e-4, rtol=1e-4
    )
    # Round trip to 1e-5, except where the flow contracts: there float32 rounding of x
    # (a few ulps) is amplified by |du/dx| — the conditioning of the problem, not the inverse.
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-3)
    tolerance = 1e-5 + 4 * np.finfo(np.float32).eps * (np.abs(x) + 1.0) / np.abs(slope)
    assert (np.abs(back - u) <= tolerance).all()
    assert float(jnp.median(jnp.abs(back - u))) < 1e-6


@pytest.mark.parametrize(
    ("support", "grid"),
    [
        (("interval", -1.0, 2.0), np.linspace(-1.0, 2.0, 60_001)[1:-1]),
        (("positive", 0.5), 0.5 + np.linspace(0.0, 60.0, 240_001)[1:]),
        (None, np.linspace(-60.0, 60.0, 240_001)),
    ],
)
def test_log_prob_integrates_to_one(support, grid, key):
    flow = _flow(support, dim=1, context_dim=2)
    context = jnp.broadcast_to(jax.random.normal(key, (1, 2)), (grid.size, 2))
    density = np.exp(np.asarray(_log_prob(flow, jnp.asarray(grid, jnp.float32)[:, None], context)))
    total = np.trapezoid(density.astype(np.float64), grid)
    assert total == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("support", SUPPORTS[1:])
def test_outputs_stay_in_support_and_gradients_stay_finite(support):
    flow = _flow(support, dim=1, context_dim=0, layers=("affine",))
    u = jnp.linspace(-200.0, 200.0, 4001)[:, None]  # far into float32 saturation
    outside = jnp.array([[-1.5], [support[1]], [3.0 if support[0] == "interval" else -3.0]])

    @jax.jit
    def run(flow):
        x = flow.forward(u)
        # Off-support values give -inf, but gradients stay finite (masked, not propagated).
        loss = lambda m: jnp.sum(jnp.maximum(m.log_prob(outside), -1e3) + m.log_prob(x[:3]))
        return flow.contains(x), flow.log_prob(x), flow.log_prob(outside), jax.grad(loss)(flow)

    inside, lp_inside, lp_outside, grads = run(flow)
    assert flow.sample(jax.random.key(0), 7).shape == (7, 1)  # unconditional: a count
    assert bool(inside.all())
    assert bool(jnp.isfinite(lp_inside).all())
    assert np.isneginf(np.asarray(lp_outside)[:2]).all()
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


# ---------------------------------------------------------------------------------------------
# The mechanism.


def test_flow_mechanism_protocol(key):
    scalar = FlowMechanism(
        _flow(("interval", 0.0, 1.0), dim=1, context_dim=2, layers=("spline",)), parents=("a", "b")
    )
    vector = FlowMechanism(_flow(None, dim=2, context_dim=1, layers=("affine",)), parents=("a",))
    parents = {"a": jnp.ones(5), "b": jnp.arange(5, dtype=jnp.float32)}

    @jax.jit
    def run(scalar, vector):
        out = {}
        for name, mech in (("scalar", scalar), ("vector", vector)):
            u = mech.sample_noise(key, 5)
            x = mech.predict(u, parents)
            out[name] = {
                "u": u,
                "x": x,
                "back": mech.abduct(x, parents),
                "draws": mech.abduct(x, parents, num_samples=3),
                "log_prob": mech.log_prob(x, parents),
                # The numpyro view (SCM.to_numpyro, SCM.fit) agrees with the direct density.
                "dist_log_prob": mech.distribution(parents, 5).log_prob(x),
                "dist_sample": mech.distribution(parents, 5).sample(key, (2,)),
            }
        return out

    out = run(scalar, vector)
    for name, shape in (("scalar", (5,)), ("vector", (5, 2))):
        o = out[name]
        assert o["u"].shape == o["x"].shape == o["back"].shape == shape
        assert o["draws"].shape == (3, *shape)
        assert o["dist_sample"].shape == (2, *shape)
        np.testing.assert_allclose(o["back"], o["u"], atol=1e-4)  # float32 conditioning
        np.testing.assert_allclose(o["dist_log_prob"], o["log_prob"], rtol=1e-6)
        assert o["log_prob"].shape == (5,)
    np.testing.assert_array_equal(scalar.in_support(np.array([-0.1, 0.5, 1.0])), [0, 1, 0])
    assert vector.in_support(np.zeros((5, 2))) is None
    assert scalar.exact_abduction


@pytest.fixture(scope="module")
def morpho_fit():
    """Flows for Morpho thickness (root) and intensity | thickness, fitted on 4k samples."""
    morpho = MorphoDigits()
    data = morpho.scm.sample(jax.random.key(0), 8000)
    train = {n: v[:4000] for n, v in data.items()}
    test = {n: v[4000:] for n, v in data.items()}
    thickness = FlowMechanism(
        ConditionalFlow(1, 0, support=("positive", 0.5), rngs=nnx.Rngs(0))
    )  # N(0,1) -> spline -> affine -> 0.5 + softplus
    thickness, t_losses = fit_flow_mechanism(
        thickness, train, node="thickness", steps=2000, batch_size=256, key=jax.random.key(1)
    )
    # causal-gen's intensity flow: a conditional affine on the logit scale of (64, 255).
    intensity = FlowMechanism(
        ConditionalFlow(
            1, 1, layers=("affine",), support=("interval", 64.0, 255.0), rngs=nnx.Rngs(1)
        ),
        encoding=ParentEncoding([("thickness", "continuous", (2.5, 0.63))]),
    )
    intensity, i_losses = fit_flow_mechanism(
        intensity, train, node="intensity", steps=2000, batch_size=256, key=jax.random.key(2)
    )
    return morpho, thickness, intensity, test, (t_losses, i_losses)


def test_fitted_flows_match_the_true_morpho_densities(morpho_fit):
    morpho, thickness, intensity, test, (t_losses, i_losses) = morpho_fit
    assert t_losses[-100:].mean() < t_losses[:10].mean()
    assert i_losses[-100:].mean() < i_losses[:10].mean()

    @jax.jit
    def mean_log_likelihoods(truth, thickness, intensity, test):
        parents = {"thickness": test["thickness"]}
        return [
            jnp.mean(m.log_prob(test[node], p))
            for m, node, p in (
                (truth["thickness"], "thickness", {}),
                (thickness, "thickness", {}),
                (truth["intensity"], "intensity", parents),
                (intensity, "intensity", parents),
            )
        ]

    t_true, t_fit, i_true, i_fit = map(
        float, mean_log_likelihoods(morpho.scm.mechanisms, thickness, intensity, test)
    )
    print(f"thickness {t_fit:.4f} (true {t_true:.4f}); intensity {i_fit:.4f} (true {i_true:.4f})")
    # Measured on CPU: thickness -0.917 vs -0.910, intensity -4.218 vs -4.213 nats.
    assert t_fit > t_true - 0.05
    assert i_fit > i_true - 0.1


def test_fitted_flow_scm_counterfactuals_match_the_exact_ones(morpho_fit):
    morpho, thickness, intensity, test, _ = morpho_fit
    scm = SCM({"thickness": thickness, "intensity": intensity})
    factual = {n: test[n][:1000] for n in ("digit", "thickness", "intensity")}
    cf = scm.counterfactual({n: factual[n] for n in ("thickness", "intensity")}, {"thickness": 4.0})
    exact = morpho.scm.counterfactual(factual, {"thickness": 4.0})
    np.testing.assert_allclose(cf["thickness"], 4.0)
    error = np.abs(np.asarray(cf["intensity"]) - np.asarray(exact["intensity"]))
    # Measured on CPU: mean 0.23, max 3.9 on the 0-255 scale.
    assert error.mean() < 1.0
    assert np.quantile(error, 0.99) < 4.0
    # Intervening on nothing reproduces the factual intensity (exact abduction).
    same = scm.counterfactual(
        {n: factual[n] for n in ("thickness", "intensity")}, {"thickness": factual["thickness"]}
    )
    np.testing.assert_allclose(same["intensity"], factual["intensity"], atol=1e-2)


# ---------------------------------------------------------------------------------------------
# Errors at the boundary.


def test_bad_arguments_raise_value_errors_naming_them():
    rngs = nnx.Rngs(0)
    for num_bins in (1, 2.5, True):
        with pytest.raises(ValueError, match="num_bins"):
            ConditionalFlow(1, 0, num_bins=num_bins, rngs=rngs)
    for support in (("positive",), ("box", 0, 1), ("interval", 2.0, 1.0), "positive"):
        with pytest.raises(ValueError, match="support"):
            ConditionalFlow(1, 0, support=support, rngs=rngs)
    with pytest.raises(ValueError, match="support"):
        ConditionalFlow(1, 0, support=("positive", 0.0, "cube"), rngs=rngs)
    with pytest.raises(ValueError, match="layers"):
        ConditionalFlow(1, 0, layers=("spline", "planar"), rngs=rngs)
    with pytest.raises(ValueError, match="num_layers"):
        ConditionalFlow(1, 0, layers=("spline",), num_layers=2, rngs=rngs)
    with pytest.raises(ValueError, match="bound"):
        ConditionalFlow(1, 0, bound=0.0, rngs=rngs)
    with pytest.raises(ValueError, match="dim"):
        ConditionalFlow(0, 0, rngs=rngs)

    flow = ConditionalFlow(1, 2, rngs=rngs)
    with pytest.raises(ValueError, match="context"):
        flow.forward(jnp.zeros((4, 1)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="context"):
        flow.log_prob(jnp.zeros((4, 1)))
    with pytest.raises(ValueError, match="context"):
        flow.sample(jax.random.key(0), 4)
    with pytest.raises(ValueError, match="x"):
        flow.inverse(jnp.zeros((4,)), jnp.zeros((4, 2)))

    with pytest.raises(ValueError, match="flow"):
        FlowMechanism(flow, parents=("a",))
    mech = FlowMechanism(flow, parents=("a", "b"))
    with pytest.raises(ValueError, match="value"):
        mech.log_prob(jnp.zeros((4, 1)), {"a": jnp.zeros(4), "b": jnp.zeros(4)})
    with pytest.raises(ValueError, match="data"):
        fit_flow_mechanism(mech, {"x": jnp.zeros(4)}, node="x", key=jax.random.key(0))
    positive = FlowMechanism(ConditionalFlow(1, 0, support=("positive", 0.5), rngs=rngs))
    with pytest.raises(ValueError, match=r"data\['t'\]"):
        fit_flow_mechanism(positive, {"t": jnp.array([0.2, 1.0])}, node="t", key=jax.random.key(0))
