"""``bigntk cache list|clean``: the kernel cache of ``bigntk inpaint`` (``bigntk.apps.inpaint.cache``).

    bigntk cache list [--cache-dir DIR] [--json]
    bigntk cache clean [--cache-dir DIR] [--all | --older-than DAYS | --max-size SIZE]

``clean`` always removes leftovers (interrupted builds, old copies) that no process is writing;
``--all`` every entry, ``--older-than`` entries unused for that many days, ``--max-size`` the least
recently used entries until the cache fits (e.g. 5GB). The cap applied after every new entry is
``$BIGNTK_CACHE_MAX`` (default 20 GB).
"""
from __future__ import annotations

import json
import time

from ._common import parse_size


def register(subparsers) -> None:
    p = subparsers.add_parser("cache", help="list / clean the kernel cache of bigntk inpaint",
                              description=__doc__)
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", help="entries, sizes and last use",
                        description="List the kernel cache's entries: size, last use, status. Example: bigntk cache list")
    ls.add_argument("--cache-dir", default=None, help="default: $BIGNTK_KERNEL_CACHE, else the user cache dir")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=_list)
    cl = sub.add_parser("clean", help="remove entries (always: leftovers of interrupted builds)",
                        description="Remove leftovers of interrupted builds and, with an option, entries. Example: "
                                    "bigntk cache clean --older-than 30")
    cl.add_argument("--cache-dir", default=None, help="default: $BIGNTK_KERNEL_CACHE, else the user cache dir")
    what = cl.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="remove every entry")
    what.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries unused for DAYS days")
    what.add_argument("--max-size", type=parse_size, metavar="SIZE", help="evict least recently used down to SIZE")
    cl.set_defaults(func=_clean)


def _status(e: dict) -> str:
    if e["in_use"]:
        return "being written"
    if e["leftover"]:
        return "leftover"
    return "complete" if e.get("complete") else "INCOMPLETE"


def _list(args) -> int:
    from ..apps.inpaint.cache import entries, kernel_cache_dir

    found = entries(args.cache_dir)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    print(f"kernel cache {kernel_cache_dir(args.cache_dir, create=False)}: {len(found)} entries, "
          f"{sum(e['bytes'] for e in found) / 1e6:.1f} MB")
    for e in found:
        shape = "any size" if e.get("form") == "window" else "x".join(map(str, e.get("shape") or [])) or "-"
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["last_used"]))
        print(f"  {e['name']:<44s} {e.get('form') or '-':<7s} {shape:<10s} {e.get('dtype') or '-':<8s} "
              f"{e['bytes'] / 1e6:9.1f} MB  {used}  {_status(e)}")
    return 0


def _clean(args) -> int:
    from ..apps.inpaint.cache import clean

    removed = clean(args.cache_dir, max_bytes=args.max_size, older_than_days=args.older_than, everything=args.all)
    print(f"removed {len(removed)} entries, {sum(e['bytes'] for e in removed) / 1e6:.1f} MB")
    for e in removed:
        print(f"  {e['name']}")
    return 0
