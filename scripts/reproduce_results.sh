#!/usr/bin/env bash
# Every figure in docs/results.md comes from these commands (CPU; hours, not minutes).
# Per-query, per-head attention masses are cached under ~/.cache/qrhead-integrations/eval, so re-running
# a step (e.g. with another head set) only recomputes what is missing.
#
#   bash scripts/reproduce_results.sh [step ...]      steps: default needle-detect needle needle-4 smollm2 smollm2-fs hotpot squad qwen15
#
# Results (JSON + Markdown) are written to docs/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
D="${QRHEAD_DATA:-../shared/data}"
OUT=docs/results
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(default needle-detect needle needle-4 smollm2 smollm2-fs hotpot squad qwen15)

run() { echo "+ $*" >&2; "$@"; }

for step in "${steps[@]}"; do
  case "$step" in
  default)
    # Choosing the embedded default: both candidates, same protocol, 60 seeded SciFact test queries.
    run qrhead eval rerank --model smollm2-135m-instruct --data "$D/scifact" --queries 60 \
      --detect-data "$D/scifact" --detect-queries 64 --detect-subsets 3 --no-remedies \
      --retrieval-heads none --out "$OUT/default-smollm2-60.json"
    run qrhead eval rerank --model qwen2.5-coder-0.5b-instruct --data "$D/scifact" --queries 60 \
      --detect-data "$D/scifact" --detect-queries 64 --detect-subsets 1 --no-remedies \
      --retrieval-heads none --out "$OUT/default-qwen05-60.json"
    ;;
  needle-detect)
    # Copy-paste retrieval heads (Wu et al.) on pg-essays haystacks (45 trials: 3 lengths x 5 depths x 3
    # needles); shipped as the registry variant "retrieval" with scripts/ship_head_set.py.
    run python -m research needle --model smollm2-135m-instruct --essays "$D/pg-essays" \
      --detect-out "$OUT/retrieval-smollm2.heads.json" --out "$OUT/needle-detect-smollm2.json"
    ;;
  needle)
    # Head masking on 30 of those trials (1K and 2K tokens; CPU time): no mask, the QRHead set, the
    # retrieval heads, 16 random heads.
    run python -m research needle --model smollm2-135m-instruct --essays "$D/pg-essays" --lengths 1024 2048 \
      --mask none qrhead retrieval random:16:0 --out "$OUT/needle-smollm2.json"
    ;;
  needle-4)
    # Masking 16 of SmolLM2's 270 heads, even random ones, already breaks it: mask 4 instead (the top 4
    # QR heads, the top 4 retrieval heads, 2 random sets of 4) on the same 30 trials.
    run python -m research needle --model smollm2-135m-instruct --essays "$D/pg-essays" --lengths 1024 2048 \
      --mask 23-2,21-8,17-3,22-7 18-7,17-3,23-2,18-6 random:4:0 random:4:1 --out "$OUT/needle4-smollm2.json"
    ;;
  smollm2)
    # SciFact test, 60 seeded queries (CPU time; the same 60 as every SciFact figure), BM25 top-20, both
    # orders; heads detected on 3 disjoint subsets of 64 SciFact train claims (stability) and on their
    # union (the shipped set). Drop --queries for all 300, --no-remedies to add the as_given placement.
    run qrhead eval rerank --model smollm2-135m-instruct --data "$D/scifact" --queries 60 --no-remedies \
      --detect-data "$D/scifact" --detect-queries 64 --detect-subsets 3 \
      --retrieval-heads "$OUT/retrieval-smollm2.heads.json" --out "$OUT/scifact-smollm2.json"
    ;;
  smollm2-fs)
    # Ablation: the same, with heads detected in first-stage order (test passes are cached: only the
    # detection passes run).
    run qrhead eval rerank --model smollm2-135m-instruct --data "$D/scifact" --queries 60 --no-remedies \
      --detect-data "$D/scifact" --detect-queries 64 --detect-subsets 3 --detect-order first_stage \
      --retrieval-heads "$OUT/retrieval-smollm2.heads.json" --out "$OUT/scifact-smollm2-fsdetect.json"
    ;;
  hotpot)
    # HotpotQA-100: each question's own 10 paragraphs in the data set's order (runs/given.trec has no
    # scores; --bm25-scores scores them with BM25 for the bm25 baseline and fusion), heads from SciFact train.
    run qrhead eval rerank --model smollm2-135m-instruct --data "$D/hotpotqa-100" --run given --bm25-scores --depth 10 \
      --heads "$OUT/scifact-smollm2.heads.json" --retrieval-heads "$OUT/retrieval-smollm2.heads.json" \
      --measures R@2 R@5 nDCG@10 --out "$OUT/hotpot-smollm2.json"
    ;;
  squad)
    # SQuAD articles: whole articles split into 256-token chunks, recall@1/3/5 of evidence chunks
    # (300 seeded questions; each article is encoded once for all of its questions).
    run qrhead eval chunks --model smollm2-135m-instruct --data "$D/squad-articles" --chunk-tokens 256 --questions 300 \
      --heads "$OUT/scifact-smollm2.heads.json" --retrieval-heads "$OUT/retrieval-smollm2.heads.json" \
      --max-passage-tokens 512 --out "$OUT/squad-smollm2.json"
    ;;
  qwen15)
    # The strongest model that runs here, bfloat16 on CPU (3-4x the default's time per query): a seeded
    # subset of 20 of the default step's 60 SciFact test queries (the same shuffle), heads from 24 SciFact train claims.
    run qrhead eval rerank --model qwen2.5-coder-1.5b-instruct --dtype bfloat16 --data "$D/scifact" --queries 20 \
      --detect-data "$D/scifact" --detect-queries 24 --detect-subsets 1 --no-remedies \
      --retrieval-heads none --out "$OUT/scifact-qwen15-20.json"
    ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
