"""Hashed TF-IDF: the baseline's recipe without a stored vocabulary, saved as plain arrays."""

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from triage.models.features import HashedTfidf, HashingConfig

TEXTS = ["the printer is broken", "Drucker kaputt kaputt", "the the printer again", "vpn is down"]


def test_word_block_equals_sklearn_tfidf_when_no_buckets_collide():
    config = HashingConfig(char_buckets=0, word_ngrams=(1, 1))
    features = HashedTfidf(config).fit(TEXTS)
    reference = TfidfVectorizer(sublinear_tf=True).fit(TEXTS)
    ours, theirs = features.transform(TEXTS), reference.transform(TEXTS)
    assert features.n_features == len(reference.vocabulary_)  # no collisions in 2**20 buckets
    for row in range(len(TEXTS)):
        np.testing.assert_allclose(np.sort(ours[row].data), np.sort(theirs[row].data), rtol=1e-6)


def test_unseen_ngrams_are_dropped_and_rows_stay_normalised():
    features = HashedTfidf(HashingConfig(char_min_df=1)).fit(TEXTS)
    matrix = features.transform(["printer xyzzy", "qqqq"])
    assert matrix.shape == (2, features.n_features)
    word_and_char = 2.0
    assert np.isclose((matrix[0].data ** 2).sum(), word_and_char)  # each block L2-normalised
    assert matrix[1].nnz == 0  # nothing known: an empty row, not an error


def test_min_df_keeps_only_buckets_seen_often_enough():
    once = HashedTfidf(HashingConfig(char_buckets=0, word_min_df=1)).fit(TEXTS)
    twice = HashedTfidf(HashingConfig(char_buckets=0, word_min_df=2)).fit(TEXTS)
    assert 0 < twice.n_features < once.n_features


def test_state_round_trip_gives_identical_features():
    features = HashedTfidf(HashingConfig()).fit(TEXTS)
    state = features.state_arrays()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    restored = HashedTfidf.from_state(HashingConfig.from_dict(features.config.to_dict()), state)
    before, after = features.transform(TEXTS), restored.transform(TEXTS)
    assert (before != after).nnz == 0


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        HashingConfig(word_buckets=0, char_buckets=0)
    with pytest.raises(ValueError, match="char_ngrams"):
        HashingConfig(char_ngrams=(5, 3))
    with pytest.raises(RuntimeError, match="not fitted"):
        HashedTfidf().transform(TEXTS)


def test_max_features_keeps_the_most_frequent_buckets_of_both_blocks():
    texts = [f"printer {word} broken again" for word in ("alpha", "beta", "gamma", "delta")] * 3
    full = HashedTfidf().fit(texts)
    capped = HashedTfidf(HashingConfig(max_features=10)).fit(texts)
    assert capped.n_features == 10 < full.n_features
    assert capped.transform(texts).shape == (len(texts), 10)
    # the kept buckets are the most frequent ones: every text's shared words survive the cap
    assert all(row.nnz > 0 for row in capped.transform(["printer broken"]))
    assert HashingConfig.from_dict(capped.config.to_dict()) == capped.config
    legacy = {k: v for k, v in HashingConfig().to_dict().items() if k != "max_features"}
    assert HashingConfig.from_dict(legacy).max_features is None  # model.json written before the cap
