"""Token spans of passages and query, checked against the decoded text with real tokenizers."""

from __future__ import annotations

import pytest

from qrhead_integrations.engine.prompt import (
    DEFAULT_TEMPLATE,
    Passage,
    as_passage,
    build_prompt,
    chat_frame,
    render_content,
)

TRICKY = [
    Passage("Paris is the capital of France."),
    Passage("Paris is the capital of France."),  # repeated text
    Passage("See [3] and [1] for details; [2] Title-like line\nwith a newline."),  # markers
    Passage("  leading spaces and trailing  "),
    Passage("Ünïcödé: 東京は日本の首都です。 Ελληνικά — emoji 🚀✨"),
    Passage("x"),
    Passage(""),
    Passage("The query text itself: what is the capital of France?"),
    Passage("Injected <|im_end|> <|eot_id|> <end_of_turn> special-token text."),
    Passage("body text", title="A Title"),
    Passage("Ends with punctuation.\n\n"),
]
QUERY = "what is the capital of France?"


def _decoded(tok, ids, span):
    return tok.decode(list(ids[span[0]:span[1]]))


def _squash(s: str) -> str:
    return "".join(s.split())


def test_spans_cover_exactly_each_passage(real_tokenizer):
    tok = real_tokenizer
    prompt = build_prompt(tok, TRICKY, QUERY)
    assert len(prompt.passage_spans) == len(TRICKY)
    prev_end = 0
    for number, (passage, span) in enumerate(zip(TRICKY, prompt.passage_spans), start=1):
        a, b = span
        assert prev_end <= a < b, "spans are non-empty, ordered and disjoint"
        prev_end = b
        text = _squash(_decoded(tok, prompt.input_ids, span))
        block = _squash(DEFAULT_TEMPLATE.passage_block(number, passage))
        # every character of the block is inside the span; at most a separator token's worth more
        assert block in text, (number, text, block)
        assert len(text) <= len(block) + 2, (number, text, block)
    q = _squash(_decoded(tok, prompt.input_ids, prompt.query_span))
    assert q.endswith(_squash(QUERY)) and len(q) <= len(_squash(QUERY)) + 2
    assert prompt.passage_spans[-1][1] <= prompt.suffix_start <= prompt.query_span[0]


def test_special_token_text_in_passages_is_plain_text(real_tokenizer):
    tok = real_tokenizer
    prompt = build_prompt(tok, TRICKY, QUERY)
    special = set(tok.all_special_ids)
    a, b = prompt.passage_spans[8]
    assert not special & set(prompt.input_ids[a:b])


def test_prefix_is_identical_for_real_and_null_query(real_tokenizer):
    tok = real_tokenizer
    real = build_prompt(tok, TRICKY, QUERY)
    null = build_prompt(tok, TRICKY, "N/A")
    s = real.suffix_start
    assert s == null.suffix_start
    assert real.input_ids[:s] == null.input_ids[:s]
    assert real.passage_spans == null.passage_spans


def test_same_tokens_as_natural_tokenization(real_tokenizer):
    """For ordinary text, the piecewise encoding equals tokenizing the whole chat prompt at once."""
    tok = real_tokenizer
    passages = [Passage("Paris is the capital of France."), Passage("Rome, Italy.", title="Rome"),
                Passage("Ends with a period.")]
    prompt = build_prompt(tok, passages, QUERY)
    frame = chat_frame(tok)
    content = render_content(passages, QUERY).content
    if frame.add_special_tokens:
        natural = tok(content, add_special_tokens=True)["input_ids"]
    else:
        natural = tok(frame.before + content + frame.after, add_special_tokens=False)["input_ids"]
    assert list(prompt.input_ids) == list(natural)


def test_chat_frame_wraps_user_turn(real_tokenizer):
    frame = chat_frame(real_tokenizer)
    if real_tokenizer.chat_template:
        assert frame.before and frame.after and not frame.add_special_tokens


@pytest.mark.parametrize("bad", [123, None, {"title": "no text"}, object()])
def test_as_passage_rejects_bad_input(bad):
    with pytest.raises(TypeError):
        as_passage(bad, 0)


def test_as_passage_accepts_common_shapes():
    class Doc:
        page_content = "from langchain"

    class Node:
        text = "from llama-index"

    assert as_passage("s") == Passage("s")
    assert as_passage({"text": "t", "title": "T"}) == Passage("t", "T")
    assert as_passage({"text": "t", "title": None}) == Passage("t", "")
    assert as_passage(Doc()) == Passage("from langchain")
    assert as_passage(Node()) == Passage("from llama-index")
