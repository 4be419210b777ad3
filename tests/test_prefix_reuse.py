"""Reusing the passages' KV cache: batch scoring of many (query, passages) pairs, many queries over one
encoding, progress bars, and a query pass that does not grow the cache."""

from __future__ import annotations

import pytest
from conftest import load_tokenizer, tiny_model

from qrhead_integrations import QRHeadScorer

HEADS = [(1, 0), (2, 1), (3, 3)]
DOC = ["Alpha Centauri is the closest star system to the Sun.", "Honey bees communicate with a waggle dance.",
       "The Danube flows through ten countries.", "Penguins live in the southern hemisphere."]
OTHER = ["Mount Everest is the highest mountain.", "The violin has four strings."]


@pytest.fixture(scope="module")
def scorer():
    tok = load_tokenizer("smollm2")
    return QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads=HEADS)


def _count_prefix_forwards(scorer, monkeypatch):
    """Count the passages' forwards (every PrefixCache the scorer builds)."""
    import qrhead_integrations.engine.scoring as scoring

    calls = []

    class Counted(scoring.PrefixCache):
        def __init__(self, model, plan, prefix_ids, device):
            calls.append(len(prefix_ids))
            super().__init__(model, plan, prefix_ids, device)
    monkeypatch.setattr(scoring, "PrefixCache", Counted)
    return calls


def test_score_batch_reuses_the_passages(scorer, monkeypatch):
    pairs = [("closest star?", DOC), ("how do bees talk?", list(DOC)), ("which river?", DOC),
             ("highest mountain?", OTHER), ("closest star?", DOC), ("nothing", [])]
    expected = [scorer.score(q, p) for q, p in pairs]
    calls = _count_prefix_forwards(scorer, monkeypatch)
    got = scorer.score_batch(pairs)
    assert got == expected  # bit-identical to one call per pair
    assert len(calls) == 3  # DOC once for the first three pairs (equal lists), OTHER, DOC again


def test_score_batch_progress_bar(scorer, capsys):
    scorer.score_batch([("q1", DOC), ("q2", DOC), ("q3", OTHER)], show_progress=True)
    err = capsys.readouterr().err
    assert "qrhead score" in err and "3/3" in err
    scorer.score_batch([("q1", DOC)])  # the scorer's default (show_progress=False): silent
    assert "qrhead score" not in capsys.readouterr().err


def test_encoded_score_batch(scorer, monkeypatch, capsys):
    queries = ["closest star?", "how do bees talk?", "which river?"]
    expected = [scorer.score(q, DOC) for q in queries]
    calls = _count_prefix_forwards(scorer, monkeypatch)
    enc = scorer.encode(DOC)
    assert enc.score_batch(queries, show_progress=True) == expected
    assert len(calls) == 1 and "3/3" in capsys.readouterr().err


def test_score_batch_errors_propagate(scorer):
    with pytest.raises(ValueError, match="query is empty"):
        scorer.score_batch([("ok", DOC), ("  ", DOC)])


def test_query_pass_does_not_copy_the_cache(scorer, monkeypatch):
    """While a query runs over the cached passages, every cache layer is back at the passages' length as soon
    as its attention gets the concatenated keys: no second copy of the whole cache builds up over the pass."""
    import qrhead_integrations.engine.capture as capture

    enc = scorer.encode(DOC)
    expected = enc.score("closest star?")
    cache = enc._caches[0].cache
    prefix = cache.layers[0].keys.shape[-2]
    seen = []
    base = capture._base_function

    def spy(name, module):
        fn = base(name, module)

        def wrapped(module, query, key, value, mask, **kwargs):
            stored = [layer.keys.shape[-2] for layer in cache.layers if getattr(layer, "keys", None) is not None
                      and layer.keys.numel()]
            seen.append((key.shape[2] - query.shape[2], stored))
            return fn(module, query, key, value, mask, **kwargs)
        return wrapped

    monkeypatch.setattr(capture, "_base_function", spy)
    assert enc.score("closest star?") == expected
    assert len(seen) == max(layer for layer, _ in HEADS)  # layers before the stop layer
    assert all(cached == prefix and set(stored) == {prefix} for cached, stored in seen)
    assert all("update" not in layer.__dict__ for layer in cache.layers)  # no override left behind


def test_score_batch_over_windows(monkeypatch):
    """Passages split over several windows: same results, one window's cache alive at a time."""
    tok = load_tokenizer("smollm2")
    small = QRHeadScorer.from_model(tiny_model("llama", tok, layers=4), tok, heads=HEADS, max_context_tokens=130,
                                 max_query_tokens=16)
    passages = DOC + OTHER
    queries = ["closest star?", "highest mountain?"]
    expected = [small.score(q, passages) for q in queries]
    enc = small.encode(passages)
    assert len(enc.windows) > 1
    calls = _count_prefix_forwards(small, monkeypatch)
    assert small.score_batch([(q, passages) for q in queries]) == expected
    assert len(calls) == len(queries) * len(enc.windows)  # re-read per query, never all windows kept
