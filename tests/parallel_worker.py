"""Run by tests/test_parallel.py, alone or under torchrun: detection (CLI) and mass collection.

Usage: python parallel_worker.py MODEL_DIR EXAMPLES_JSONL OUT_DIR
Rank 0 writes OUT_DIR/heads.json (through the CLI), OUT_DIR/cache/ and OUT_DIR/masses.npz; every rank
writes OUT_DIR/digest-<rank>.json (test instrumentation: each process must hold the full result).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    model_dir, examples, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    from qrhead_integrations import QRHeadScorer
    from qrhead_integrations.cli import main as cli
    from qrhead_integrations.engine import parallel
    from qrhead_integrations.eval.masses import Candidates, collect_masses

    rc = cli(["detect", "--model", model_dir, "--data", examples, "--out", str(out / "heads.json"),
              "--top-k", "5", "--shuffle", "--seed", "3", "--limit", "100"])
    assert rc == 0, rc
    rows = [json.loads(line) for line in Path(examples).read_text().splitlines()]
    items = [Candidates(f"q{n}", r["query"], [f"d{n}-{i}" for i in range(len(r["passages"]))], r["passages"],
                        [float(-i) for i in range(len(r["passages"]))]) for n, r in enumerate(rows)]
    scorer = QRHeadScorer.from_pretrained(model_dir, heads="all")
    masses = collect_masses(scorer, items, "shuffled", "reversed", seed=1, cache_root=out / "cache",
                            show_progress=False)
    digest = hashlib.sha256()
    for qid in sorted(masses):
        digest.update(qid.encode())
        digest.update(np.ascontiguousarray(masses[qid].real).tobytes())
        digest.update(np.ascontiguousarray(masses[qid].null).tobytes())
    (out / f"digest-{parallel.rank()}.json").write_text(json.dumps(
        {"world": parallel.world_size(), "n": len(masses), "sha256": digest.hexdigest()}))
    if parallel.is_main_process():
        np.savez(out / "masses.npz", **{f"{q}_real": m.real for q, m in masses.items()},
                 **{f"{q}_null": m.null for q, m in masses.items()})


if __name__ == "__main__":
    main()
