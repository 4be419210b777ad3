"""The ``qrhead`` command line, on a tiny model saved to a local folder (loaded offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qrhead_integrations.cli import UsageError, main, read_passages


@pytest.fixture
def passages_txt(tmp_path):
    p = tmp_path / "passages.txt"
    p.write_text("The sun is a star.\n\nBees make honey.\nRivers flow to the sea.\n", encoding="utf-8")
    return p


def test_rank_plain_text(model_dir, passages_txt, capsys):
    rc = main(["rank", "--model", str(model_dir), "--heads", "1-0,2-1", "--query", "what is the sun?",
               str(passages_txt)])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("#") and "heads: custom (2)" in out[0]
    assert len(out) == 4  # header + three passages (the blank line is not a passage)
    assert {line.split("[")[1].split("]")[0] for line in out[1:]} == {"0", "1", "2"}


def test_rank_json_and_top_k(model_dir, tmp_path, capsys):
    p = tmp_path / "p.jsonl"
    rows = [{"id": "a", "text": "The sun is a star.", "title": "Sun"}, {"id": "b", "text": "Bees make honey."}]
    p.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    rc = main(["rank", "--model", str(model_dir), "--heads", "1-0", "--query", "sun", "--json", "--top-k", "1",
               str(p)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] and out["head_set"]["heads"] == "1-0" and out["head_set"]["size"] == 1
    (ranking,) = out["rankings"]
    data = ranking["results"]
    assert ranking["query"] == "sun"
    assert len(data) == 1 and data[0]["rank"] == 1 and data[0]["id"] in {"a", "b"}
    assert isinstance(data[0]["score"], float) and data[0]["line"] in {1, 2}


def test_rank_errors(model_dir, passages_txt, tmp_path, capsys):
    assert main(["rank", "--model", str(model_dir), "--heads", "9-0", "--query", "q", str(passages_txt)]) == 2
    assert "do not exist" in capsys.readouterr().err
    assert main(["rank", "--model", str(model_dir), "--query", "q", str(passages_txt)]) == 2
    assert "qrhead detect" in capsys.readouterr().err
    assert main(["rank", "--model", str(model_dir), "--heads", "1-0", "--query", "q", str(tmp_path / "none.txt")]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(UsageError, match="bad.jsonl:2"):
        read_passages(str(bad))
    assert main(["rank", "--model", str(tmp_path / "missing-model"), "--query", "q", str(passages_txt)]) == 2
    assert "not found" in capsys.readouterr().err


def test_rank_empty_file(model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["rank", "--model", str(model_dir), "--heads", "1-0", "--query", "q", "--json", str(empty)]) == 0
    assert json.loads(capsys.readouterr().out)["rankings"] == []


def test_console_script_offline(model_dir, passages_txt):
    """The installed entry point, in a fresh process, with the hub switched off."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "qrhead_integrations.cli", "rank", "--model", str(model_dir), "--heads", "1-0",
         "--query", "sun", "--json", str(passages_txt)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["rankings"][0]["results"]) == 3
    assert proc.stderr == ""  # a plain call prints nothing but its result


def test_detect_on_jsonl(model_dir, tmp_path, passages_txt, capsys):
    data = tmp_path / "ex.jsonl"
    rows = [{"query": f"q{i}", "passages": ["a b", "c d", f"gold {i}"], "gold": [2]} for i in range(3)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "heads.json"
    rc = main(["detect", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--top-k", "3"])
    assert rc == 0
    saved = json.loads(out.read_text())
    assert len(saved["heads"]) == 3 and saved["info"]["examples"] == 3
    assert len(saved["detection_scores"]) == 4 and len(saved["detection_scores"][0]) == 4
    # the detected file is accepted by rank
    assert main(["rank", "--model", str(model_dir), "--heads", str(out), "--query", "q", str(passages_txt)]) == 0


def test_rank_evidence_view_and_json(model_dir, tmp_path, capsys):
    p = tmp_path / "p.txt"
    p.write_text("The sun is a star. It is hot. Bees are not.\nRivers flow to the sea. Seas are salty.\n", encoding="utf-8")
    assert main(["rank", "--model", str(model_dir), "--heads", "1-0,2-1", "--query", "sun", "--evidence", "1",
                 str(p)]) == 0
    out = capsys.readouterr().out
    assert out.count(">>") == 2 and out.count("<<") == 2 and "chars" in out
    assert main(["rank", "--model", str(model_dir), "--heads", "1-0,2-1", "--query", "sun", "--evidence", "2",
                 "--json", str(p)]) == 0
    results = json.loads(capsys.readouterr().out)["rankings"][0]["results"]
    texts = p.read_text().splitlines()
    for r in results:
        assert 1 <= len(r["evidence"]) <= 2
        for e in r["evidence"]:
            assert texts[r["index"]][e["start"]:e["end"]] == e["text"] and 0 < e["share"] <= 1


def test_rank_many_questions_read_the_passages_once(model_dir, passages_txt, tmp_path, capsys):
    qs = tmp_path / "q.txt"
    qs.write_text("what is the sun?\nwho makes honey?\n", encoding="utf-8")
    assert main(["rank", "--model", str(model_dir), "--heads", "1-0", "--queries", str(qs), "--json",
                 str(passages_txt)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["query"] for r in out["rankings"]] == ["what is the sun?", "who makes honey?"]
    single = main(["rank", "--model", str(model_dir), "--heads", "1-0", "--query", "who makes honey?", "--json",
                   str(passages_txt)])
    assert single == 0
    one = json.loads(capsys.readouterr().out)["rankings"][0]["results"]
    assert [(r["index"], r["score"]) for r in one] == [(r["index"], r["score"]) for r in out["rankings"][1]["results"]]


def test_version_and_models(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and "qrhead" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "installed" in out and "gemma-3-270m" in out and "QRHEAD_CACHE" in out
