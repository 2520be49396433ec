"""An agent stand-in for the observe tests: opens the sockets the test then asks
`clawpolicy observe` about, writes "ready" to the file named in argv[1], and sleeps.

argv: READY_FILE JSON, JSON = {"listen_tcp": [[addr, port], ...], "bind_udp": [[addr, port]],
"connect_tcp": [[addr, port], ...]}. Started under the test uid (setpriv) by the test.
Plain library: no pytest import.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def main() -> None:
    ready, spec = sys.argv[1], json.loads(sys.argv[2])
    held = []
    for addr, port in spec.get("listen_tcp", []):
        s = socket.socket(_family(addr), socket.SOCK_STREAM)
        if ":" in addr:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen()
        held.append(s)
    for addr, port in spec.get("bind_udp", []):
        s = socket.socket(_family(addr), socket.SOCK_DGRAM)
        s.bind((addr, port))
        held.append(s)
    for addr, port in spec.get("connect_tcp", []):
        s = socket.create_connection((addr, port), timeout=5)
        held.append(s)
    with open(ready, "w") as f:
        f.write("ready")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
