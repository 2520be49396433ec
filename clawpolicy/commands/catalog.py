"""`catalog`: the built-in service groups a policy can name."""

from __future__ import annotations

import argparse
import json
import sys

from clawpolicy.catalog import load_catalog
from clawpolicy.commands import HELP_FORMAT, Subparsers
from clawpolicy.errors import ExitCode


def cmd_catalog(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    names = args.groups or sorted(catalog)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        print(f"clawpolicy: error: unknown group(s): {', '.join(unknown)}", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    if args.format == "json":
        out = {n: {"description": g.description, "source": g.source, "fqdns": list(g.fqdns),
                   "wildcards": [f"*.{w}" for w in g.wildcards], "addresses": list(g.addresses),
                   "ports": list(g.ports)} for n in names for g in [catalog[n]]}
        print(json.dumps(out, indent=2, sort_keys=True))
        return ExitCode.OK
    for n in names:
        g = catalog[n]
        peers = [*g.fqdns, *(f"*.{w}" for w in g.wildcards), *g.addresses]
        print(f"{n:<20} {', '.join(g.ports):<16} {g.description}")
        print(f"{'':<20} {', '.join(peers)}")
        if args.groups:
            print(f"{'':<20} source: {g.source}")
    return ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("catalog", help="list the built-in service groups",
                       description="List the catalog groups a policy can name (e.g. `define llm = "
                                   "openai, anthropic`), with their names, ports and sources.",
                       epilog="examples:\n  clawpolicy catalog\n  clawpolicy catalog telegram\n"
                              "  clawpolicy catalog --format json", formatter_class=HELP_FORMAT)
    p.add_argument("groups", nargs="*", metavar="GROUP")
    p.add_argument("--format", choices=["text", "json"], default="text", help="json: machine-readable")
    p.add_argument("--json", action="store_const", const="json", dest="format",
                   help="the same as --format json (kept for scripts that use it)")
    p.set_defaults(func=cmd_catalog)
