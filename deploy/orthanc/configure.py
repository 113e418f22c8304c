"""Orthanc's configuration for auto-routing to renalnode: the site's template (deploy/orthanc/
orthanc.json or its own) with renalnode's series rule rendered into `Renalnode.Series`, so that
Orthanc routes exactly the series the node and the app accept.

    python -m deploy.orthanc.configure [--template T] [--series-rules R] > /etc/orthanc/orthanc.json

Run it again after editing the series rules (Orthanc reads its configuration at start).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from renalnode.series_eligibility import DEFAULT_SERIES_RULES, SeriesEligibility

TEMPLATE = Path(__file__).resolve().parent / "orthanc.json"


def with_series_rule(config: dict, series_rules: Path = DEFAULT_SERIES_RULES) -> dict:
    """`config` with `Renalnode.Series` set from the series rules file (other settings kept)."""
    renalnode = dict(config.get("Renalnode", {}))
    renalnode.setdefault("Modality", "renalnode")
    renalnode["Series"] = SeriesEligibility.load(series_rules).orthanc_settings()
    return {**config, "Renalnode": renalnode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.orthanc.configure", description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=TEMPLATE, help=f"Orthanc configuration (default {TEMPLATE})")
    parser.add_argument("--series-rules", type=Path, default=DEFAULT_SERIES_RULES,
                        help=f"renalnode's series rules (default {DEFAULT_SERIES_RULES})")
    args = parser.parse_args(argv)
    try:
        config = with_series_rule(json.loads(args.template.read_text()), args.series_rules)
    except (OSError, ValueError) as exc:
        print(f"deploy.orthanc.configure: error: {exc}", file=sys.stderr)
        return 2
    json.dump(config, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
