"""``python -m pgsteady.lab``: start, list and remove a lab; inject faults into its hosts."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pgsteady.lab.engine import LabError
from pgsteady.lab.faults import FAULTS
from pgsteady.lab.hosts import IMAGE_SOURCES, Lab

DEFAULT_INVENTORY = Path("inventory/lab.py")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pgsteady.lab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the lab's hosts and write its inventory")
    up.add_argument("-n", "--count", type=int, default=3, help="number of hosts (default 3)")
    up.add_argument("--os", default="bookworm", help="bookworm | trixie")
    up.add_argument(
        "--image-source",
        default="debian",
        choices=IMAGE_SOURCES,
        help="debian: built on each host (default); seed: built here once, shipped as the "
        "seed of the debian source (faster, everything on); archive: that tarball as the "
        "archive source (pgBackRest and the exporters off, as pgsteady requires)",
    )
    up.add_argument("--postgres-version", type=int, default=17)
    up.add_argument("--disk-size", default="8G", help="each host's /var/lib/docker disk")
    up.add_argument(
        "--backup-host",
        action="store_true",
        help="the last host forms the `backup` group: the others' off-host pgBackRest repository",
    )
    up.add_argument(
        "--cluster",
        metavar="NAME",
        help="the hosts form one cluster (postgres_cluster_name = NAME; at least 3 hosts)",
    )
    for name in ("up", "down", "hosts"):
        target = up if name == "up" else sub.add_parser(name, help=f"{name} the lab")
        target.add_argument("--name", default="pgsteady-lab", help="lab name")
        target.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY)
    for fault, fn in FAULTS.items():
        f = sub.add_parser(fault, help=(fn.__doc__ or "").split("\n")[0])
        f.add_argument("host", help="the host's container name, e.g. pgsteady-lab-1")
    args = p.parse_args(argv)
    try:
        if args.command == "up":
            started = time.monotonic()
            hosts = Lab(args.name).up(
                args.count, args.os, inventory=args.inventory, image_source=args.image_source,
                postgres_version=args.postgres_version, disk_size=args.disk_size,
                backup_host=args.backup_host, cluster=args.cluster,
            )  # fmt: skip
            for h in hosts:
                print(f"{h.name}\t{h.ip}")
            print(f"lab {args.name} ready in {time.monotonic() - started:.1f} s: "
                  f"make deploy INVENTORY={args.inventory}")  # fmt: skip
        elif args.command == "down":
            left = Lab(args.name).down(args.inventory)
            if left:
                print("left behind: " + ", ".join(left), file=sys.stderr)
                return 1
            print(f"lab {args.name} removed")
        elif args.command == "hosts":
            for h in Lab(args.name).hosts():
                print(f"{h.name}\t{h.ip}")
        else:
            result = FAULTS[args.command](args.host)
            detail = f": {result} bytes allocated" if args.command == "fill-disk" else ""
            print(f"{args.command} {args.host}{detail}")
    except (LabError, ValueError) as exc:
        print(f"pgsteady.lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
