"""Steps 2 and 3: exact and near-duplicate removal, streaming (the first copy seen is kept).

:class:`ExactDedup` keeps a set of 16-byte BLAKE2b digests of the normalised text.
:class:`NearDedup` is MinHash LSH (``datasketch``) over character n-gram shingles of the text
with case folded and everything but letters and digits removed, so it needs no word
segmentation for Chinese and ignores punctuation and spacing edits. A candidate from the LSH
index counts as a duplicate only if the MinHash estimate of its Jaccard similarity with the new
document reaches ``threshold``; the index keeps each document's signature (``num_perm`` 32-bit
values) for that check. Shingles are hashed with CRC-32 (C speed; the MinHash permutations
spread them) instead of datasketch's SHA-1 default, about 3 times faster. Both indexes grow
with the number of distinct documents kept: the only state of the pipeline that is not
bounded (see docs/corpus.md for the bytes per document).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

from suanwang.corpus.documents import Doc, Kept, Outcome, Removed


@dataclass(frozen=True, slots=True)
class NearDedupConfig:
    """MinHash LSH settings: ``threshold`` was tuned on the tuning sample (docs/corpus.md)."""

    threshold: float = 0.5
    num_perm: int = 128
    shingle_chars: int = 5
    seed: int = 1


class ExactDedup:
    """Removes a document whose normalised text was seen before."""

    name = "exact_dedup"

    def __init__(self) -> None:
        self._seen: dict[bytes, str] = {}

    def apply(self, doc: Doc) -> Outcome:
        digest = hashlib.blake2b(doc.text.encode("utf-8"), digest_size=16).digest()
        first = self._seen.get(digest)
        if first is not None:
            return Removed(doc, "exact_duplicate", f"same text as {first}")
        self._seen[digest] = doc.id
        return Kept(doc)


def shingles(text: str, size: int) -> set[bytes]:
    """Character ``size``-grams of ``text`` folded and stripped to letters and digits."""
    chars = "".join(c for c in text.casefold() if c.isalnum())
    if len(chars) <= size:
        return {chars.encode("utf-8")} if chars else set()
    return {chars[i : i + size].encode("utf-8") for i in range(len(chars) - size + 1)}


class NearDedup:
    """Removes a document whose MinHash Jaccard estimate with a kept one is >= threshold."""

    name = "near_dedup"

    def __init__(self, config: NearDedupConfig) -> None:
        self._config = config
        self._lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
        self._signatures: dict[str, np.ndarray] = {}
        self._template = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=zlib.crc32)

    def apply(self, doc: Doc) -> Outcome:
        grams = shingles(doc.text, self._config.shingle_chars)
        if not grams:
            return Kept(doc)
        signature = self._template.copy()
        signature.update_batch(list(grams))
        best, best_id = 0.0, ""
        for key in self._lsh.query(signature):
            estimate = float(np.mean(self._signatures[key] == signature.hashvalues))
            if estimate > best:
                best, best_id = estimate, key
        if best >= self._config.threshold:
            return Removed(doc, "near_duplicate", f"Jaccard ~{best:.2f} with {best_id}")
        if doc.id not in self._signatures:
            self._lsh.insert(doc.id, signature)
            self._signatures[doc.id] = signature.hashvalues.astype(np.uint32)
        return Kept(doc)
