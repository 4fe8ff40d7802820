"""Shpitser & Pearl's ID / IDC in `CausalGraph.identify`: latent projection, named textbook
graphs, and random graphs checked exactly against enumeration of random discrete SCMs."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import networkx as nx
import numpy as np
import pytest

from causalvision.graph import (
    CausalGraph,
    Fraction,
    Hedge,
    Identification,
    LatentProjection,
    Prob,
    Product,
    RandomBinarySCM,
    Sum,
)
from causalvision.graph.expression import evaluate

TOL = 1e-9


# ------------------------------------------------------------------------ exact discrete SCMs
def check_value(g: CausalGraph, result: Identification, model: RandomBinarySCM) -> None:
    assert result.expression is not None, result.estimand
    got = result.evaluate(model.observational(), g.observed)
    want = model.interventional(result.treatment, result.outcome, result.given)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=result.estimand)


# ---------------------------------------------------------------------------- hedge checks
def is_c_forest(proj: LatentProjection, nodes: frozenset[str], roots: frozenset[str]) -> bool:
    """``nodes`` is a ``roots``-rooted c-forest of ``proj``: bidirected-connected, and every
    node reaches a root by a directed path inside ``nodes`` (so an edge subgraph with at most
    one child per node and exactly ``roots`` childless exists)."""
    if not roots or not roots <= nodes:
        return False
    sub = proj.subgraph(nodes)
    if len(sub.c_components()) != 1:
        return False
    return sub.ancestors(roots) == nodes


def check_hedge(g: CausalGraph, result: Identification, xs: Iterable[str]) -> None:
    """Shpitser & Pearl's Def. 4: F, F' are R-rooted c-forests, F' ⊂ F, F meets X, F' does not,
    and R ⊆ An(Y) in G with the edges into X removed."""
    assert result.strategy == "none" and result.expression is None
    hedge = result.hedge
    assert isinstance(hedge, Hedge)
    proj = g.latent_projection()
    x = frozenset(xs)
    f, f_prime, roots = hedge.forest, hedge.subforest, hedge.roots
    assert f_prime < f
    assert is_c_forest(proj, f, roots) and is_c_forest(proj, f_prime, roots)
    assert f & x and not f_prime & x
    assert f & hedge.intervened and not f_prime & hedge.intervened
    assert roots <= proj.ancestors(set(result.outcome) | set(result.given), cut=x)
    assert "hedge F = {" in result.estimand and hedge.reason in result.estimand


# ---------------------------------------------------------------------------- latent projection
def test_latent_projection_directed_and_bidirected() -> None:
    # U1 -> U2 -> A and U1 -> B: A <-> B. X -> L -> Y with L latent: X -> Y, nothing else.
    # U3 -> C and U3 -> L: C <-> Y (U3 reaches Y through the latent L). D -> E observed only.
    g = CausalGraph(
        [
            ("U1", "U2"),
            ("U2", "A"),
            ("U1", "B"),
            ("X", "L"),
            ("L", "Y"),
            ("U3", "C"),
            ("U3", "L"),
            ("D", "E"),
            ("A", "D"),
        ],
        latent=["U1", "U2", "L", "U3"],
    )
    proj = g.latent_projection()
    assert set(proj.nodes) == set(g.observed)
    assert proj.directed == {("X", "Y"), ("D", "E"), ("A", "D")}
    assert proj.bidirected == {("A", "B"), ("C", "Y")}
    assert sorted(map(sorted, g.c_components())) == [
        ["A", "B"],
        ["C", "Y"],
        ["D"],
        ["E"],
        ["X"],
    ]


def test_latent_projection_observed_node_blocks_bidirected() -> None:
    # U -> A -> B: U reaches B only through the observed A, so no A <-> B (and B has one
    # latent parent path: none). U -> A, U -> C: A <-> C.
    g = CausalGraph([("U", "A"), ("A", "B"), ("U", "C")], latent=["U"])
    proj = g.latent_projection()
    assert proj.bidirected == {("A", "C")}
    assert proj.directed == {("A", "B")}
    assert g.c_components() == [frozenset({"A", "C"}), frozenset({"B"})]


@pytest.mark.parametrize("seed", range(30))
def test_latent_projection_matches_path_definition(seed: int) -> None:
    """Brute force over simple paths in the DAG: a -> b iff a directed path a ~> b with latent
    inner nodes; a <-> b iff a latent node has such paths to both."""
    g = RandomBinarySCM.random_graph(np.random.default_rng(1000 + seed), latent_anywhere=True)
    dag = g.to_networkx()
    latent = g.latent

    def latent_inner(path: list[str]) -> bool:
        return all(n in latent for n in path[1:-1])

    reach = {
        a: {
            b
            for b in g.observed
            if b != a and any(latent_inner(p) for p in nx.all_simple_paths(dag, a, b))
        }
        for a in g.nodes
    }
    directed = {(a, b) for a in g.observed for b in reach[a]}
    bidirected = {
        tuple(sorted((a, b)))
        for u in latent
        for a, b in itertools.combinations(sorted(reach[u]), 2)
    }
    proj = g.latent_projection()
    assert proj.directed == directed
    assert proj.bidirected == bidirected


# ------------------------------------------------------------------------------ named graphs
def u(name: str, a: str, b: str) -> list[tuple[str, str]]:
    """A latent confounder ``a <-> b``."""
    return [(name, a), (name, b)]


def named(edges: list[tuple[str, str]]) -> CausalGraph:
    return CausalGraph(edges, latent=sorted({p for p, _ in edges if p.startswith("U")}))


NAPKIN = named([("W1", "W2"), ("W2", "X"), ("X", "Y"), *u("U1", "W1", "X"), *u("U2", "W1", "Y")])


def test_napkin_is_identified_by_id() -> None:
    result = NAPKIN.identify("X", "Y")
    assert result.strategy == "id"
    assert result.adjustment_set == frozenset() and result.hedge is None
    assert str(result) == (
        "P(Y | do(X)) = Σ_{W2} P(W2) [(Σ_{W1} P(X, Y | W1, W2) P(W1)) / "
        "(Σ_{W1} P(X | W1, W2) P(W1))]"
    )
    for seed in range(5):
        check_value(NAPKIN, result, RandomBinarySCM(NAPKIN, np.random.default_rng(seed)))


def test_frontdoor_with_observed_confounder_of_mediator_and_outcome() -> None:
    # X -> M -> Y, W -> M, W -> Y, X <-> Y: neither back-door nor front-door applies.
    g = named([("X", "M"), ("M", "Y"), ("W", "M"), ("W", "Y"), *u("U", "X", "Y")])
    assert g.smallest_backdoor_set("X", "Y") is None
    assert g.smallest_frontdoor_set("X", "Y") is None
    result = g.identify("X", "Y")
    assert result.strategy == "id"
    check_value(g, result, RandomBinarySCM(g, np.random.default_rng(1)))


def test_sequential_treatments() -> None:
    # X1 -> Z -> X2 -> Y, X1 -> Y, Z <-> Y: P(y | do(x1, x2)) = Σ_z P(z | x1) P(y | x1, x2, z).
    g = named([("X1", "Z"), ("Z", "X2"), ("X2", "Y"), ("X1", "Y"), *u("U", "Z", "Y")])
    assert g.smallest_backdoor_set(["X1", "X2"], "Y") is None
    result = g.identify(["X1", "X2"], "Y")
    assert result.strategy == "id"
    assert str(result) == "P(Y | do(X1, X2)) = Σ_{Z} P(Y | X1, X2, Z) P(Z | X1)"
    check_value(g, result, RandomBinarySCM(g, np.random.default_rng(2)))


def test_bow_arc_has_a_hedge() -> None:
    g = named([("X", "Y"), *u("U", "X", "Y")])
    result = g.identify("X", "Y")
    assert result.strategy == "none"
    assert result.hedge == Hedge(
        frozenset({"X", "Y"}), frozenset({"Y"}), frozenset({"Y"}), frozenset({"X"})
    )
    check_hedge(g, result, ["X"])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        result.evaluate(np.full((2, 2), 0.25), ["X", "Y"])


# Pearl (2009), Causality, Fig. 3.9-style graphs in which P(y | do(x)) is identifiable ...
IDENTIFIABLE = {
    "plain": named([("X", "Y")]),
    "confounded_mediator_outcome": named([("X", "Z"), ("Z", "Y"), *u("U", "Z", "Y")]),
    "frontdoor": named([("X", "Z"), ("Z", "Y"), *u("U", "X", "Y")]),
    "observed_confounder": named([("W", "X"), ("W", "Y"), ("X", "Y"), *u("U", "W", "X")]),
    "two_mediators": named(
        [("X", "Z1"), ("Z1", "Z2"), ("Z2", "Y"), *u("U1", "X", "Z2"), *u("U2", "Z1", "Y")]
    ),
    "confounder_not_ancestor": named(
        [("X", "Y"), *u("U1", "X", "Z"), *u("U2", "Z", "Y")]
    ),  # Z is no ancestor of Y: dropped by line 2
    "napkin": NAPKIN,
}
# ... and Fig. 3.8-style graphs in which it is not.
NOT_IDENTIFIABLE = {
    "bow": named([("X", "Y"), *u("U", "X", "Y")]),
    "bow_on_mediator": named([("X", "Z"), ("Z", "Y"), *u("U", "X", "Z")]),
    "broken_frontdoor": named([("X", "Z"), ("Z", "Y"), *u("U1", "X", "Y"), *u("U2", "Z", "Y")]),
    "confounded_through_parent": named(
        [("X", "Y"), ("Z", "Y"), *u("U1", "X", "Z"), *u("U2", "Z", "Y")]
    ),
    "confounded_child_of_x": named(
        [("X", "Z"), ("X", "Y"), ("Z", "Y"), *u("U1", "X", "Z"), *u("U2", "X", "Y")]
    ),
}


@pytest.mark.parametrize("name", sorted(IDENTIFIABLE))
def test_pearl_identifiable(name: str) -> None:
    g = IDENTIFIABLE[name]
    auto, by_id = g.identify("X", "Y"), g.identify("X", "Y", method="id")
    assert by_id.strategy == "id"
    for seed in range(3):
        model = RandomBinarySCM(g, np.random.default_rng(seed))
        check_value(g, auto, model)
        check_value(g, by_id, model)


@pytest.mark.parametrize("name", sorted(NOT_IDENTIFIABLE))
def test_pearl_not_identifiable(name: str) -> None:
    g = NOT_IDENTIFIABLE[name]
    result = g.identify("X", "Y")
    check_hedge(g, result, ["X"])
    assert g.identify("X", "Y", given=[]).strategy == "none"


def test_backdoor_and_frontdoor_keep_their_results_and_gain_an_expression() -> None:
    g = named([("Z", "X"), ("Z", "Y"), ("X", "Y")])
    result = g.identify("X", "Y")
    assert result.strategy == "backdoor" and result.estimand.endswith("Σ_{Z} P(Y | X, Z) P(Z)")
    assert str(result.expression) == "Σ_{Z} P(Y | X, Z) P(Z)"
    assert str(g.identify("X", "Y", method="id").expression) == "Σ_{Z} P(Y | X, Z) P(Z)"
    fd = IDENTIFIABLE["frontdoor"].identify("X", "Y")
    assert fd.strategy == "frontdoor"
    assert fd.expression is not None
    assert fd.expression.format({"X"}) == "Σ_{Z} P(Z | X) Σ_{X'} P(Y | X', Z) P(X')"


def test_idc_conditional_queries() -> None:
    # Front-door graph: P(y | do(x), z) = P(y | do(x, z)) (rule 2), identified by IDC.
    g = IDENTIFIABLE["frontdoor"]
    result = g.identify("X", "Y", given="Z")
    assert result.strategy == "idc" and result.axes == ("X", "Z", "Y")
    assert str(result) == "P(Y | do(X), Z) = Σ_{X'} P(Y | X', Z) P(X')"
    check_value(g, result, RandomBinarySCM(g, np.random.default_rng(3)))
    # Napkin conditioned on W2: not identifiable... unless by IDC; check whatever it says.
    for given in (["W2"], ["W1"], ["W1", "W2"]):
        res = NAPKIN.identify("X", "Y", given=given)
        if res.strategy == "idc":
            check_value(NAPKIN, res, RandomBinarySCM(NAPKIN, np.random.default_rng(4)))
        else:
            check_hedge(NAPKIN, res, ["X"])
    bow = NOT_IDENTIFIABLE["bow"]
    res = named([("X", "Y"), ("Y", "Z"), *u("U", "X", "Y")]).identify("X", "Z", given="Y")
    assert res.strategy == "idc"  # P(z | do(x), y) = P(z | y)
    assert bow.identify("X", "Y").strategy == "none"


def test_query_validation() -> None:
    with pytest.raises(ValueError, match="given overlaps"):
        NAPKIN.identify("X", "Y", given="X")
    with pytest.raises(ValueError, match="given: latent"):
        NAPKIN.identify("X", "Y", given="U1")
    with pytest.raises(ValueError, match="method"):
        NAPKIN.identify("X", "Y", method="magic")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ evaluation inputs
def test_evaluate_accepts_dict_tables_and_samples() -> None:
    g = NAPKIN
    model = RandomBinarySCM(g, np.random.default_rng(7))
    result = g.identify("X", "Y")
    table = model.observational()
    as_dict = {k: float(table[k]) for k in itertools.product((0, 1), repeat=table.ndim)}
    np.testing.assert_allclose(
        result.evaluate(as_dict, g.observed), result.evaluate(table, g.observed), atol=TOL
    )
    # Samples: plug-in counts equal the formula on the empirical table, and approach the truth.
    data = model.sample(200_000, np.random.default_rng(8))
    columns = [data[n] for n in g.observed]
    empirical = np.zeros((2,) * len(columns))
    np.add.at(empirical, tuple(columns), 1.0 / len(columns[0]))
    plug_in = result.evaluate(data)
    np.testing.assert_allclose(plug_in, result.evaluate(empirical, g.observed), atol=1e-12)
    np.testing.assert_allclose(plug_in, model.interventional(["X"], ["Y"]), atol=0.02)
    with pytest.raises(ValueError, match="discrete"):
        result.evaluate({**data, "X": data["X"] + 0.5})
    with pytest.raises(ValueError, match="nodes"):
        result.evaluate(table)


def test_expression_evaluation_conventions() -> None:
    # P(B | A) with P(A = 1) = 0 is undefined; times P(A = 1) = 0 it counts as 0.
    table = np.array([[0.25, 0.75], [0.0, 0.0]])
    _, cond = evaluate(Prob(("B",), ("A",)), table, ["A", "B"])
    assert np.isnan(cond[1]).all()
    expr = Sum(("A",), Product((Prob(("B",), ("A",)), Prob(("A",)))))
    assert str(expr) == "Σ_{A} P(B | A) P(A)"
    names, total = evaluate(expr, table, ["A", "B"])
    assert names == ("B",)
    np.testing.assert_allclose(total, [0.25, 0.75])
    # A summed variable the body does not mention counts once per value.
    _, doubled = evaluate(Sum(("A",), Prob(("B",))), table, ["A", "B"])
    np.testing.assert_allclose(doubled, [0.5, 1.5])
    _, ratio = evaluate(Fraction(Prob(("B",)), Prob(("B",))), table, ["A", "B"])
    np.testing.assert_allclose(ratio, [1.0, 1.0])


# ---------------------------------------------------------------------------- random graphs
def random_queries(
    g: CausalGraph, rng: np.random.Generator
) -> list[tuple[list[str], list[str], list[str]]]:
    obs = list(g.observed)
    queries: list[tuple[list[str], list[str], list[str]]] = [
        ([x], [y], []) for x, y in itertools.permutations(obs, 2)
    ]
    if len(obs) < 3:
        return queries
    for _ in range(4):  # joint treatments and outcomes
        picked = [str(v) for v in rng.choice(obs, size=min(4, len(obs)), replace=False)]
        cut = int(rng.integers(1, len(picked)))
        queries.append((picked[:cut], picked[cut:], []))
    for _ in range(4):  # conditional queries
        x, y, z = (str(v) for v in rng.choice(obs, size=3, replace=False))
        queries.append(([x], [y], [z]))
    return queries


def test_random_graphs_against_enumeration() -> None:
    rng = np.random.default_rng(2006)
    counts = {"backdoor": 0, "frontdoor": 0, "id": 0, "idc": 0, "none": 0}
    for _ in range(200):
        g = RandomBinarySCM.random_graph(rng)
        model = RandomBinarySCM(g, rng)
        table = model.observational()
        for xs, ys, zs in random_queries(g, rng):
            result = g.identify(xs, ys, given=zs or None)
            counts[result.strategy] += 1
            if result.strategy in ("id", "idc"):
                assert result.expression is not None
                assert result.expression.free() <= set(xs) | set(ys) | set(zs)
            if result.strategy == "none":
                check_hedge(g, result, xs)
                assert g.smallest_backdoor_set(xs, ys) is None or zs
                continue
            got = result.evaluate(table, g.observed)
            want = model.interventional(result.treatment, result.outcome, result.given)
            np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=result.estimand)
            if result.strategy in ("backdoor", "frontdoor"):  # ID agrees with the adjustment
                by_id = g.identify(xs, ys, method="id")
                assert by_id.strategy == "id"
                np.testing.assert_allclose(by_id.evaluate(table, g.observed), got, atol=TOL)
    print(counts)
    assert counts["id"] >= 100 and counts["none"] >= 100 and counts["idc"] >= 100, counts
    assert counts["backdoor"] >= 1000 and counts["frontdoor"] >= 1, counts


def test_random_graphs_with_inner_latent_nodes() -> None:
    """Latent mediators and latent chains: the projection is what ID must work on."""
    rng = np.random.default_rng(1993)
    identified = 0
    for _ in range(60):
        g = RandomBinarySCM.random_graph(rng, latent_anywhere=True)
        model = RandomBinarySCM(g, rng)
        for xs, ys, zs in random_queries(g, rng)[::3]:
            result = g.identify(xs, ys, given=zs or None)
            if result.strategy == "none":
                check_hedge(g, result, xs)
                continue
            identified += 1
            check_value(g, result, model)
    assert identified >= 200


# ------------------------------------------------------------------------------- estimators
def test_estimators_evaluate_the_id_estimand_by_plug_in() -> None:
    import jax

    from causalvision.scm.estimators import estimate_effect, interventional_distribution

    model = RandomBinarySCM(NAPKIN, np.random.default_rng(11))
    data = model.sample(50_000, np.random.default_rng(12))
    truth = model.interventional(["X"], ["Y"])
    dist = interventional_distribution(data, "X", "Y", 1, graph=NAPKIN)
    assert set(dist) == {0, 1} and abs(sum(dist.values()) - 1) < 1e-9
    np.testing.assert_allclose([dist[0], dist[1]], truth[1], atol=0.02)
    plug_in = NAPKIN.identify("X", "Y").evaluate(data)
    assert dist[1] == pytest.approx(plug_in[1, 1], abs=1e-12)
    effect = estimate_effect(data, NAPKIN, "X", "Y", 1, 0, num_bootstrap=50, key=jax.random.key(0))
    want = truth[1, 1] - truth[0, 1]
    assert float(effect.value) == pytest.approx(plug_in[1, 1] - plug_in[0, 1], abs=1e-6)
    assert 0 < float(effect.stderr) < 0.05
    assert abs(float(effect.value) - want) < 4 * float(effect.stderr) + 0.01
    with pytest.raises(ValueError, match="plug-in counts and needs discrete"):
        estimate_effect({**data, "Y": data["Y"] + 0.5}, NAPKIN, "X", "Y", 1, 0, num_bootstrap=0)
    with pytest.raises(ValueError, match=r"not identifiable.*hedge"):
        estimate_effect(data, NOT_IDENTIFIABLE["bow"], "X", "Y", 1, 0, num_bootstrap=0)
