"""Adoption: `init --from-openclaw` (a starter policy from openclaw.json) and `observe`
(the agent's live sockets judged by a policy)."""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import time
from pathlib import Path

from clawpolicy.commands import HELP_FORMAT, Subparsers, positive_int, print_diagnostics
from clawpolicy.errors import ExitCode
from clawpolicy.printable import shown

INIT_HELP = """\
examples:
  clawpolicy init --from-openclaw
      reads ~/.openclaw/openclaw.json (or $OPENCLAW_CONFIG_PATH, or a legacy
      ~/.clawdbot/clawdbot.json), writes openclaw-<host>.claw
  clawpolicy init --from-openclaw /srv/openclaw/openclaw.json --user openclaw -o agent.claw
  clawpolicy init --from-openclaw --host -o - | less      # print instead of writing

Then: clawpolicy test agent.claw && clawpolicy lint agent.claw && clawpolicy compile agent.claw
The policy starts in shadow mode; every rule says which configuration key it came from, and
providers or channels clawpolicy does not know become TODO comments.
"""

OBSERVE_HELP = """\
examples:
  clawpolicy observe agent.claw --pid $(pgrep -f openclaw-gateway)
  clawpolicy observe agent.claw --user openclaw --watch 5
  clawpolicy observe agent.claw --service openclaw-gateway --format json | jq .summary
  clawpolicy observe agent.claw --cgroup /sys/fs/cgroup/system.slice/openclaw.service

Each socket is judged by the evaluator (the policy's reference semantics): which rule allows
it, or that it would be denied. [EXPOSED] marks a listener beyond loopback (the gateway bound
to 0.0.0.0), [MDNS] an mDNS socket. Reading other users' sockets needs root.
"""
_HOST_LABEL = re.compile(r"[^a-z0-9-]+")


def _default_name() -> str:
    host = _HOST_LABEL.sub("-", socket.gethostname().split(".")[0].lower()).strip("-")
    name = f"openclaw-{host}"[:48].rstrip("-") if host else "openclaw"
    return name if re.fullmatch(r"[a-z][a-z0-9-]{0,47}", name) else "openclaw"


def _resolvers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """Non-loopback nameservers (loopback resolvers pass anyway)."""
    import ipaddress

    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if not address.is_loopback:
                out.append(str(address))
    return sorted(set(out), key=lambda a: (":" in a, a))


def _config_owner(path: Path) -> str | None:
    """The agent's user, guessed from who owns its configuration (root: fence the host); its
    uid when the account name is not one `applies-to user` accepts (`John.Doe`)."""
    from clawpolicy.adopt.procnet import user_name
    from clawpolicy.adopt.starter import valid_user

    uid = path.stat().st_uid
    if uid == 0:
        return None
    name = user_name(uid)
    return name if valid_user(name) else str(uid)


def cmd_init(args: argparse.Namespace) -> int:
    from clawpolicy.adopt import deployment, openclaw_config, starter

    if args.from_openclaw is None:
        print("clawpolicy: error: say where to start from: --from-openclaw [PATH]", file=sys.stderr)
        return ExitCode.USAGE
    name = args.name or _default_name()
    if not starter.valid_policy_name(name):
        print(f"clawpolicy: error: invalid --name {name!r}: 1-48 of a-z, 0-9 and '-', starting "
              "with a letter", file=sys.stderr)
        return ExitCode.USAGE
    if args.user is not None and not starter.valid_user(args.user):
        print(f"clawpolicy: error: invalid --user {args.user!r}", file=sys.stderr)
        return ExitCode.USAGE
    explicit = None if args.from_openclaw == "" else Path(args.from_openclaw)
    try:
        path = openclaw_config.locate(explicit)
        config = openclaw_config.load(path)
    except openclaw_config.ConfigError as exc:
        print(shown(str(exc)), file=sys.stderr)  # it may quote the file's text or name
        return ExitCode.POLICY_ERROR
    user = None if args.host else (args.user or _config_owner(path))
    ssh_ports = None
    if user is None:
        from clawpolicy.adopt import sshd

        ssh_ports = sshd.listening_ports()
    text = starter.render(deployment.read_deployment(config.data), name=name, user=user,
                          config_files=config.files, resolvers=_resolvers(), ssh_ports=ssh_ports)
    problems = starter.check(text, name)
    if problems:  # a bug: every value is validated; never write a policy that does not compile
        print(shown(f"clawpolicy: error: the starter policy built from {path} does not "
                    f"compile ({'; '.join(problems[:3])}); nothing written. Please report "
                    "this with the configuration."), file=sys.stderr)
        return ExitCode.POLICY_ERROR
    out = args.output or Path(f"{name}.claw")
    if str(out) == "-":
        sys.stdout.write(text)
        return ExitCode.OK
    if out.exists() and not args.force:
        print(f"clawpolicy: error: {out} exists; use --force to replace it, or -o another file",
              file=sys.stderr)
        return ExitCode.POLICY_ERROR
    from clawpolicy.write import atomic_write

    atomic_write(out, text.encode("utf-8"))
    scope = f"user {user}" if user else "the whole host"
    print(shown(f"wrote {out} from {', '.join(map(str, config.files))} (applies to {scope}, shadow mode)"))
    print(shown(f"next: clawpolicy test {out} && clawpolicy lint {out}"))
    return ExitCode.OK


def cmd_observe(args: argparse.Namespace) -> int:
    from clawpolicy.adopt import observe, procnet
    from clawpolicy.lockfile import LockError, load, lock_path
    from clawpolicy.lower import load_policies

    loaded = load_policies([args.policy])
    print_diagnostics([d for d in loaded.diagnostics if d.severity.value == "error"],
                      loaded.sources)
    if not loaded.ok or not loaded.policies:
        return ExitCode.POLICY_ERROR
    if len(loaded.policies) > 1 and not args.policy_name:
        print("clawpolicy: error: the file has several policies; choose one with --policy",
              file=sys.stderr)
        return ExitCode.USAGE
    chosen = [p for p in loaded.policies if not args.policy_name or p.name == args.policy_name]
    if not chosen:
        print(f"clawpolicy: error: no policy {args.policy_name!r} in {args.policy}", file=sys.stderr)
        return ExitCode.USAGE
    policy = chosen[0]
    locked: dict[str, list[str]] = {}
    if lock_path(args.policy).exists():
        try:
            for name, addresses in load(lock_path(args.policy)).addresses().items():
                for address in addresses:
                    locked.setdefault(address, []).append(name)
        except LockError as exc:
            print(f"clawpolicy: warning: {exc}; judging without the lock file", file=sys.stderr)
    rounds = 0
    while True:
        try:
            if args.pid is not None:
                selection = procnet.by_pid(args.pid, children=not args.no_children)
            elif args.user is not None:
                selection = procnet.by_user(args.user)
            elif args.service is not None:
                selection = procnet.by_service(args.service)
            else:
                selection = procnet.by_cgroup(Path(args.cgroup))
            sockets = procnet.sockets_of(selection)
        except procnet.ProcError as exc:
            print(shown(f"clawpolicy: error: {exc}"), file=sys.stderr)
            return ExitCode.POLICY_ERROR
        findings = observe.judge(policy, sockets, locked)
        if args.format == "json":
            print(json.dumps(observe.render_json(policy, selection.description, findings,
                                                 selection.unreadable), indent=2, sort_keys=True))
        else:
            if args.watch and sys.stdout.isatty():
                print("\033[H\033[2J", end="")
            if args.watch:
                print(time.strftime("%Y-%m-%d %H:%M:%S"))
            print(observe.render_text(policy, selection.description, findings, selection.unreadable))
        sys.stdout.flush()
        rounds += 1
        if not args.watch or (args.count and rounds >= args.count):
            return ExitCode.OK
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="write a starter policy from an OpenClaw configuration",
                       description="Read an OpenClaw configuration (JSON5, $include resolved) and "
                                   "write a documented starter policy in shadow mode: its model "
                                   "providers, channels, gateway port and bind, mDNS and update "
                                   "check, with a test per integration.",
                       epilog=INIT_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("--from-openclaw", nargs="?", const="", metavar="PATH",
                   help="the configuration (default: where OpenClaw looks: $OPENCLAW_CONFIG_PATH, "
                        "~/.openclaw/openclaw.json, legacy ~/.clawdbot/clawdbot.json, ...)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="where to write (default: <name>.claw; '-' prints it)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--name", help="the policy's name (default: openclaw-<hostname>)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--user", help="the agent's system user (default: the configuration's "
                                    "owner; root means the whole host)")
    who.add_argument("--host", action="store_true", help="fence the whole host, not one user")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("observe", help="judge the agent's live sockets against a policy",
                       description="List the sockets of the agent's processes (listening and "
                                   "connected TCP/UDP, IPv4 and IPv6, from /proc, in their own "
                                   "network namespace) and judge each with the evaluator.",
                       epilog=OBSERVE_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("policy", type=Path, metavar="POLICY.claw")
    p.add_argument("--policy", dest="policy_name", metavar="NAME",
                   help="which policy of the file (when it has several)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pid", type=int, help="this process and its descendants")
    which.add_argument("--user", help="every process of this user (name or uid)")
    which.add_argument("--service", metavar="UNIT", help="every process of a systemd unit")
    which.add_argument("--cgroup", metavar="PATH", help="every process of a cgroup v2 directory")
    p.add_argument("--no-children", action="store_true", help="with --pid: that process only")
    p.add_argument("--watch", nargs="?", type=positive_int, const=2, metavar="SECONDS",
                   help="refresh every SECONDS (default 2) until interrupted")
    p.add_argument("--count", type=positive_int, metavar="N", help="with --watch: stop after N reports")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_observe)
