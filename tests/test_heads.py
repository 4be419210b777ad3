"""HeadSet parsing, validation, JSON round trip and the shipped registry."""

from __future__ import annotations

import json

import pytest

from qrhead_integrations import HeadSet, HeadSetError, HeadSetNotFoundError
from qrhead_integrations.engine.heads import (
    ModelShape,
    format_heads,
    lookup_registered,
    normalize_model_name,
    parse_head_list,
    registered_head_sets,
    resolve_heads,
)

SHAPE = ModelShape(30, 9, 3)


def test_parse_string_forms():
    assert parse_head_list("13-18,13-21") == [(13, 18), (13, 21)]
    assert parse_head_list(" 1-2 ; 3:4  5-6 ") == [(1, 2), (3, 4), (5, 6)]
    assert parse_head_list([(1, 2), "3-4", [5, 6]]) == [(1, 2), (3, 4), (5, 6)]
    assert format_heads([(1, 2), (3, 4)]) == "1-2,3-4"


@pytest.mark.parametrize("bad", ["", "13", "a-b", "1-2-3", "1--2", "-1-2"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(HeadSetError):
        parse_head_list(bad)


@pytest.mark.parametrize("bad", [[(1,)], [(1.5, 2)], [(True, 1)], ["x"]])
def test_parse_rejects_bad_items(bad):
    with pytest.raises(HeadSetError):
        parse_head_list(bad)


def test_duplicates_and_negatives_rejected():
    with pytest.raises(HeadSetError, match="duplicate"):
        HeadSet(((1, 2), (1, 2)))
    with pytest.raises(HeadSetError, match="negative"):
        HeadSet(((-1, 2),))
    with pytest.raises(HeadSetError, match="at least one"):
        HeadSet(())


def test_validation_against_model_shape():
    with pytest.raises(HeadSetError, match=r"30-0 do not exist.*30 layers x 9 heads"):
        resolve_heads("30-0", SHAPE)
    with pytest.raises(HeadSetError, match="1-9"):
        resolve_heads([(1, 9)], SHAPE)
    hs = resolve_heads("29-8,0-0", SHAPE)
    assert hs.heads == ((29, 8), (0, 0)) and hs.deepest_layer == 29
    assert hs.layers == {0: (0,), 29: (8,)}


def test_all_and_random():
    all_heads = resolve_heads("all", SHAPE)
    assert len(all_heads) == 270 and all_heads.name == "all"
    r1 = resolve_heads("random:16:7", SHAPE)
    r2 = resolve_heads("random:16:7", SHAPE)
    r3 = resolve_heads("random:16:8", SHAPE)
    assert r1.heads == r2.heads and r1.heads != r3.heads and len(r1) == 16
    assert len(resolve_heads("random", SHAPE)) == 16
    with pytest.raises(HeadSetError):
        resolve_heads("random:999:0", SHAPE)
    with pytest.raises(HeadSetError):
        resolve_heads("random:x", SHAPE)
    ex = HeadSet.random_heads(SHAPE, 10, seed=1, exclude=[(0, 0), (0, 1)])
    assert not {(0, 0), (0, 1)} & set(ex.heads)


def test_json_round_trip(tmp_path):
    hs = HeadSet(((3, 1), (2, 0)), name="mine", model="org/model", shape=SHAPE, scores=(0.5, 0.25),
                 detection_scores=tuple(tuple(0.0 for _ in range(9)) for _ in range(30)), info={"examples": 3})
    path = tmp_path / "heads.json"
    hs.to_json(path)
    back = HeadSet.from_json(path)
    assert back == hs
    assert resolve_heads(str(path), SHAPE).heads == hs.heads
    # a shape mismatch is a clear error
    with pytest.raises(HeadSetError, match="was made for a model with 30 layers x 9 heads"):
        resolve_heads(str(path), ModelShape(24, 14, 2))


def test_json_bare_list_and_errors(tmp_path):
    p = tmp_path / "list.json"
    p.write_text(json.dumps([[1, 2], "3-4"]))
    assert HeadSet.from_json(p).heads == ((1, 2), (3, 4))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HeadSetError, match="not valid JSON"):
        HeadSet.from_json(bad)
    with pytest.raises(HeadSetError, match="not found"):
        resolve_heads(str(tmp_path / "missing.json"), SHAPE)
    other = tmp_path / "fmt.json"
    other.write_text(json.dumps({"format": "other/9", "heads": [[0, 0]]}))
    with pytest.raises(HeadSetError, match="unsupported head set format"):
        HeadSet.from_json(other)


def test_top_k():
    hs = HeadSet(((1, 1), (2, 2), (3, 3)), scores=(3.0, 2.0, 1.0))
    assert hs.top(2).heads == ((1, 1), (2, 2)) and hs.top(2).scores == (3.0, 2.0)


def test_model_name_normalisation():
    assert normalize_model_name("meta-llama/Llama-3.1-8B-Instruct") == "llama-3.1-8b-instruct"
    assert normalize_model_name("/models/Llama-3.1-8B-Instruct/") == "llama-3.1-8b-instruct"
    assert normalize_model_name("SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m-instruct"


def test_registry_has_valid_entries():
    entries = registered_head_sets()
    assert entries, "the package ships head sets"
    for e in entries:
        hs = e.load()
        assert hs.shape is not None, e.key
        hs.validate(hs.shape)
        assert hs.info.get("source") or hs.info.get("data"), f"{e.key} records its provenance"


def test_registry_lookup_and_missing_model():
    hs = lookup_registered("meta-llama/Llama-3.1-8B-Instruct", ModelShape(32, 32, 8))
    assert hs.heads[0] == (13, 18) and len(hs) == 16
    # a registered name with the wrong shape does not match
    with pytest.raises(HeadSetNotFoundError):
        lookup_registered("meta-llama/Llama-3.1-8B-Instruct", ModelShape(4, 4, 2))
    with pytest.raises(HeadSetNotFoundError, match="qrhead detect"):
        resolve_heads(None, SHAPE, "some/unknown-model")
    with pytest.raises(HeadSetNotFoundError, match="retrieval"):
        resolve_heads("retrieval", SHAPE, "some/unknown-model")
