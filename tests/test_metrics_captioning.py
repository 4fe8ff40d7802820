"""Caption metrics against answers worked out by hand, independent brute-force implementations
and values printed by the reference tools (nltk 3.10.4 `corpus_bleu`, pycocoevalcap 1.2
`CiderScorer`): object mentions, CHAIR, object recall / precision, BLEU and CIDEr-D."""

import math
import string
from fractions import Fraction

import numpy as np
import pytest

from causalvision.metrics import (
    ObjectVocabulary,
    bleu,
    chair,
    cider_d,
    cider_d_per_image,
    object_recall_precision,
)

VOCABULARY = ObjectVocabulary(
    {
        "star": ["star"],
        "dog": ["dog", "puppy", "pup"],
        "hot dog": ["hot dog", "frankfurter"],
        "person": ["person", "man", "woman", "child"],
        "bus": ["bus"],
        "box": ["box"],
        "bench": ["bench"],
        "butterfly": ["butterfly"],
        "toy": ["toy"],
        "mouse": ["mouse"],
    },
    irregular_plurals={"man": "men", "woman": "women", "child": "children", "mouse": "mice"},
)


# --------------------------------------------------------------------------- object mentions


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("Two stars.", ["star"]),  # rule plural: +s
        ("buses, boxes and benches", ["bus", "box", "bench"]),  # +es after s, x, ch
        ("butterflies and toys", ["butterfly", "toy"]),  # consonant+y -> ies; vowel+y -> s
        ("three mice, two men and the children", ["mouse", "person", "person"]),  # irregular
        ("A puppy, a pup and a dog", ["dog", "dog", "dog"]),  # synonyms of one category
        ("a HOT DOG and hot-dogs", ["hot dog", "hot dog"]),  # two words beat the tail "dog"
        ("a dog near a hot dog stand", ["dog", "hot dog"]),
        ("the dog's frankfurter", ["dog", "hot dog"]),  # split at every non-letter
        ("a stargazer in a doghouse", []),  # whole words only
        ("an empty field at dusk", []),
        ("", []),
    ],
)
def test_mentions_follow_the_documented_rule(caption, expected):
    assert VOCABULARY.mentions(caption) == expected


def test_the_vocabulary_lists_its_categories_and_phrases():
    assert VOCABULARY.categories[:3] == ("star", "dog", "hot dog")
    phrases = VOCABULARY.phrases
    assert phrases["hot dogs"] == "hot dog"
    assert phrases["children"] == phrases["childs"] == "person"  # irregular and rule plural
    assert phrases["benches"] == "bench"
    assert "ObjectVocabulary(10 categories" in repr(VOCABULARY)


def test_an_explicit_synonym_wins_over_a_plural_form():
    vocabulary = ObjectVocabulary({"glass": ["glass"], "spectacles": ["glasses"]})
    assert vocabulary.mentions("two glasses and a glass") == ["spectacles", "glass"]


# --------------------------------------------------------------------------- CHAIR

CAPTIONS = [
    "Two stars next to a hot dog.",  # star; hot dog: hallucinated ("dog" is true, not "hot dog")
    "A man walks a puppy and a dog.",  # person, dog, dog: all true
    "Children feed mice near the buses.",  # person, mouse (hallucinated), bus
    "An empty field at dusk.",  # nothing mentioned
]
TRUE_OBJECTS = [{"star", "dog"}, {"person", "dog"}, {"person", "bus"}, {"dog", "star"}]


def test_chair_counts_every_mention():
    result = chair(CAPTIONS, TRUE_OBJECTS, VOCABULARY)
    # mentions 2 + 3 + 3 + 0 = 8, of which 2 hallucinated; captions 0 and 2 hallucinate.
    assert result == {
        "chair_i": 2 / 8,
        "chair_s": 2 / 4,
        "hallucinated": 2,
        "mentions": 8,
        "hallucinated_captions": 2,
        "captions": 4,
    }


def test_chair_without_mentions_is_zero():
    result = chair(["An empty field.", "Nothing here"], [set(), {"dog"}], VOCABULARY)
    assert result["chair_i"] == 0.0 and result["mentions"] == 0
    assert result["chair_s"] == 0.0 and result["captions"] == 2


def test_chair_accepts_any_collection_of_names():
    result = chair(("A puppy", "a star"), [["dog"], frozenset({"dog"})], VOCABULARY)
    assert (result["hallucinated"], result["mentions"]) == (1, 2)


def test_object_recall_and_precision_by_hand():
    result = object_recall_precision(CAPTIONS, TRUE_OBJECTS, VOCABULARY)
    # distinct mentions {star, hot dog}, {person, dog}, {person, mouse, bus}, {}:
    # true ones mentioned 1 + 2 + 2 + 0 = 5, of 2 + 2 + 2 + 2 = 8 true and 7 mentioned.
    assert result == {
        "recall": 5 / 8,
        "precision": 5 / 7,
        "matched": 5,
        "true": 8,
        "mentioned": 7,
    }
    empty = object_recall_precision(["nothing"], [set()], VOCABULARY)
    assert empty == {"recall": 0.0, "precision": 0.0, "matched": 0, "true": 0, "mentioned": 0}


# --------------------------------------------------------------------------- BLEU


def brute_force_bleu(candidates, references, max_n=4):
    """Corpus BLEU written out with loops, as nltk's `corpus_bleu` defines it."""

    def words(text):
        return "".join(c for c in text.lower() if c not in string.punctuation).split()

    def grams(tokens, n):
        return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]

    matched, total = [0] * max_n, [0] * max_n
    c = r = 0
    for candidate, refs in zip(candidates, references, strict=True):
        tokens, ref_tokens = words(candidate), [words(ref) for ref in refs]
        for n in range(1, max_n + 1):
            mine = grams(tokens, n)
            for gram in set(mine):
                most = max(grams(ref, n).count(gram) for ref in ref_tokens)
                matched[n - 1] += min(mine.count(gram), most)
            total[n - 1] += max(1, len(mine))
        c += len(tokens)
        r += sorted((len(ref) for ref in ref_tokens), key=lambda m: (abs(m - len(tokens)), m))[0]
    if 0 in matched:
        return 0.0
    precision = math.prod(Fraction(m, t) for m, t in zip(matched, total, strict=True))
    penalty = 1.0 if c > r else math.exp(1 - r / c)
    return penalty * float(precision) ** (1 / max_n)


CORPUS = ["a dog sat on the mat", "the cat the cat", "a red car"]
CORPUS_REFERENCES = [
    ["the dog sat on the mat", "a dog is on a mat"],
    ["the cat sat", "a cat and the cat"],
    ["a red car parked", "the red car"],
]


def test_bleu_by_hand():
    # Clipped matches / candidate n-grams, summed over the corpus:
    #   1-grams 6/6 + 3/4 ("the" clipped to 1) + 3/3 = 12/13
    #   2-grams 5/5 + 1/3 + 2/2 = 8/10;  3-grams 3/4 + 0/2 + 1/1 = 4/7
    #   4-grams 2/3 + 0/1 + 0/1 = 2/5 ("a red car" has no 4-gram and counts 1, as in nltk)
    # Lengths c = 13, r = 6 + 3 (4 is as close to 3 as to 5: the shorter) + 3 = 12: no penalty.
    expected = (12 / 13 * 8 / 10 * 4 / 7 * 2 / 5) ** 0.25
    assert bleu(CORPUS, CORPUS_REFERENCES) == pytest.approx(expected, rel=1e-12)
    assert bleu(CORPUS, CORPUS_REFERENCES) == pytest.approx(0.6409696348583733, rel=1e-12)  # nltk
    bleu2 = bleu(CORPUS, CORPUS_REFERENCES, max_n=2)
    assert bleu2 == pytest.approx(math.sqrt(12 / 13 * 8 / 10), rel=1e-12)
    assert bleu2 == pytest.approx(0.8593378488473195, rel=1e-12)  # nltk, weights (0.5, 0.5)


def test_bleu_textbook_values():
    assert bleu(["The cat sat on the mat."], [["the cat sat on the mat"]]) == 1.0
    # (5/6 · 3/5 · 2/4 · 1/3)^(1/4) = (1/12)^(1/4), equal lengths.
    value = bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert value == pytest.approx((1 / 12) ** 0.25, rel=1e-12)
    # Every precision 1, candidate 4 words against 6: brevity penalty exp(1 - 6/4).
    value = bleu(["the cat sat on"], [["the cat sat on the mat"]])
    assert value == pytest.approx(math.exp(-0.5), rel=1e-12)
    # References of 3 and 5 words are equally close to 4: the shorter one, so no penalty.
    assert bleu(["the cat sat on"], [["the cat sat", "the cat sat on it"]]) == 1.0
    # No shared 4-gram: 0.0 without smoothing.
    assert bleu(["the cat sat on the mat"], [["the cat is on the mat"]]) == 0.0
    assert bleu([""], [["a cat"]]) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_bleu_matches_a_brute_force_implementation(seed):
    rng = np.random.default_rng(seed)
    words = np.array(["a", "the", "cat", "sat", "on", "mat"])
    text = lambda low, high: list(rng.choice(words, int(rng.integers(low, high))))
    references = [[text(1, 10) for _ in range(int(rng.integers(1, 4)))] for _ in range(20)]
    candidates = []
    for refs in references:  # a reference with some words replaced or dropped, or short noise
        edited = [rng.choice(words) if rng.random() < 0.2 else w for w in refs[0]]
        edited = [w for w in edited if rng.random() > 0.1] if rng.random() < 0.8 else text(0, 4)
        candidates.append(" ".join(edited))
    references = [[" ".join(ref) for ref in refs] for refs in references]
    expected = brute_force_bleu(candidates, references)
    assert expected > 0  # a corpus this size has a 4-gram match: the test compares numbers
    assert bleu(candidates, references) == pytest.approx(expected, rel=1e-12)
    for max_n in (1, 2, 3):
        assert bleu(candidates, references, max_n=max_n) == pytest.approx(
            brute_force_bleu(candidates, references, max_n), rel=1e-12
        )


# --------------------------------------------------------------------------- CIDEr-D


def reference_cider_d(candidates, references, sigma=6.0, n=4):
    """CIDEr-D per image following the structure of pycocoevalcap's `cider_scorer.py`
    (its bigram-count length included), on whitespace-split words."""
    words = lambda text: "".join(c for c in text.lower() if c not in string.punctuation).split()

    def cook(text):
        tokens, counts = words(text), {}
        for k in range(1, n + 1):
            for i in range(len(tokens) - k + 1):
                gram = tuple(tokens[i : i + k])
                counts[gram] = counts.get(gram, 0) + 1
        return counts

    tests = [cook(text) for text in candidates]
    refs = [[cook(text) for text in group] for group in references]
    frequency = {}
    for group in refs:
        for gram in {gram for ref in group for gram in ref}:
            frequency[gram] = frequency.get(gram, 0) + 1
    log_images = np.log(float(len(refs)))

    def vec(counts):
        vector, norm, length = [{} for _ in range(n)], [0.0] * n, 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            vector[k][gram] = tf * (log_images - np.log(max(1.0, frequency.get(gram, 0.0))))
            norm[k] += vector[k][gram] ** 2
            length += tf if k == 1 else 0
        return vector, [np.sqrt(x) for x in norm], length

    scores = []
    for test, group in zip(tests, refs, strict=True):
        v, nv, lv = vec(test)
        total = np.zeros(n)
        for ref in group:
            r, nr, lr = vec(ref)
            val = np.zeros(n)
            for k in range(n):
                for gram in v[k]:
                    val[k] += min(v[k][gram], r[k].get(gram, 0.0)) * r[k].get(gram, 0.0)
                if nv[k] != 0 and nr[k] != 0:
                    val[k] /= nv[k] * nr[k]
                val[k] *= np.e ** (-(float(lv - lr) ** 2) / (2 * sigma**2))
            total += val
        scores.append(np.mean(total) / len(group) * 10.0)
    return np.array(scores)


def test_cider_d_by_hand():
    # Two images, N = 2: every reference n-gram is in one image's references, so its weight
    # is log 2 - log 1. Image 1: "a b" against "a b" has cosine 1 for 1- and 2-grams and no
    # 3- or 4-grams: 10 * (1 + 1 + 0 + 0) / 4 = 5. Image 2: "c d e" against "c d": 1-gram
    # cosine 2 / (√3 √2), 2-gram cosine 1 / √2, length penalty exp(-1 / 72).
    per_image = cider_d_per_image(["a b", "c d e"], [["a b"], ["c d"]])
    second = 10 * math.exp(-1 / 72) * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4
    np.testing.assert_allclose(per_image, [5.0, second], rtol=1e-12)
    np.testing.assert_allclose(per_image, [5.0, 3.7564712], rtol=1e-7)  # pycocoevalcap 1.2
    assert cider_d(["a b", "c d e"], [["a b"], ["c d"]]) == pytest.approx((5 + second) / 2)


def test_cider_d_against_pycocoevalcap_values():
    per_image = cider_d_per_image(CORPUS, CORPUS_REFERENCES)
    expected = [5.329595727464547, 2.346352479530731, 4.759779022150067]  # pycocoevalcap 1.2
    np.testing.assert_allclose(per_image, expected, rtol=1e-12)
    assert cider_d(CORPUS, CORPUS_REFERENCES) == pytest.approx(4.145242409715115, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_cider_d_matches_the_reference_structure(seed):
    rng = np.random.default_rng(seed)
    words = ["a", "the", "cat", "dog", "sat", "on", "mat"]
    text = lambda low, high: " ".join(rng.choice(words, int(rng.integers(low, high))))
    candidates = [text(0, 9) for _ in range(12)]
    references = [[text(0, 10) for _ in range(int(rng.integers(1, 5)))] for _ in range(12)]
    for sigma, n in ((6.0, 4), (2.0, 3)):
        np.testing.assert_allclose(
            cider_d_per_image(candidates, references, sigma=sigma, n=n),
            reference_cider_d(candidates, references, sigma=sigma, n=n),
            rtol=1e-12,
            atol=1e-14,
        )


def test_cider_d_prefers_the_consensus():
    references = [["a dog runs on the grass", "a dog runs on grass"], ["two red cars", "red cars"]]
    exact = cider_d_per_image(["a dog runs on the grass", "two red cars"], references)
    partial = cider_d_per_image(["a cat sits on the grass", "two red cars"], references)
    assert exact[0] > partial[0] > 0
    assert exact[1] == partial[1]


def test_cider_d_of_one_image_is_zero():
    # With one image every reference n-gram is in every image's references: weight log 1 = 0.
    assert cider_d(["a dog"], [["a dog"]]) == 0.0


# --------------------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    ("synonyms", "irregular", "match"),
    [
        ({}, None, r"^synonyms: expected a non-empty mapping"),
        (["dog"], None, r"^synonyms: expected a non-empty mapping"),
        ({"dog": ["dog"], "hound": ["Dog"]}, None, r"^synonyms: 'dog' is claimed by both"),
        ({"dog": []}, None, r"^synonyms\['dog'\]: expected at least one synonym"),
        ({"dog": "dog"}, None, r"^synonyms\['dog'\]: expected a list of synonyms"),
        ({"dog": [3]}, None, r"^synonyms\['dog'\]: expected synonyms as str"),
        ({"dog": ["42"]}, None, r"^synonyms\['dog'\]: synonym '42' has no letters"),
        ({"": ["dog"]}, None, r"^synonyms: expected category names"),
        ({"a": ["box"], "b": ["boxe"]}, None, r"^synonyms: the plural 'boxes' belongs to both"),
        ({"dog": ["dog"]}, ["dogs"], r"^irregular_plurals: expected a mapping"),
        ({"mouse": ["mouse"]}, {"mouse": "the mice"}, r"^irregular_plurals: expected single"),
    ],
)
def test_a_bad_vocabulary_is_refused(synonyms, irregular, match):
    with pytest.raises(ValueError, match=match):
        ObjectVocabulary(synonyms, irregular_plurals=irregular)


@pytest.mark.parametrize("function", [chair, object_recall_precision])
@pytest.mark.parametrize(
    ("captions", "true_objects", "vocabulary", "match"),
    [
        (["a dog"], [{"dog"}], {"dog": ["dog"]}, r"^vocabulary: expected an ObjectVocabulary"),
        ("a dog", [{"dog"}], VOCABULARY, r"^captions: expected a sequence of str"),
        ([], [], VOCABULARY, r"^captions: expected at least one str"),
        (["a dog", 3], [{"dog"}, set()], VOCABULARY, r"^captions\[1\]: expected a str"),
        (["a dog"], [{"dog"}, set()], VOCABULARY, r"^true_objects: expected 1 entries"),
        (["a dog"], "dog", VOCABULARY, r"^true_objects: expected one collection"),
        (["a dog"], ["dog"], VOCABULARY, r"^true_objects\[0\]: expected a collection"),
        (["a", "b"], [set(), {"cat"}], VOCABULARY, r"^true_objects\[1\]: unknown categories"),
    ],
)
def test_bad_object_inputs_are_refused(function, captions, true_objects, vocabulary, match):
    with pytest.raises(ValueError, match=match):
        function(captions, true_objects, vocabulary)


def test_mentions_refuses_a_non_string():
    with pytest.raises(ValueError, match=r"^caption: expected a str, got list"):
        VOCABULARY.mentions(["a dog"])


@pytest.mark.parametrize("function", [bleu, cider_d, cider_d_per_image])
@pytest.mark.parametrize(
    ("candidates", "references", "match"),
    [
        ("a dog", [["a dog"]], r"^candidates: expected a sequence of str"),
        ([], [], r"^candidates: expected at least one str"),
        ([b"a dog"], [["a dog"]], r"^candidates\[0\]: expected a str, got bytes"),
        (["a dog"], [["a dog"], ["a cat"]], r"^references: expected 1 entries"),
        (["a dog"], None, r"^references: expected one sequence"),
        (["a dog"], ["a dog"], r"^references\[0\]: expected a sequence of reference captions"),
        (["a dog"], [[]], r"^references\[0\]: expected at least one str"),
        (["a dog"], [["a dog", None]], r"^references\[0\]\[1\]: expected a str"),
    ],
)
def test_bad_corpora_are_refused(function, candidates, references, match):
    with pytest.raises(ValueError, match=match):
        function(candidates, references)


def test_bad_orders_and_widths_are_refused():
    with pytest.raises(ValueError, match=r"^max_n: expected an int >= 1, got 0"):
        bleu(["a"], [["a"]], max_n=0)
    with pytest.raises(ValueError, match=r"^sigma: expected a finite number > 0.0, got 0"):
        cider_d(["a", "b"], [["a"], ["b"]], sigma=0)
    with pytest.raises(ValueError, match=r"^n: expected an int >= 1, got 2.0"):
        cider_d(["a", "b"], [["a"], ["b"]], n=2.0)
