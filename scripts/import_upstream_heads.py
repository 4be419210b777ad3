"""Write the published QRHead head lists (princeton-pli/QRHead 7a668e7) into the package registry.

The lists are facts from the upstream repository's files (see ../shared/research/upstream.md), not
code. Run once; the JSON files are committed under qrhead_integrations/head_sets/.
"""

from pathlib import Path

from qrhead_integrations.engine.heads import HeadSet, ModelShape, parse_head_list

OUT = Path(__file__).resolve().parents[1] / "qrhead_integrations" / "head_sets"
UPSTREAM = "princeton-pli/QRHead main 7a668e7 (2025-09-16)"

# model, aliases, (layers, heads, kv), variant, data, heads
LISTS = [
    ("meta-llama/Llama-3.1-8B-Instruct", ["Meta-Llama-3.1-8B-Instruct"], (32, 32, 8), "qrhead", "LongMemEval (70 examples)",
     "13-18,13-21,8-11,14-13,17-29,13-1,13-13,14-29,14-31,13-8,16-1,17-21,13-3,10-31,13-4,14-22"),
    ("meta-llama/Llama-3.1-8B-Instruct", ["Meta-Llama-3.1-8B-Instruct"], (32, 32, 8), "qrhead-nq", "Natural Questions (128 examples)",
     "14-22,13-16,14-28,14-31,16-19,14-1,16-26,17-24,14-0,13-0,16-25,13-12,13-1,13-10,17-27,20-14"),
    ("meta-llama/Llama-3.2-3B-Instruct", [], (28, 24, 8), "qrhead", "LongMemEval (70 examples)",
     "15-18,15-22,16-15,18-19,13-23,12-1,21-20,20-11,18-11,18-18,13-16,16-16,18-15,19-8,15-17,17-2"),
    ("meta-llama/Llama-3.2-3B-Instruct", [], (28, 24, 8), "qrhead-nq", "Natural Questions (128 examples)",
     "13-16,12-12,13-23,13-21,15-18,12-3,21-20,12-1,13-2,13-1,12-6,12-11,13-0,15-22,18-19,18-11"),
    ("meta-llama/Llama-3.2-1B-Instruct", [], (16, 32, 8), "qrhead", "Natural Questions (128 examples)",
     "8-21,8-14,7-22,6-31,8-28,10-26,10-0,5-5,8-3,6-30,8-0,7-26,7-25,7-23,11-4,8-20"),
    ("Qwen/Qwen2.5-7B-Instruct", [], (28, 28, 4), "qrhead", "Natural Questions (128 examples)",
     "16-19,16-2,16-20,16-14,16-0,15-24,16-18,17-18,16-1,19-18,19-19,18-16,16-17,19-25,19-17,20-21"),
    ("meta-llama/Llama-3.1-70B-Instruct", ["Meta-Llama-3.1-70B-Instruct"], (80, 64, 8), "qrhead", "LongMemEval (70 examples)",
     "35-17,35-27,31-33,35-7,35-43,35-20,33-16,31-38,35-40,35-25,53-1,35-19,35-24,23-42,21-39,52-58,28-45,39-43,"
     "17-61,14-21,33-18,36-52,35-47,71-6,27-21,29-55,35-23,38-48,35-28,39-41,35-21,38-55"),
    ("meta-llama/Llama-3.1-70B-Instruct", ["Meta-Llama-3.1-70B-Instruct"], (80, 64, 8), "qrhead-nq", "Natural Questions (128 examples)",
     "31-32,35-26,35-25,35-21,39-41,35-29,38-18,37-9,52-19,35-6,47-18,52-58,35-24,35-28,37-29,35-40,37-25,39-40,"
     "34-1,31-39,37-24,35-23,31-37,35-20,33-18,35-50,64-31,35-42,37-28,47-17,35-19,35-3"),
    ("Qwen/Qwen3-8B", [], (36, 32, 8), "qrhead", "Natural Questions; unofficial list from an upstream branch/fork",
     "21-31,21-18,20-15,22-4,21-11,20-16,21-17,19-13,21-10,21-8,18-5,20-14,19-14,24-13,17-4,19-28"),
    ("Qwen/Qwen3-4B-Instruct-2507", [], (36, 32, 8), "qrhead", "FIRE; unofficial list from an upstream fork",
     "21-8,17-25,13-11,7-7,22-4,24-29,27-19,20-17,9-10,15-13,15-11,23-10,27-18,25-30,19-13,16-21"),
]


#: How the authors' code detected and evaluated these heads; ``"auto"`` options resolve to it.
AUTHORS_SCORING = {"query_rows": "suffix", "token_filter": "2sigma", "template": "reference"}
AUTHORS_EVIDENCE = ("the authors' code (princeton-pli/QRHead), which detected these heads and measured the paper's "
                    "numbers with them, reads the passages with every token after them (instruction, query, chat "
                    "tail), filters tokens per passage at 2 sigma and uses its own prompt; tests/test_parity.py "
                    "reproduces that scoring number for number")


def main() -> None:
    import json

    for model, aliases, (layers, heads, kv), variant, data, spec in LISTS:
        hs = HeadSet(tuple(parse_head_list(spec)), name=variant, model=model, shape=ModelShape(layers, heads, kv),
                     info={"source": f"published list, {UPSTREAM}", "data": data,
                           "method": "upstream QRHead detection (calibrated QRscore on gold passages)",
                           "variant": {**AUTHORS_SCORING, "calibrate": True},
                           "recommended_options": dict(AUTHORS_SCORING),
                           "recommended_options_evidence": AUTHORS_EVIDENCE})
        d = hs.to_dict()
        d["variant"] = variant
        d["aliases"] = aliases
        name = model.split("/")[-1].lower()
        path = OUT / f"{name}.{variant}.json"
        path.write_text(json.dumps(d, indent=1) + "\n")
        print(path.name, len(hs))


if __name__ == "__main__":
    main()
