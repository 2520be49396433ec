"""Loading a ruleset into the lab and reading it back: floor 3 (operate/netlab).

`nft -f` runs in the agent namespace. A ruleset that names users or groups (`meta skuid
"openclaw"`) needs them in /etc/passwd and /etc/group: the lab bind-mounts copies with extra
lines over them in a private mount namespace (unshare(1)), so the host's files never change.
Counters and set elements are read from `nft -j` (libnftables' JSON schema, nft 1.0.6)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def write_ruleset(tmpdir: Path, k: int, text: str, *, flush: bool) -> Path:
    """The file `nft -f` reads for load number `k`. With `flush`, a wrapper prepends `flush
    ruleset` in the same transaction and includes the text, so nft's error positions stay
    relative to the caller's text."""
    path = tmpdir / f"ruleset{k}.nft"
    path.write_text(text if text.endswith("\n") else text + "\n")
    if not flush:
        return path
    wrapper = tmpdir / f"load{k}.nft"
    wrapper.write_text(f'flush ruleset\ninclude "{path}"\n')
    return wrapper


def load_argv(tmpdir: Path, k: int, ns: str, path: Path, *, users: Mapping[str, int],
              groups: Mapping[str, int]) -> list[str]:
    """The command that loads `path` into namespace `ns`, with the extra accounts visible."""
    if not users and not groups:
        return ["ip", "netns", "exec", ns, "nft", "-f", str(path)]
    extra: list[str] = []
    for src, entries, name in (("/etc/passwd", users, "passwd"), ("/etc/group", groups, "group")):
        if not entries:
            continue
        body = Path(src).read_text()
        if body and not body.endswith("\n"):
            body += "\n"
        for account, ident in entries.items():
            if not _ACCOUNT.fullmatch(account):
                raise ValueError(f"bad user/group name {account!r}")
            if name == "passwd":
                body += f"{account}:x:{int(ident)}:{int(ident)}::/nonexistent:/usr/sbin/nologin\n"
            else:
                body += f"{account}:x:{int(ident)}:\n"
        copy = tmpdir / f"{name}{k}"
        copy.write_text(body)
        copy.chmod(0o644)
        extra += [str(copy), src]
    # Paths travel as positional parameters, never inside the script text.
    binds = " && ".join(f'mount --bind "${i + 1}" "${i + 2}"' for i in range(0, len(extra), 2))
    n = len(extra)
    script = f'{binds} && exec ip netns exec "${n + 1}" nft -f "${n + 2}"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            *extra, ns, str(path)]


def chain_counters(listing: str) -> dict[str, int]:
    """chain name -> total packets of all anonymous `counter` statements in its rules, from
    `nft -j list table`."""
    totals: dict[str, int] = {}
    for obj in json.loads(listing).get("nftables", []):
        if "chain" in obj:
            totals.setdefault(obj["chain"]["name"], 0)
        elif "rule" in obj:
            rule = obj["rule"]
            totals[rule["chain"]] = totals.get(rule["chain"], 0) + _sum_counters(rule.get("expr", []))
    return totals


def set_elements(listing: str) -> dict[str, str]:
    """address -> "expires ..." text (empty without a timeout), from `nft -j list set`."""
    out: dict[str, str] = {}
    for obj in json.loads(listing).get("nftables", []):
        for elem in obj.get("set", {}).get("elem", []):
            if isinstance(elem, dict) and "elem" in elem:
                inner = elem["elem"]
                out[str(inner["val"])] = str(inner.get("expires", ""))
            else:
                out[str(elem)] = ""
    return out


def _sum_counters(node: Any) -> int:
    """Sum the packets of every anonymous counter in a rule's JSON expression tree."""
    if isinstance(node, list):
        return sum(_sum_counters(x) for x in node)
    if isinstance(node, dict):
        total = 0
        for key, val in node.items():
            if key == "counter" and isinstance(val, dict) and "packets" in val:
                total += int(val["packets"])
            else:
                total += _sum_counters(val)
        return total
    return 0
