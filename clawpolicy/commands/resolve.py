"""`resolve`: domain names to a lock file, for `compile --lock`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clawpolicy.commands import HELP_FORMAT, Subparsers, print_diagnostics
from clawpolicy.errors import ExitCode
from clawpolicy.lockfile import LockError
from clawpolicy.lower import load_policies


def cmd_resolve(args: argparse.Namespace) -> int:
    # Imported here: only this command needs dnspython.
    from clawpolicy import lockfile
    from clawpolicy.write import atomic_write

    failed = False
    empty_locked: list[str] = []
    resolver = lockfile.DnsResolver(args.resolver)
    for path in args.policies:
        loaded = load_policies([path])
        print_diagnostics(loaded.diagnostics, loaded.sources)
        if not loaded.ok:
            return ExitCode.POLICY_ERROR
        target = lockfile.lock_path(path)
        names, wildcards = lockfile.names_of(loaded.policies)
        for w in wildcards:
            print(f"note: {w}: {lockfile.WILDCARD_NOTE}", file=sys.stderr)
        try:
            old = lockfile.load(target) if target.exists() else None
            if args.check:
                if old is None:
                    print(f"{target}: error: missing; run `clawpolicy resolve {path}`", file=sys.stderr)
                    failed = True
                    continue
                changes = lockfile.check(loaded.policies, resolver, old)
                empty_locked = old.unaccepted_empty()
                for name in empty_locked:
                    print(f"clawpolicy: error: {target}: {name} is locked with no address: the lock admits "
                          "nothing for it (resolve again, or accept it with --allow-empty)",
                          file=sys.stderr)
                    failed = True
            else:
                resolution = lockfile.resolve(loaded.policies, resolver, old, update=args.update,
                                              allow_empty=args.allow_empty)
                changes = resolution.changes
                for name in resolution.accepted:
                    print(f"clawpolicy: warning: {name} resolves to no address (accepted with --allow-empty): "
                          "the lock admits nothing for it", file=sys.stderr)
                if resolution.empty:
                    for name in resolution.empty:
                        print(f"clawpolicy: error: {name} resolves to no address via {resolver.description} "
                              "(NXDOMAIN, or no A/AAAA record): a lock would admit nothing for it",
                              file=sys.stderr)
                    print(f"  hint: fix or remove the name in {path}, or accept it with "
                          "--allow-empty (recorded in the lock); nothing was written", file=sys.stderr)
                    failed = True
                    continue
        except LockError as exc:
            print(f"clawpolicy: error: {exc}", file=sys.stderr)
            return ExitCode.POLICY_ERROR
        for change in changes:
            for line in change.lines():
                print(line)
        if args.check:
            if empty_locked and not changes:
                continue
            if changes:
                print(f"{target}: DNS via {resolver.description} no longer matches the lock; "
                      f"run `clawpolicy resolve --update {path}` and review the diff", file=sys.stderr)
                failed = True
            else:
                print(f"{target}: matches DNS ({len(names)} names)")
        elif old is None or changes or resolution.lock.accepted_empty != old.accepted_empty:
            atomic_write(target, lockfile.dumps(resolution.lock).encode("utf-8"))
            print(f"wrote {target} ({len(names)} names)")
        else:
            print(f"{target}: up to date ({len(names)} names)")
    return ExitCode.POLICY_ERROR if failed else ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("resolve", help="resolve the policies' names into a lock file",
                       description="Resolve every domain name of the policies' egress rules (A and "
                                   "AAAA) and record the addresses in <file>.lock.json beside each "
                                   "policy file, for `compile --lock`. Names already locked keep "
                                   "their addresses unless --update; wildcards cannot be locked "
                                   "(the dnsmasq target fills their sets at run time).",
                       epilog="examples:\n  clawpolicy resolve examples/openclaw-server.claw\n"
                              "  clawpolicy resolve --update --resolver 10.20.0.53 examples/x.claw\n"
                              "  clawpolicy resolve --check examples/x.claw   # CI: exit 1 if DNS moved",
                       formatter_class=HELP_FORMAT)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.add_argument("--resolver", metavar="IP", help="ask this nameserver (default: the system's)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--update", action="store_true",
                     help="ask DNS again for every name, not only for names the lock lacks")
    how.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 if DNS no longer matches the lock, or the lock "
                          "holds a name with no address that was not accepted")
    p.add_argument("--allow-empty", action="store_true",
                   help="accept names that resolve to no address (else an error): recorded in "
                        "the lock, so --check and compile --lock accept them too")
    p.set_defaults(func=cmd_resolve)
