"""Number-for-number parity with the authors' code (princeton-pli/QRHead ``score_docs``) on the embedded model.

The fixture (``../shared/parity/qrhead-reference-smollm2.json``) holds that code's prompts, per-head masses
for both row sets and final scores on five cases. With the authors' template and options, the public
``QRHeadScorer`` API must reproduce all of them to 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qrhead_integrations import QRHeadScorer
from qrhead_integrations.engine.prompt import Passage, build_prompt

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "parity" / "qrhead-reference-smollm2.json"

pytestmark = [pytest.mark.real_model,
              pytest.mark.skipif(not FIXTURE.is_file(), reason="../shared/parity is not beside the repository")]

AUTHORS = dict(template="reference", query_rows="suffix", token_filter="2sigma", head_reduction="sum",
               candidate_order="as_given")


@pytest.fixture(scope="module")
def fixture():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def scorer(fixture):
    heads = [tuple(h) for h in fixture["heads"]]
    return QRHeadScorer.from_pretrained("smollm2-135m-instruct", heads, dtype="float32", **AUTHORS)


def _passages(case):
    return [{"text": p["text"], "title": p.get("title") or ""} for p in case["passages"]]


def test_prompt_is_the_authors_prompt(scorer, fixture):
    for case in fixture["cases"]:
        items = [Passage(p["text"], p["title"]) for p in _passages(case)]
        for query, key, span in ((case["query"], "input_ids", "query_span_inclusive"),
                                 ("N/A", "null_input_ids", "null_query_span_inclusive")):
            prompt = build_prompt(scorer.tokenizer, items, query, scorer.prompt_template)
            assert list(prompt.input_ids) == case[key], case["name"]
            assert [[a, b - 1] for a, b in prompt.passage_spans] == case["passage_spans_inclusive"]
            # the authors' query rows are the whole suffix: instruction, query and chat tail
            assert [prompt.suffix_start, len(prompt) - 1] == case[span]


def test_scores_equal_the_authors_score_docs(scorer, fixture):
    for case in fixture["cases"]:
        got = scorer.score(case["query"], _passages(case))
        np.testing.assert_allclose(got, case["score_docs"], atol=1e-5, err_msg=case["name"])


def test_per_head_masses_equal_for_both_row_sets(scorer, fixture):
    plain = scorer.with_options(token_filter=None)
    for case in fixture["cases"]:
        passages = _passages(case)
        suffix = plain.head_masses(case["query"], passages)
        np.testing.assert_allclose(suffix.real, case["per_head_mass_real"], atol=1e-5, err_msg=case["name"])
        np.testing.assert_allclose(suffix.null, case["per_head_mass_null"], atol=1e-5, err_msg=case["name"])
        own = plain.with_options(query_rows="query").head_masses(case["query"], passages)
        rows = case["query_token_rows_only"]
        np.testing.assert_allclose(own.real, rows["per_head_mass_real"], atol=1e-5, err_msg=case["name"])
        np.testing.assert_allclose(own.null, rows["per_head_mass_null"], atol=1e-5, err_msg=case["name"])


def test_the_filter_and_the_row_set_change_the_scores(scorer, fixture):
    """Guard against a test that cannot fail: each of the authors' options moves the numbers."""
    case = fixture["cases"][0]
    passages = _passages(case)
    base = np.array(scorer.score(case["query"], passages))
    for change in ({"token_filter": None}, {"query_rows": "query"}, {"head_reduction": "mean"}):
        other = np.array(scorer.with_options(**change).score(case["query"], passages))
        assert np.abs(other - base).max() > 1e-4, change
