"""``python -m cdx.infra.postgres up [--logical]|down|status`` (the Makefile and CI use this).

``--logical``: the server must run with ``wal_level = logical`` (see ``launcher``)."""

import json
import sys

from cdx.infra.postgres import launcher


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "up"
    try:
        if cmd == "up":
            print(launcher.up(logical="--logical" in argv[1:]))
        elif cmd == "down":
            print("stopped" if launcher.down() else "not running")
        elif cmd == "status":
            print(json.dumps(launcher.status(), indent=2))
        else:
            print("usage: python -m cdx.infra.postgres up [--logical]|down|status", file=sys.stderr)
            return 2
    except launcher.PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


sys.exit(main(sys.argv[1:]))
