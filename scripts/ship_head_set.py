"""Copy a detected head set into the package registry (qrhead_integrations/head_sets/).

    python scripts/ship_head_set.py DETECTED.json --variant qrhead --command "the command that made it" \
        [--recommend fusion=linear --recommend fusion_weight=0.4 --evidence "docs/quality.md: why"]

The registry file keeps everything the detection recorded and adds the variant, name aliases and the
command, so anyone can see how the shipped heads were obtained and rerun it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qrhead_integrations.engine.heads import HeadSet, normalize_model_name

REGISTRY = Path(__file__).resolve().parents[1] / "qrhead_integrations" / "head_sets"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("detected")
    p.add_argument("--variant", default="qrhead")
    p.add_argument("--command", required=True,
                   help="the command that produced DETECTED (a file that records its source keeps that)")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--recommend", action="append", default=[], metavar="OPTION=VALUE",
                   help="a scoring option measured best with this head set (info['recommended_options']: what "
                        "fusion='auto' / fusion_weight=None resolve to)")
    p.add_argument("--evidence", default=None, help="where the measurement behind --recommend is written up")
    args = p.parse_args()
    hs = HeadSet.from_json(args.detected)
    if hs.model is None or hs.shape is None:
        raise SystemExit("the detected file must record its model and shape")
    data = hs.to_dict()
    data["name"] = args.variant
    data["variant"] = args.variant
    data["aliases"] = args.alias
    # a set that is already registered keeps the command that detected it (re-shipping adds a recommendation)
    data.setdefault("info", {}).setdefault("source", f"detected by qrhead-integrations: {args.command}")
    if args.recommend:
        from qrhead_integrations import ScoringOptions

        rec = {}
        for item in args.recommend:
            key, _, value = item.partition("=")
            rec[key] = None if value in ("", "none", "None") else (float(value) if key == "fusion_weight" else value)
        ScoringOptions(**{k: v for k, v in rec.items()})  # valid option values, or a clear error
        data["info"]["recommended_options"] = rec
        if args.evidence:
            data["info"]["recommended_options_evidence"] = args.evidence
    out = REGISTRY / f"{normalize_model_name(hs.model)}.{args.variant}.json"
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{out.relative_to(REGISTRY.parents[1])}: {hs}")


if __name__ == "__main__":
    main()
