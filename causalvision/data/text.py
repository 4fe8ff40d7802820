"""A word-level vocabulary: captions to token ids and back.

Ids 0-3 are the special tokens `<pad>`, `<bos>`, `<eos>` and `<unk>` (the convention
`causalvision.nn.Captioner` and the counterfactual captioning losses read); the words follow
in the order given. A text is split into tokens by `tokenize`: runs of characters other than
white space and the punctuation marks `, . ; : ! ?`, each of which is a token of its own.
`decode` joins tokens with single spaces and writes no space before a punctuation mark, so a
text written that way ("a red circle, a blue star") round-trips exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from causalvision.validation import check_int

__all__ = ["Vocabulary", "tokenize"]

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PUNCTUATION = ",.;:!?"
_TOKEN = re.compile(rf"[{re.escape(PUNCTUATION)}]|[^\s{re.escape(PUNCTUATION)}]+")


def tokenize(text: str) -> list[str]:
    """The tokens of `text`: words (runs of non-space, non-punctuation characters) and
    punctuation marks, in order; case is kept."""
    if not isinstance(text, str):
        raise ValueError(f"text: expected a str, got {type(text).__name__}")
    return _TOKEN.findall(text)


def _join(tokens: Sequence[str]) -> str:
    out = ""
    for token in tokens:
        out += token if (not out or token in PUNCTUATION) else " " + token
    return out


class Vocabulary:
    """Words to ids and back, with `<pad>` = 0, `<bos>` = 1, `<eos>` = 2, `<unk>` = 3.

    Args:
      words: the distinct tokens after the special ones (ids 4, 5, ...), in this order.

    Attributes:
      tokens: every token by id, the special ones first.
      pad_id, bos_id, eos_id, unk_id: 0, 1, 2, 3.

    Example:
      >>> vocab = Vocabulary.from_texts(["a red circle", "two blue stars"])
      >>> ids, mask = vocab.encode(["a red circle"], max_len=6)
      >>> ids.tolist(), mask.tolist()
      ([[1, 4, 7, 6, 2, 0]], [[True, True, True, True, True, False]])
      >>> vocab.decode(ids)
      ['a red circle']
    """

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Iterable[str]):
        if isinstance(words, str) or not isinstance(words, Iterable):
            raise ValueError(f"words: expected a sequence of str, got {words!r}")
        words = tuple(words)
        bad = [w for w in words if not isinstance(w, str) or tokenize(w) != [w]]
        if bad:
            raise ValueError(
                f"words: expected single tokens (no spaces; punctuation marks alone), got {bad[:3]}"
            )
        special = sorted(set(words) & set(SPECIALS))
        if special:
            raise ValueError(f"words: {special} are the special tokens; leave them out")
        if len(set(words)) != len(words):
            repeated = sorted({w for w in words if words.count(w) > 1})
            raise ValueError(f"words: expected distinct tokens, got repeats {repeated[:3]}")
        self.tokens: tuple[str, ...] = (*SPECIALS, *words)
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocabulary:
        """The vocabulary of every token in `texts`, sorted."""
        if isinstance(texts, str):
            raise ValueError("texts: expected a sequence of str, got one str")
        return cls(sorted({t for text in texts for t in tokenize(text)} - set(SPECIALS)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {', '.join(self.tokens[4:10])}, ...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.tokens == self.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def lookup(self, tokens: Iterable[str]) -> np.ndarray:
        """The ids `(L,)` int32 of `tokens` (a list of tokens, or one text), `<unk>` for
        unknown ones; no `<bos>` or `<eos>` added."""
        if isinstance(tokens, str):
            tokens = tokenize(tokens)
        return np.asarray([self._ids.get(t, self.unk_id) for t in tokens], np.int32)

    def encode(self, texts: Sequence[str], max_len: int | None = None) -> tuple[Any, Any]:
        """Token ids and mask of `texts`, each `[<bos>, tokens..., <eos>]` then `<pad>`.

        Args:
          texts: N strings.
          max_len: T, the length of every row, `<bos>` and `<eos>` included (>= 2); None
            for the longest text's. A text that needs more is refused, not cut.

        Returns:
          `(ids, mask)`: `(N, T)` int32 ids (unknown words are `<unk>`) and `(N, T)` bool,
          True on the `<bos>`, word and `<eos>` positions.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(f"texts: expected a sequence of str, got {type(texts).__name__}")
        rows = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}]: expected a str, got {type(text).__name__}")
            rows.append([self.bos_id, *self.lookup(tokenize(text)).tolist(), self.eos_id])
        longest = max((len(r) for r in rows), default=2)
        length = longest if max_len is None else check_int(max_len, "max_len", 2)
        if longest > length:
            i = next(i for i, r in enumerate(rows) if len(r) > length)
            raise ValueError(
                f"max_len: texts[{i}] needs {len(rows[i])} tokens with <bos> and <eos>, "
                f"more than max_len={length}: {texts[i]!r}"
            )
        ids = np.full((len(rows), length), self.pad_id, np.int32)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        return ids, ids != self.pad_id

    def decode(self, ids: Any) -> list[str] | str:
        """Texts of token ids `(N, T)` (a list of N strings) or `(T,)` (one string).

        A leading `<bos>` is dropped, reading stops at the first `<eos>`, `<pad>` is skipped;
        `<unk>` stays as the word "<unk>".
        """
        array = np.asarray(ids)
        if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"ids: expected integer ids of shape (N, T) or (T,), got {array.dtype} "
                f"{array.shape}"
            )
        bad = (array < 0) | (array >= len(self))
        if bad.any():
            raise ValueError(
                f"ids: expected ids in [0, {len(self) - 1}], got e.g. {array[bad][:3].tolist()}"
            )
        if array.ndim == 1:
            return self._decode_row(array)
        return [self._decode_row(row) for row in array]

    def _decode_row(self, row: np.ndarray) -> str:
        tokens = []
        for position, i in enumerate(row.tolist()):
            if i == self.eos_id:
                break
            if i == self.pad_id or (i == self.bos_id and position == 0):
                continue
            tokens.append(self.tokens[i])
        return _join(tokens)
