"""Generated docs stay generated: README's quality table and docs/results.md's tables equal what
`python scripts/results_tables.py --fill README.md docs/results.md` writes from the result files, and the
option tables equal what `python -m qrhead_integrations.adapters.docs_tables` writes (tests/test_adapters_options.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_tables", ROOT / "scripts" / "results_tables.py")
results_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_tables)


@pytest.fixture(scope="module")
def tables():
    pytest.importorskip("ir_measures")
    return results_tables.sections()


@pytest.mark.parametrize("doc", results_tables.FILLED)
def test_generated_tables_match_the_result_files(tables, doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert "<!-- table: " in text, f"{doc} holds no generated table"
    assert results_tables.render(text, tables, doc) == text, (
        f"{doc} drifted from the result files: run `python scripts/results_tables.py --fill README.md docs/results.md`")


def test_readme_summary_reads_the_result_files(tables):
    summary = tables["readme-summary"]
    assert "| use, data |" in summary and "obvious questions" in summary


def test_every_result_file_is_indexed():
    """docs/results/README.md names every result file (in full, or as a suffix such as `.frontier.json` in the
    row of its base name) and, in that row, its status; a new result file without an entry fails here."""
    index = (ROOT / "docs" / "results" / "README.md").read_text(encoding="utf-8")
    rows = [line for line in index.splitlines() if line.startswith("| ")]
    missing = []
    for path in sorted((ROOT / "docs" / "results").iterdir()):
        if not path.is_file() or path.name == "README.md":
            continue
        base = path.name.split(".")[0]
        suffix = path.name[len(base):]
        if not any(path.name in row or (f"[{base}." in row and f"`{suffix}`" in row) for row in rows):
            missing.append(path.name)
    assert not missing, f"not in docs/results/README.md: {missing}"
    for row in rows[2:]:
        if row.startswith("| [") or row.startswith("| `"):
            statuses = ("**current", "**superseded", "**reference", "**unclear", "as its JSON")
            assert any(s in row for s in statuses), row[:120]
