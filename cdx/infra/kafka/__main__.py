"""``python -m cdx.infra.kafka up|down|status [--brokers N]`` (the Makefile and CI use this)."""

import argparse
import json
import sys

from cdx.infra.kafka import launcher


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m cdx.infra.kafka")
    parser.add_argument("command", choices=["up", "down", "status", "jars"])
    parser.add_argument("--brokers", type=int, default=1, choices=[1, 3])
    args = parser.parse_args()
    try:
        if args.command == "jars":
            print(launcher.ensure_jars())
        elif args.command == "up":
            cluster = launcher.Cluster.load(args.brokers)
            print(cluster.up())
            print("logs: " + ", ".join(str(n.log_file) for n in cluster.nodes), file=sys.stderr)
        elif args.command == "down":
            print(f"stopped nodes: {launcher.down(args.brokers) or 'none running'}")
        else:
            print(json.dumps(launcher.Cluster.load(args.brokers).status(), indent=2))
    except launcher.KafkaLauncherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


sys.exit(main())
