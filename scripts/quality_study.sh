#!/usr/bin/env bash
# The ranking-quality study (docs/quality.md): store every head's per-token masses once per set, then
# evaluate every variant offline. CPU hours, resumable: each query is stored as soon as it is done, so a
# re-run continues where the last one stopped.
#
#   bash scripts/quality_study.sh collect-smollm2      # model passes, SmolLM2-135M (the embedded default)
#   bash scripts/quality_study.sh collect-qwen05       # model passes, Qwen2.5-Coder-0.5B (a reduced protocol)
#   bash scripts/quality_study.sh study                # every variant, tables and JSON into docs/results/
#
# Sets (see research/sets.py): detection on SciFact *train* claims and on NQ-open questions
# 0-63 of a seeded shuffle; evaluation on SciFact *test* (the seeded 60 and a second, disjoint 60),
# NQ-open multi-document (questions 1000-1039; the plan reads up to 1059), HotpotQA-100 and SQuAD article chunks. Passages are cut to
# 128 tokens (flagged), as in every earlier result.
set -euo pipefail
cd "$(dirname "$0")/.."
D="${QRHEAD_DATA:-../shared/data}"
steps=("$@")
run() { echo "+ $*" >&2; "$@"; }
for step in "${steps[@]}"; do
  case "$step" in
  collect-smollm2)
    M=smollm2-135m-instruct
    run python -m research collect --model $M --data "$D" --set scifact-train --queries 128 --orders shuffled
    run python -m research collect --model $M --data "$D" --set scifact-test --queries 60
    run python -m research collect --model $M --data "$D" --set hotpotqa
    run python -m research collect --model $M --data "$D" --set nq --queries 40 --skip 1000
    run python -m research collect --model $M --data "$D" --set scifact-test --queries 60 --skip 60 --orders first_stage
    run python -m research collect --model $M --data "$D" --set nq --queries 64 --skip 0 --orders shuffled
    run python -m research collect --model $M --data "$D" --set scifact-test --queries 180 --skip 120 --orders first_stage
    run python -m research collect --model $M --data "$D" --set squad --queries 40 --max-passage-tokens 512
    # #25: the other 240 SciFact test claims in shuffled order too, so all 300 are in both orders
    run python -m research collect --model $M --data "$D" --set scifact-test --queries 240 --skip 60 --orders shuffled
    # not run yet (CPU time): NQ evaluation questions 40-59
    # run python -m research collect --model $M --data "$D" --set nq --queries 20 --skip 1040
    ;;
  collect-qwen05)
    # A reduced protocol (CPU time: ~2.5x SmolLM2's per prompt): SciFact-train detection, HotpotQA 40 in
    # both orders, SciFact test 30 in first-stage order.
    M=qwen2.5-coder-0.5b-instruct
    run python -m research collect --model $M --data "$D" --set scifact-train --queries 32 --orders shuffled
    run python -m research collect --model $M --data "$D" --set hotpotqa --queries 40
    run python -m research collect --model $M --data "$D" --set scifact-test --queries 30 --orders first_stage
    ;;
  study)
    run python -m research study --model smollm2-135m-instruct --data "$D" --out docs/results/study-smollm2.json \
      --heads-dir docs/results/study-smollm2-heads \
      --compare-heads "QRHead set shipped before the study (16 heads)=docs/results/baseline-heads/smollm2-135m-instruct.before-study.qrhead.json"
    run python -m research study --model qwen2.5-coder-0.5b-instruct --data "$D" --out docs/results/study-qwen05.json \
      --heads-dir docs/results/study-qwen05-heads
    ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
