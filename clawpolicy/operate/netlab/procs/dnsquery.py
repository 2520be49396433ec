"""DNS lookups for netlab (run inside a network namespace, with dnspython).

Reads one JSON object on stdin::

    {"uid": 0, "timeout": 1.0,
     "queries": [{"server": "127.0.0.1", "name": "api.llm.test", "type": "A", "tcp": false}, ...]}

drops privileges to ``uid`` when it is given and not 0, asks each query in turn (no retries,
no search list, one server) and writes one JSON object per query, in input order::

    {"outcome": "ok" | "timeout" | "eperm" | "error", "rcode": "NOERROR" | "NXDOMAIN" | ...,
     "addresses": [...], "ttl": 60 | null, "error": "..." | null}
"""

from __future__ import annotations

import errno
import json
import sys
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from probe import become  # type: ignore[import-not-found,unused-ignore]  # the sibling script


def _ask(q: dict[str, Any], timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {"outcome": "ok", "rcode": None, "addresses": [], "ttl": None, "error": None}
    rdtype = dns.rdatatype.from_text(q.get("type", "A"))
    query = dns.message.make_query(q["name"], rdtype)
    try:
        if q.get("tcp"):
            reply = dns.query.tcp(query, q["server"], timeout=timeout)
        else:
            reply = dns.query.udp(query, q["server"], timeout=timeout)
    except dns.exception.Timeout:
        return {**out, "outcome": "timeout"}
    except OSError as exc:
        code = "eperm" if exc.errno == errno.EPERM else ("timeout" if exc.errno == errno.ETIMEDOUT else "error")
        return {**out, "outcome": code, "error": str(exc)}
    except dns.exception.DNSException as exc:
        return {**out, "outcome": "error", "error": str(exc)}
    out["rcode"] = dns.rcode.to_text(reply.rcode())
    for rrset in reply.answer:
        if rrset.rdtype == rdtype:
            out["addresses"].extend(r.to_text() for r in rrset)
            out["ttl"] = rrset.ttl
    return out


def main() -> int:
    req = json.load(sys.stdin)
    become(req.get("uid"))
    timeout = float(req.get("timeout", 1.0))
    json.dump([_ask(q, timeout) for q in req["queries"]], sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
