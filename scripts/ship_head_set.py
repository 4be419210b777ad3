"""Copy a detected head set into the package registry (qrhead_integrations/head_sets/).

    python scripts/ship_head_set.py DETECTED.json --variant qrhead --command "the command that made it"

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
    p.add_argument("--command", required=True, help="the command that produced DETECTED")
    p.add_argument("--alias", action="append", default=[])
    args = p.parse_args()
    hs = HeadSet.from_json(args.detected)
    if hs.model is None or hs.shape is None:
        raise SystemExit("the detected file must record its model and shape")
    data = hs.to_dict()
    data["name"] = args.variant
    data["variant"] = args.variant
    data["aliases"] = args.alias
    data.setdefault("info", {})["source"] = f"detected by qrhead-integrations: {args.command}"
    out = REGISTRY / f"{normalize_model_name(hs.model)}.{args.variant}.json"
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{out.relative_to(REGISTRY.parents[1])}: {hs}")


if __name__ == "__main__":
    main()
