"""Caption metrics: object hallucination (CHAIR) and object recall / precision against a
vocabulary of object categories, and the corpus n-gram scores BLEU and CIDEr-D (pure Python).

Objects in a caption (REFERENCE §5.2)
-------------------------------------
An `ObjectVocabulary` maps phrases to object categories. A caption is lower-cased and split
into words at every character that is not a letter ("A hot-dog's bun" → a, hot, dog, s, bun);
each synonym is split the same way, and its plural is recognised too: the last word takes
-es after s, x, z, ch or sh, -ies for -y after a consonant, -s otherwise ("bus" → "buses",
"butterfly" → "butterflies", "hot dog" → "hot dogs"), and an irregular plural given for that
word ("mouse" → "mice") is recognised as well. The words are read left to right; at each
word the longest phrase of the vocabulary that starts there is taken, and reading resumes
after it; a word that starts no phrase is skipped. So "hot dog" is one mention of its own
category, never a mention of "dog", and every repetition is a mention of its own. Explicit
synonyms win over plural forms (a synonym "glasses" is not read as the plural of "glass").
The published reference (Rohrbach et al.'s `chair.py`) singularises with a lemmatiser and
has hand-written two-word rules; here both are spelled out in the vocabulary.

CHAIR (Rohrbach et al., EMNLP 2018): a mention is hallucinated when its category is not among
the true objects of its caption's image.

    CHAIR_i = hallucinated mentions / all mentions
    CHAIR_s = captions with at least one hallucinated mention / all captions

The true objects of an image are whatever the caller passes: the reference protocol takes its
annotated objects together with the categories mentioned in its reference captions
(`set().union(*map(vocabulary.mentions, refs))`). `object_recall_precision` counts distinct
categories per caption: recall = true categories mentioned / true categories, precision =
mentioned categories that are true / mentioned categories, both summed over the captions
before dividing. A ratio whose denominator is 0 is 0.0 throughout (no mention: CHAIR_i = 0.0);
the counts returned with each ratio tell that case apart and let results be pooled.

N-gram scores
-------------
Captions are lower-cased, the ASCII punctuation marks are deleted (so "don't" → "dont"), and
what remains is split at white space. Text tokenised with spaces around its punctuation (as
the PTB tokenizer of the usual caption toolkits writes it) scores the same here as there.

`bleu` is corpus BLEU (Papineni et al., ACL 2002) with uniform weights as computed by
`nltk.translate.bleu_score.corpus_bleu` without smoothing: the clipped n-gram matches (each
n-gram counted at most as often as in the reference holding it most often) and the candidate
n-gram counts are summed over the corpus, a candidate shorter than n adding 1 to the count of
order n as nltk does; the brevity penalty exp(1 − r/c) uses r = the sum over candidates of the
reference length closest to the candidate's (ties: the shorter) and c = the candidates' total
length. BLEU is 0.0 when some order has no match (nltk returns a tiny positive number there,
with a warning).

`cider_d` is CIDEr-D (Vedantam et al., CVPR 2015) as computed by the reference
`cider_scorer.py` (vrama91/cider, `pyciderevalcap/ciderD`, corpus document frequency): each
text becomes one TF-IDF vector per order k = 1..n with weights tf(g) · (log N − log max(1,
df(g))), N the number of images and df(g) the number of images whose references contain g.
With the candidate's vector c and a reference's vector r of order k,

    s_k(c, r) = Σ_g min(c_g, r_g) r_g / (|c| |r|) · exp(−(l_c − l_r)² / (2σ²))

(0 when either vector is zero; l the lengths in words), and an image scores
10 · mean_k mean_refs s_k. `cider_d` is the mean over images, `cider_d_per_image` the scores.
An n-gram that appears in the references of every image has weight 0, so a corpus of one
image scores 0.0. (The reference measures length in bigrams, words − 1; the scores agree
whenever n ≥ 2, and for n = 1 it applies no length penalty at all.)

Retrieval
---------
`recall_at_k` scores image-text matching from a similarity matrix s `[N, M]` (image i against
text j). Image → text: for image i, the rank of its best-scoring matching text is the number
of non-matching texts scoring at least as high (0 = first); image i is retrieved at K when
that rank is < K. Text → image is the same over the columns. Ties count against the model: a
non-match scoring exactly as high as the best match is ranked above it, so a constant
similarity retrieves nothing at K < the number of non-matches.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from causalvision.validation import check_int, check_real, check_real_array

__all__ = [
    "ObjectVocabulary",
    "bleu",
    "chair",
    "cider_d",
    "cider_d_per_image",
    "object_recall_precision",
    "recall_at_k",
]

_LETTER_RUNS = re.compile(r"[^\W\d_]+")  # runs of letters, of any alphabet
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


# ------------------------------------------------------------------------------ objects


class ObjectVocabulary:
    """The object categories CHAIR counts, each with the phrases that name it.

    Args:
      synonyms: `{category: [synonym, ...]}`; a synonym is one word or several ("hot dog").
        The category's own name is not a synonym unless listed. No phrase may belong to two
        categories.
      irregular_plurals: `{singular: plural}` of single words ("mouse": "mice"), recognised
        wherever a synonym ends in the singular; words no synonym ends in are ignored.

    Example:
        >>> vocabulary = ObjectVocabulary(
        ...     {"dog": ["dog", "puppy"], "hot dog": ["hot dog"], "mouse": ["mouse"]},
        ...     irregular_plurals={"mouse": "mice"},
        ... )
        >>> vocabulary.mentions("Two puppies and a hot dog, no mice.")
        ['dog', 'hot dog', 'mouse']
    """

    def __init__(
        self,
        synonyms: Mapping[str, Iterable[str]],
        irregular_plurals: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(synonyms, Mapping) or not synonyms:
            raise ValueError(
                "synonyms: expected a non-empty mapping {category: [synonym, ...]}, got "
                f"{_describe(synonyms)}"
            )
        irregular = _check_irregular(irregular_plurals)
        explicit: dict[tuple[str, ...], str] = {}
        for category, phrases in synonyms.items():
            for phrase in _check_phrases(category, phrases):
                owner = explicit.setdefault(phrase, category)
                if owner != category:
                    raise ValueError(
                        f"synonyms: {' '.join(phrase)!r} is claimed by both categories "
                        f"{owner!r} and {category!r}"
                    )
        plurals: dict[tuple[str, ...], str] = {}
        for phrase, category in explicit.items():
            last = phrase[-1]
            endings = (_plural(last),) + ((irregular[last],) if last in irregular else ())
            for ending in endings:
                form = (*phrase[:-1], ending)
                if form in explicit:  # an explicit synonym wins over a plural form
                    continue
                owner = plurals.setdefault(form, category)
                if owner != category:
                    raise ValueError(
                        f"synonyms: the plural {' '.join(form)!r} belongs to both categories "
                        f"{owner!r} and {category!r}; list it as a synonym of one of them"
                    )
        self._categories = tuple(synonyms)
        self._phrases = {**explicit, **plurals}
        self._longest = max(len(phrase) for phrase in self._phrases)

    @property
    def categories(self) -> tuple[str, ...]:
        """The category names, in the order given."""
        return self._categories

    @property
    def phrases(self) -> dict[str, str]:
        """Every phrase recognised (synonyms and their plurals, words joined by one space),
        mapped to its category: a copy."""
        return {" ".join(phrase): category for phrase, category in self._phrases.items()}

    def mentions(self, caption: str) -> list[str]:
        """The categories `caption` mentions, in order, one entry per mention (module
        docstring: longest phrase first, plurals included)."""
        if not isinstance(caption, str):
            raise ValueError(f"caption: expected a str, got {_describe(caption)}")
        words = _letter_words(caption)
        found, start = [], 0
        while start < len(words):
            for size in range(min(self._longest, len(words) - start), 0, -1):
                category = self._phrases.get(tuple(words[start : start + size]))
                if category is not None:
                    found.append(category)
                    start += size
                    break
            else:
                start += 1
        return found

    def __repr__(self) -> str:
        return f"ObjectVocabulary({len(self._categories)} categories, {len(self._phrases)} phrases)"


def chair(
    captions: Sequence[str],
    true_objects: Sequence[Collection[str]],
    vocabulary: ObjectVocabulary,
) -> dict[str, float | int]:
    """CHAIR_i and CHAIR_s of captions against their images' true object categories.

    Args:
      captions: one caption per image.
      true_objects: for each caption, the categories (names in `vocabulary.categories`) that
        are really in its image.
      vocabulary: the categories and the phrases that name them.

    Returns:
      `{"chair_i", "chair_s"}` (floats in [0, 1]; CHAIR_i is 0.0 when nothing is mentioned)
      and the counts they are ratios of, for pooling: `"hallucinated"` / `"mentions"` (object
      mentions) and `"hallucinated_captions"` / `"captions"`.
    """
    captions, truths = _check_object_inputs(captions, true_objects, vocabulary)
    mentions = hallucinated = hallucinated_captions = 0
    for caption, truth in zip(captions, truths, strict=True):
        found = vocabulary.mentions(caption)
        wrong = sum(category not in truth for category in found)
        mentions += len(found)
        hallucinated += wrong
        hallucinated_captions += wrong > 0
    return {
        "chair_i": _ratio(hallucinated, mentions),
        "chair_s": _ratio(hallucinated_captions, len(captions)),
        "hallucinated": hallucinated,
        "mentions": mentions,
        "hallucinated_captions": hallucinated_captions,
        "captions": len(captions),
    }


def object_recall_precision(
    captions: Sequence[str],
    true_objects: Sequence[Collection[str]],
    vocabulary: ObjectVocabulary,
) -> dict[str, float | int]:
    """Recall and precision of the distinct object categories each caption mentions.

    Same arguments as `chair`. Returns `{"recall", "precision"}` (micro-averaged: the counts
    are summed over captions first; 0.0 over a count of 0) and the counts: `"matched"` (true
    categories mentioned), `"true"` (true categories) and `"mentioned"` (distinct categories
    mentioned), so recall = matched / true and precision = matched / mentioned.
    """
    captions, truths = _check_object_inputs(captions, true_objects, vocabulary)
    matched = true = mentioned = 0
    for caption, truth in zip(captions, truths, strict=True):
        found = set(vocabulary.mentions(caption))
        matched += len(found & truth)
        true += len(truth)
        mentioned += len(found)
    return {
        "recall": _ratio(matched, true),
        "precision": _ratio(matched, mentioned),
        "matched": matched,
        "true": true,
        "mentioned": mentioned,
    }


def _check_phrases(category: Any, phrases: Any) -> list[tuple[str, ...]]:
    """The synonyms of one category, each as its tuple of lower-case words."""
    if not isinstance(category, str) or not category:
        raise ValueError(f"synonyms: expected category names as non-empty str, got {category!r}")
    where = f"synonyms[{category!r}]"
    if isinstance(phrases, str | bytes) or not isinstance(phrases, Iterable):
        raise ValueError(f"{where}: expected a list of synonyms, got {_describe(phrases)}")
    phrases = list(phrases)
    if not phrases:
        raise ValueError(f"{where}: expected at least one synonym, got none")
    words = []
    for phrase in phrases:
        if not isinstance(phrase, str):
            raise ValueError(f"{where}: expected synonyms as str, got {_describe(phrase)}")
        split = tuple(_letter_words(phrase))
        if not split:
            raise ValueError(f"{where}: synonym {phrase!r} has no letters")
        words.append(split)
    return words


def _check_irregular(irregular_plurals: Any) -> dict[str, str]:
    if irregular_plurals is None:
        return {}
    if not isinstance(irregular_plurals, Mapping):
        raise ValueError(
            "irregular_plurals: expected a mapping {singular: plural}, got "
            f"{_describe(irregular_plurals)}"
        )
    irregular = {}
    for singular, plural in irregular_plurals.items():
        pair = [_letter_words(word) if isinstance(word, str) else [] for word in (singular, plural)]
        if any(len(words) != 1 for words in pair):
            raise ValueError(
                "irregular_plurals: expected single words {singular: plural}, got "
                f"{singular!r}: {plural!r}"
            )
        irregular[pair[0][0]] = pair[1][0]
    return irregular


def _one_per(value: Any, argument: str, num: int, item: str, per: str) -> list[Any]:
    """`value` as a list of `num` entries, one `item` per `per` (not a string)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"{argument}: expected one {item} per {per}, got {_describe(value)}")
    value = list(value)
    if len(value) != num:
        raise ValueError(f"{argument}: expected {num} entries (one per {per}), got {len(value)}")
    return value


def _check_object_inputs(
    captions: Any, true_objects: Any, vocabulary: Any
) -> tuple[list[str], list[set[str]]]:
    if not isinstance(vocabulary, ObjectVocabulary):
        raise ValueError(f"vocabulary: expected an ObjectVocabulary, got {_describe(vocabulary)}")
    captions = _check_texts(captions, "captions")
    true_objects = _one_per(
        true_objects, "true_objects", len(captions), "collection of category names", "caption"
    )
    known = set(vocabulary.categories)
    truths = []
    for index, objects in enumerate(true_objects):
        if isinstance(objects, str | bytes) or not isinstance(objects, Iterable):
            raise ValueError(
                f"true_objects[{index}]: expected a collection of category names (a str is "
                f"not one; wrap it in a set), got {_describe(objects)}"
            )
        objects = list(objects)
        unknown = [name for name in objects if not isinstance(name, str) or name not in known]
        if unknown:
            raise ValueError(
                f"true_objects[{index}]: unknown categories {unknown[:5]!r}; expected names "
                f"from vocabulary.categories, e.g. {list(vocabulary.categories[:5])!r}"
            )
        truths.append(set(objects))
    return captions, truths


def _plural(word: str) -> str:
    """The regular English plural of a lower-case word."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word[-1] == "y" and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _letter_words(text: str) -> list[str]:
    return _LETTER_RUNS.findall(text.lower())


# ------------------------------------------------------------------------------ n-gram scores


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU with uniform weights over n-gram orders 1..max_n (module docstring).

    Args:
      candidates: one caption per image.
      references: for each candidate, a non-empty sequence of its reference captions.
      max_n: the highest n-gram order (4 for BLEU-4).

    Returns:
      BLEU in [0, 1]; 0.0 when some order has no clipped match.
    """
    candidates, references = _check_corpus(candidates, references)
    max_n = check_int(max_n, "max_n", 1)
    matches, totals = [0] * max_n, [0] * max_n
    candidate_length = reference_length = 0
    for candidate, refs in zip(candidates, references, strict=True):
        words, ref_words = _words(candidate), [_words(ref) for ref in refs]
        for order in range(1, max_n + 1):
            counts = _ngrams(words, order)
            most = Counter()
            for ref in ref_words:
                most |= _ngrams(ref, order)  # elementwise max over the references
            matches[order - 1] += sum(min(count, most[gram]) for gram, count in counts.items())
            totals[order - 1] += max(1, sum(counts.values()))
        candidate_length += len(words)
        reference_length += min(
            (len(ref) for ref in ref_words), key=lambda size: (abs(size - len(words)), size)
        )
    if min(matches) == 0:
        return 0.0
    if candidate_length > reference_length:
        penalty = 1.0
    else:
        penalty = math.exp(1 - reference_length / candidate_length)
    weight = 1 / max_n
    logs = (weight * math.log(m / t) for m, t in zip(matches, totals, strict=True))
    return penalty * math.exp(math.fsum(logs))


def cider_d_per_image(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    sigma: float = 6.0,
    n: int = 4,
) -> np.ndarray:
    """CIDEr-D of each candidate `(N,)`, float64, with document frequencies over the
    references of these N images (module docstring).

    Args:
      candidates: one caption per image.
      references: for each candidate, a non-empty sequence of its reference captions.
      sigma: the width of the Gaussian length penalty, in words (> 0).
      n: the highest n-gram order.
    """
    candidates, references = _check_corpus(candidates, references)
    sigma = check_real(sigma, "sigma", 0.0, open_low=True)
    n = check_int(n, "n", 1)
    candidate_words = [_words(text) for text in candidates]
    reference_words = [[_words(text) for text in refs] for refs in references]
    frequency: Counter[tuple[str, ...]] = Counter()
    for refs in reference_words:
        frequency.update({gram for ref in refs for gram in _all_ngrams(ref, n)})
    log_images = math.log(len(candidates))

    def vectors(words: list[str]) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
        by_order: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
        for gram, count in _all_ngrams(words, n).items():
            weight = log_images - math.log(max(1.0, frequency[gram]))
            by_order[len(gram) - 1][gram] = count * weight
        norms = [math.sqrt(sum(v * v for v in vector.values())) for vector in by_order]
        return by_order, norms

    scores = np.zeros(len(candidates))
    for image, (words, refs) in enumerate(zip(candidate_words, reference_words, strict=True)):
        vector, norm = vectors(words)
        total = 0.0
        for ref in refs:
            ref_vector, ref_norm = vectors(ref)
            penalty = math.exp(-((len(words) - len(ref)) ** 2) / (2 * sigma**2))
            for order in range(n):
                if norm[order] == 0 or ref_norm[order] == 0:
                    continue
                other = ref_vector[order]
                dot = sum(
                    min(value, other.get(gram, 0.0)) * other.get(gram, 0.0)
                    for gram, value in vector[order].items()
                )
                total += dot / (norm[order] * ref_norm[order]) * penalty
        scores[image] = 10.0 * total / (n * len(refs))
    return scores


def cider_d(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    sigma: float = 6.0,
    n: int = 4,
) -> float:
    """Corpus CIDEr-D: the mean of `cider_d_per_image` (same arguments)."""
    return float(np.mean(cider_d_per_image(candidates, references, sigma=sigma, n=n)))


def _check_corpus(candidates: Any, references: Any) -> tuple[list[str], list[list[str]]]:
    candidates = _check_texts(candidates, "candidates")
    references = _one_per(
        references, "references", len(candidates), "sequence of reference captions", "candidate"
    )
    checked = []
    for index, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(
                f"references[{index}]: expected a sequence of reference captions (a str is "
                f"not one; wrap it in a list), got {_describe(refs)}"
            )
        checked.append(_check_texts(refs, f"references[{index}]"))
    return candidates, checked


def _words(text: str) -> list[str]:
    """Lower-cased, ASCII punctuation deleted, split at white space."""
    return text.lower().translate(_NO_PUNCTUATION).split()


def _ngrams(words: list[str], order: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + order]) for i in range(len(words) - order + 1))


def _all_ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for order in range(1, n + 1):
        counts.update(_ngrams(words, order))
    return counts


# ------------------------------------------------------------------------------ retrieval


def recall_at_k(
    similarity: Any, k_values: Sequence[int] | int = (1, 5, 10), matches: Any = None
) -> dict[str, float]:
    """Image → text and text → image recall@K from a similarity matrix.

    Args:
      similarity: `[N, M]` finite scores, image i against text j (higher = more similar).
      k_values: the cut-offs K, each in [1, min(N, M)] (a K larger than either gallery
        would make that recall trivially 1).
      matches: optional boolean `[N, M]`, True where text j describes image i (several texts
        per image, or several images per text); every image and every text needs a match.
        Default: image i matches text i (needs N = M).

    Returns:
      `{"i2t_r{K}": ..., "t2i_r{K}": ...}` for each K: the fraction of images (texts) whose
      best match is ranked < K among the other side's items, ties counted against the model
      (see the module docstring).
    """
    scores = np.asarray(check_real_array(similarity, "similarity"))
    if scores.ndim != 2 or min(scores.shape) < 1:
        raise ValueError(
            f"similarity: expected a 2-D array (N, M) with N, M >= 1, got shape {scores.shape}"
        )
    n, m = scores.shape
    if matches is None:
        if n != m:
            raise ValueError(
                f"matches: needed when similarity is not square (image i matches text i), "
                f"got similarity of shape {scores.shape}"
            )
        pairs = np.eye(n, dtype=bool)
    else:
        pairs = np.asarray(matches)
        if pairs.shape != scores.shape or pairs.dtype != np.bool_:
            raise ValueError(
                f"matches: expected a boolean array of shape {scores.shape} (the similarity's), "
                f"got {_describe_array(pairs)}"
            )
        for axis, what in ((1, "image(s)"), (0, "text(s)")):
            empty = np.flatnonzero(~pairs.any(axis=axis))
            if empty.size:
                raise ValueError(f"matches: {what} {empty.tolist()[:5]} have no match")
    if isinstance(k_values, int | np.integer) and not isinstance(k_values, bool):
        k_values = (k_values,)
    if isinstance(k_values, str) or not isinstance(k_values, Iterable):
        raise ValueError(f"k_values: expected a non-empty sequence of ints, got {k_values!r}")
    ks = [check_int(k, "k_values", 1) for k in k_values]
    if not ks:
        raise ValueError("k_values: expected a non-empty sequence of ints, got an empty one")
    for k in ks:
        if k > min(n, m):
            raise ValueError(
                f"k_values: K = {k} is larger than the gallery ({m} texts for an image, "
                f"{n} images for a text)"
            )
    i2t = _match_ranks(scores, pairs)
    t2i = _match_ranks(scores.T, pairs.T)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = float(np.mean(i2t < k))
    for k in ks:
        out[f"t2i_r{k}"] = float(np.mean(t2i < k))
    return out


def _match_ranks(scores: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per row: the number of non-matches scoring >= the row's best match, `[N]` int."""
    best = np.max(np.where(pairs, scores, -np.inf), axis=1, keepdims=True)
    return np.sum(~pairs & (scores >= best), axis=1)


def _describe_array(value: np.ndarray) -> str:
    return f"shape {value.shape} of {value.dtype}"


# ------------------------------------------------------------------------------ shared


def _check_texts(values: Any, argument: str) -> list[str]:
    """`values` as a non-empty list of str."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{argument}: expected a sequence of str, got {_describe(values)}")
    values = list(values)
    if not values:
        raise ValueError(f"{argument}: expected at least one str, got an empty sequence")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"{argument}[{index}]: expected a str, got {_describe(value)}")
    return values


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _describe(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {text}"
