"""Print a Prometheus config that scrapes every node of a running `transx devnet`.

    python deploy/prometheus/devnet.py DEVNET_DIR > DEVNET_DIR/prometheus.yml
    prometheus --config.file=DEVNET_DIR/prometheus.yml --storage.tsdb.path=DEVNET_DIR/prometheus

The nodes' API addresses come from DEVNET_DIR/devnet.json (written once they are up); each node serves
/metrics beside its API.  Run it again after a devnet restart: the ports change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def devnet_config(devnet_dir: Path, scrape_interval: str = "2s") -> str:
    """The config's YAML: one job, a target per node labelled with the node's name (node1, node2, ...)."""
    manifest = json.loads((devnet_dir / "devnet.json").read_text())
    targets = [(Path(n["datadir"]).name, n["api"].removeprefix("http://")) for n in manifest["nodes"] if n["api"]]
    if not targets:
        raise SystemExit(f"{devnet_dir}/devnet.json lists no running node: start the devnet first")
    lines = ["# Scrapes a transx devnet: python deploy/prometheus/devnet.py " + str(devnet_dir),
             "global:", f"  scrape_interval: {scrape_interval}", f"  evaluation_interval: {scrape_interval}",
             "scrape_configs:", "  - job_name: transx-devnet", "    static_configs:"]
    for name, address in targets:
        lines += [f'      - targets: ["{address}"]', "        labels:", f"          node: {name}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("devnet_dir", type=Path, help="the devnet's --dir (holds devnet.json)")
    p.add_argument("--scrape-interval", default="2s", help="how often Prometheus scrapes (default 2s)")
    args = p.parse_args()
    try:
        sys.stdout.write(devnet_config(args.devnet_dir, args.scrape_interval))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: cannot read {args.devnet_dir}/devnet.json: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
