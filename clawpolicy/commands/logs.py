"""Log-only dry runs that lead to enforcement: `explain`, `simulate`, `suggest` (issue 8).

Run a policy in shadow mode for a week; `explain` reads what would have been blocked from the
kernel's logs, `simulate` replays recorded connections as if enforced, `suggest` proposes the
rules that would have allowed them; a human reviews, then flips the policy to enforce.
Bad input lines are counted, never fatal; an unreadable file is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from clawpolicy.commands import HELP_FORMAT, Subparsers, print_diagnostics, progress
from clawpolicy.errors import ExitCode, Severity
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.operate import explain, flowfile, logparse, simulate, suggest, textinput
from clawpolicy.operate.ratelimit import Suppressed
from clawpolicy.printable import shown

EXPLAIN_HELP = """\
examples:
  clawpolicy explain -p examples/openclaw-workstation.claw /var/log/audit/audit.log /var/log/kern.log
  journalctl -k -o json --since -7d | clawpolicy explain -p examples/openclaw-workstation.claw --format markdown

Reads the DNS gate's lines (clawpolicy-dns: ... verdict=refuse|would-refuse|deny ...),
nftables log lines (clawpolicy:<policy>:deny|would-deny:<rule>), seccomp audit records
(type=1326 / type=SECCOMP) and AppArmor records (apparmor="DENIED"|"ALLOWED") from dmesg,
/dev/kmsg, syslog, journalctl (-o short, short-iso, json) and audit.log. Without --policy the
policy and rule come from the log prefix alone; with it, each rule's source line and reason.
Repeats are grouped (count, first, last); lines that are not denial records are counted.
Log lines are anyone's text (`logger` writes them): fields are escaped in every format, and
a line in one of these shapes with impossible values (a timestamp past 9999, a port or a
syscall number out of range) is counted as unreadable and named on stderr (file:line: why).
seccomp and AppArmor records are audit records: without auditd the kernel log (dmesg,
/dev/kmsg, journalctl -k) keeps only some of them under load and says `kauditd_printk_skb: N
callbacks suppressed`; explain warns when it reads such a line. Read audit.log for them
(auditd), or journald's audit records; `journalctl` itself needs systemd-journald.
"""

SIMULATE_HELP = """\
examples:
  clawpolicy simulate examples/openclaw-workstation.claw flows.jsonl
  conntrack -L | clawpolicy simulate examples/openclaw-workstation.claw - --local 10.0.0.5/32  # as root
  ss -tunap | clawpolicy simulate examples/openclaw-workstation.claw - --format markdown
  journalctl -u clawpolicy-dns-x | clawpolicy simulate examples/openclaw-workstation.claw --dns-log -

Flow files: JSON lines or CSV with columns time,direction,src,dst,port,proto,uid,name (name:
the destination's domain name, matched against FQDN rules), `conntrack -L` or `ss -tunap`
output (detected per file; --flow-format to force). Each flow is decided by the evaluator as
if the policy were enforced. Reports flows per rule, what would have been blocked (grouped by
peer and port) and the rules that matched no flow (candidates for removal). Every field is
validated as the policy language would; lines that are not flows are counted and the first
ones named on stderr (file:line: why).
"""

SUGGEST_HELP = """\
examples:
  clawpolicy suggest examples/openclaw-workstation.claw --flows flows.jsonl > suggested.claw-rules
  clawpolicy suggest examples/openclaw-workstation.claw --log /var/log/audit/audit.log
  clawpolicy suggest examples/openclaw-workstation.claw --flows week.csv --min-hosts 16

Proposes `allow` rules (reason "TODO") for what the default denied, like audit2allow:
names over addresses where the records have them, a /24 (IPv6 /64) for --min-hosts or more
addresses in it, *.parent for --min-names or more names under one parent, one rule per port
set. What a rule denied explicitly is listed as a comment (no allow can override a deny).
Review, edit the reasons, paste inside the policy; nothing is applied automatically. A value
no policy can hold (a name with a comma, `any`, a port out of range) is dropped and named on
stderr; the text is checked to parse back to exactly the rules proposed.
"""


class InputError(Exception):
    """A file named on the command line cannot be read."""


@contextmanager
def _open(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        fh = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror}") from exc
    with fh:
        yield fh


def _load(paths: Sequence[Path]) -> list[Policy] | None:
    if not paths:
        return []
    loaded = load_policies(paths)
    print_diagnostics([d for d in loaded.diagnostics if d.severity is Severity.ERROR], loaded.sources)
    return loaded.policies if loaded.ok else None


def _processes(args: argparse.Namespace) -> explain.Processes:
    return explain.Processes(tuple(getattr(args, "comm", []) or ()), tuple(getattr(args, "exe", []) or ()))


def _explain_logs(names: Sequence[str], policies: Sequence[Policy],
                  processes: explain.Processes = explain.Processes(),
                  suppressed: Suppressed | None = None) -> explain.Explanation:
    from clawpolicy.dnsgate.querylog import GateLines  # the DNS gate's lines (clawpolicy dns serve)

    parsed = logparse.ParseResult()
    gate = GateLines()
    watch = (suppressed or Suppressed()).watch
    for name in names or ["-"]:
        with _open(name) as fh:
            lines = watch(textinput.read_lines(fh))  # over-long lines pass by the gate to be counted
            logparse.parse_lines((x for line in lines for x in (
                [line] if isinstance(line, textinput.Overlong) else gate.watch([line]))), parsed, name)
    _warn(parsed.unreadable)
    base = explain.explain(parsed, policies, processes)
    return dataclasses.replace(gate.add_to(base, policies), unreadable=base.unreadable)


def _read_flows(names: Sequence[str], fmt: str, local: Sequence[str]) -> flowfile.FlowFile:
    nets = [ipaddress.ip_network(n, strict=False) for n in local]
    out = flowfile.FlowFile()
    for name in names:
        with _open(name) as fh:
            flowfile.parse_flows(textinput.read_lines(fh), fmt, nets, out, name)
    _warn(out.unreadable)
    return out


def _warn(problems: textinput.Problems) -> None:
    """Unreadable lines, positioned, on stderr: the first few, then how many more."""
    for line in problems.report():
        print(shown(line), file=sys.stderr)


def _fail(exc: Exception) -> int:
    """A file named on the command line that cannot be read is 1, as in every command; a
    command line that cannot work (no input named, a bad option value) is usage, 2."""
    print(shown(f"clawpolicy: error: {exc}"), file=sys.stderr)
    return ExitCode.POLICY_ERROR if isinstance(exc, (InputError, OSError)) else ExitCode.USAGE


def cmd_explain(args: argparse.Namespace) -> int:
    policies = _load(args.policy)
    if policies is None:
        return ExitCode.POLICY_ERROR
    if args.follow:
        return _follow(args.logs, policies, _processes(args))
    suppressed = Suppressed()
    try:
        result = _explain_logs(args.logs, policies, _processes(args), suppressed)
    except InputError as exc:
        return _fail(exc)
    if (why := suppressed.warning()) is not None:
        print(f"clawpolicy: warning: {why}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    elif args.format == "markdown":
        print(explain.render_markdown(result))
    else:
        print(explain.render_text(result))
    return ExitCode.OK


def _follow(names: Sequence[str], policies: Sequence[Policy], processes: explain.Processes) -> int:
    """`explain --follow`: one JSON line per denial, flushed at once (operate/follow.py)."""
    from clawpolicy.operate import follow

    if len(names) > 1:
        return _fail(ValueError("--follow reads one file, or stdin"))
    source = (sys.stdin if not names or names[0] == "-"
              else follow.tail(Path(names[0])))
    try:
        for event in follow.events(source, policies, processes):
            print(json.dumps(event, sort_keys=True), flush=True)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        return _fail(exc)
    return ExitCode.OK


def _user_id(text: str) -> tuple[str, int]:
    name, sep, uid = text.partition("=")
    if not sep or not name or not uid.isascii() or not uid.isdigit() or int(uid) >= 2**32 - 1:
        raise argparse.ArgumentTypeError(f"{shown(text)}: give NAME=UID, e.g. openclaw=995")
    return name, int(uid)


@progress.one_shot
def cmd_simulate(args: argparse.Namespace) -> int:
    policies = _load([args.policy_file])
    if policies is None:
        return ExitCode.POLICY_ERROR
    if args.dns_log:
        return _simulate_dns(args, policies)
    if not args.flows:
        return _fail(ValueError("give flow files, or --dns-log LOG"))
    try:
        with progress.step("reading the flows"):
            flows = _read_flows(args.flows, args.flow_format, args.local)
    except (InputError, ValueError) as exc:
        return _fail(exc)
    users = dict(args.user)
    with progress.step(f"deciding {len(flows.flows):,} flows"):
        results = [simulate.simulate(p, flows.flows, users) for p in policies
                   if not args.policy or p.name == args.policy]
    note = f"{flows.unrecognised} of {flows.lines} lines were not flows"
    if args.format == "json":
        doc = {"lines": flows.lines, "unrecognised": flows.unrecognised,
               "policies": [r.to_json() for r in results]}
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        render = simulate.render_markdown if args.format == "markdown" else simulate.render_text
        print("\n\n".join(render(r) for r in results))
        print(note if args.format == "text" else f"\n{note}")
    return ExitCode.OK


def _simulate_dns(args: argparse.Namespace, policies: Sequence[Policy]) -> int:
    """`simulate --dns-log`: DNS queries as the gate would decide them (dnsgate/querylog.py)."""
    from clawpolicy.dnsgate import querylog

    queries: list[querylog.Query] = []
    try:
        for name in args.dns_log:
            with _open(name) as fh:
                queries.extend(querylog.parse_queries(textinput.read_lines(fh)))
    except InputError as exc:
        return _fail(exc)
    results = [querylog.simulate_dns(p, queries) for p in policies if not args.policy or p.name == args.policy]
    if args.format == "json":
        print(json.dumps({"dns": [r.to_json() for r in results]}, indent=2, sort_keys=True))
    else:
        render = querylog.render_markdown if args.format == "markdown" else querylog.render_text
        print("\n\n".join(render(r) for r in results))
    return ExitCode.OK


@progress.one_shot
def cmd_suggest(args: argparse.Namespace) -> int:
    policies = _load([args.policy_file])
    if policies is None:
        return ExitCode.POLICY_ERROR
    chosen = [p for p in policies if not args.policy or p.name == args.policy]
    if len(chosen) != 1:
        print(f"clawpolicy: error: {args.policy_file} defines {len(chosen)} matching policies; "
              "name one with --policy", file=sys.stderr)
        return ExitCode.USAGE
    policy = chosen[0]
    try:
        if args.flows:
            with progress.step("reading the flows"):
                flows = _read_flows(args.flows, args.flow_format, args.local)
            with progress.step(f"deciding {len(flows.flows):,} flows"):
                observations = suggest.from_simulation(simulate.simulate(policy, flows.flows))
            syscalls: list[tuple[str, int]] = []
        else:
            result = _explain_logs(args.log, [policy], _processes(args))
            observations, syscalls = suggest.from_explanation(result, policy.name)
    except (InputError, ValueError) as exc:
        return _fail(exc)
    try:
        proposal = suggest.suggest(policy.name, observations, syscalls,
                                   min_hosts=args.min_hosts, min_names=args.min_names, base=policy)
    except suggest.SuggestError as exc:
        print(f"clawpolicy: error: {exc}", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    for why in proposal.dropped:
        print(shown(f"clawpolicy: warning: dropped {why}"), file=sys.stderr)
    high = proposal.risks.count("high")
    if high:
        print(f"clawpolicy: warning: {high} proposed rule(s) rated high risk (see the "
              "`# risk high` comments): read them before pasting anything", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({"policy": proposal.policy, "rules": proposal.rules, "flows": proposal.flows,
                          "dropped": proposal.dropped, "risks": proposal.risks, "text": proposal.text},
                         indent=2, sort_keys=True))
    else:
        print(proposal.text, end="")
    return ExitCode.OK


def _process_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--comm", action="append", default=[], metavar="NAME",
                   help="seccomp records of this process name (comm, 15 bytes) are the policy's "
                        "(repeatable; default: derived from the policy's executable)")
    p.add_argument("--exe", action="append", default=[], metavar="PATH",
                   help="seccomp records of this executable (a glob) are the policy's (repeatable)")


def _flow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flow-format", choices=flowfile.FORMATS, default="auto",
                   help="flow file format (default: detected per file)")
    p.add_argument("--local", action="append", default=[], metavar="CIDR",
                   help="the agent host's addresses (conntrack: connections to them are ingress)")


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return int(text)


def register(sub: Subparsers) -> None:
    p = sub.add_parser("explain", help="explain kernel denial log lines (nftables, seccomp, AppArmor)",
                       description="Name the policy, rule, source line, reason and mechanism behind "
                                   "each denial (or would-deny) in kernel and audit logs.",
                       epilog=EXPLAIN_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("logs", nargs="*", metavar="LOG", help="log files ('-' or none: stdin)")
    p.add_argument("-p", "--policy", action="append", type=Path, default=[], metavar="POLICY.claw",
                   help="policy files whose rules the logs name (repeatable)")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    p.add_argument("--follow", action="store_true",
                   help="keep reading (stdin, or one file like tail -F) and print one JSON line "
                        "per denial as it arrives: policy, rule, source line, layer, process")
    _process_options(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("simulate", help="replay recorded flows against a policy as if enforced",
                       description="Decide recorded connections with the evaluator, as if the "
                                   "policy were enforced.",
                       epilog=SIMULATE_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("policy_file", type=Path, metavar="POLICY.claw")
    p.add_argument("flows", nargs="*", metavar="FLOWS", help="flow files ('-': stdin)")
    p.add_argument("--dns-log", action="append", default=[], metavar="LOG",
                   help="instead of flows: a DNS query log (the DNS gate's lines or dnsmasq "
                        "--log-queries), decided as the gate would in enforce mode")
    p.add_argument("--policy", help="only the policy with this name")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    p.add_argument("--user", action="append", default=[], type=_user_id, metavar="NAME=UID",
                   help="the uid of an `applies-to user` on the host the flows come from, when "
                        "this host's user database does not have it (flows may name either)")
    _flow_options(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("suggest", help="propose rules that would allow what was blocked",
                       description="Propose policy text (audit2allow-style) from recorded flows "
                                   "or denial logs. Never applied automatically.",
                       epilog=SUGGEST_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("policy_file", type=Path, metavar="POLICY.claw")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--flows", nargs="+", metavar="FLOWS", help="flow files, as for simulate")
    source.add_argument("--log", nargs="+", metavar="LOG", help="log files, as for explain ('-': stdin)")
    _process_options(p)
    p.add_argument("--policy", help="the policy, when the file defines several")
    p.add_argument("--min-hosts", type=_at_least_one, default=8, metavar="N",
                   help="addresses of one /24 (IPv6 /64) that make the whole network (default 8)")
    p.add_argument("--min-names", type=_at_least_one, default=3, metavar="N",
                   help="names under one parent domain that make *.parent (default 3)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    _flow_options(p)
    p.set_defaults(func=cmd_suggest)
