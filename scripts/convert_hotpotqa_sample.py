"""Convert the public HotpotQA "hard" distractor sample (100 dev questions with answers) for
``qrhead eval qa --task hotpotqa``.

The input is the reflexion repository's ``hotpotqa_runs/data/hotpot-qa-distractor-sample.joblib``
(https://github.com/noahshinn/reflexion; an old pandas pickle, loaded with a shim for
``pandas.core.indexes.numeric``). Its sha256 is checked against the committed file's and recorded in the
output's README and ``source.json``. The output is the BEIR layout of the shared ``hotpotqa-100`` folder plus
``answers.jsonl``, written OUTSIDE the repository (HotpotQA is CC BY-SA 4.0 research data):

    git --git-dir=/path/to/reflexion/.git show HEAD:hotpotqa_runs/data/hotpot-qa-distractor-sample.joblib \\
        > /tmp/hotpot-sample.joblib
    python scripts/convert_hotpotqa_sample.py /tmp/hotpot-sample.joblib
    # -> ~/.cache/qrhead-integrations/data/hotpotqa-hard-100 (or --out DIR)

Needs ``pandas`` and ``joblib`` (not dependencies of the package).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qrhead_integrations.eval.hotpotqa import SAMPLE_SHA256, SAMPLE_URL, convert, default_dir, load_sample, sha256_of


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sample", help="hot-qa-distractor-sample.joblib (a pickled DataFrame, old or new pandas)")
    ap.add_argument("--out", default=None, help=f"output folder (default: {default_dir()})")
    ap.add_argument("--allow-other-file", action="store_true",
                    help="convert a file whose sha256 is not the committed sample's (recorded as it is)")
    args = ap.parse_args(argv)
    digest = sha256_of(args.sample)
    if digest != SAMPLE_SHA256:
        msg = f"{args.sample}: sha256 {digest}, not the committed sample's {SAMPLE_SHA256}"
        if not args.allow_other_file:
            print(f"error: {msg} (pass --allow-other-file to convert it anyway)", file=sys.stderr)
            return 2
        print(f"warning: {msg}", file=sys.stderr)
    out = Path(args.out).expanduser() if args.out else default_dir()
    repo = Path(__file__).resolve().parents[1]
    if out.resolve().is_relative_to(repo):
        print(f"error: {out} is inside the repository; the data stay outside it (CC BY-SA 4.0)", file=sys.stderr)
        return 2
    records = load_sample(args.sample)
    source = SAMPLE_URL if digest == SAMPLE_SHA256 else str(Path(args.sample).resolve())
    stats = convert(records, out, source=source, sha256=digest)
    print(json.dumps({"out": str(out), **stats}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
