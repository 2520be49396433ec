"""A tiny launcher for the seccomp kernel tests: install a generated filter, then act.

    python seccomp_child.py --profile profile.json probe '[[2, 1], [17, 3]]'
    python seccomp_child.py --bpf filter-x86_64.bpf exec -- node -e '...'
    python seccomp_child.py --bpf filter-x86_64.bpf workload

The filter is installed in this process (irreversible, hence a process of its own) either
from profile.json through `clawpolicy.seccomp_loader` into libseccomp, as a container
runtime would, or from the raw .bpf with seccomp(2), as a launcher would. Then:

- `probe CALLS`: socket(family, type, protocol) for each [family, type(, protocol)] (and
  socketpair for AF_UNIX; the raw syscall, 64-bit arguments, when one exceeds an int),
  printing one JSON object: "family,type(,protocol)" -> 0 or errno;
- `exec -- CMD...`: execv CMD under the filter (children inherit it);
- `workload`: a Python agent stand-in: TCP over loopback to its own listener (no DNS), file
  I/O, threads and a subprocess; prints "workload ok" or fails.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clawpolicy import seccomp_loader  # noqa: E402

LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
LIBC.syscall.restype = ctypes.c_long
SYS_SOCKET = 41  # x86_64, where these tests run


def probe(calls: list[list[int]]) -> dict[str, int]:
    out = {}
    for family, kind, *protocol in calls:
        fds = (ctypes.c_int * 2)()
        proto = protocol[0] if protocol else 0
        if max(family, kind, proto) >= 2**31:  # past an int: the raw syscall, all 64 bits
            fd = LIBC.syscall(ctypes.c_long(SYS_SOCKET), *(ctypes.c_ulong(a) for a in (family, kind, proto)))
        else:
            fd = (LIBC.socketpair(family, kind, proto, fds) if family == socket.AF_UNIX
                  else LIBC.socket(family, kind, proto))
        out[",".join(map(str, (family, kind, *protocol)))] = ctypes.get_errno() if fd < 0 else 0
        if fd >= 0:
            for f in (fds[0], fds[1]) if family == socket.AF_UNIX else (fd,):
                os.close(f)
    return out


def workload() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        received: list[bytes] = []

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                data = conn.recv(1024)
                received.append(data)
                conn.sendall(data.upper())

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"hello over loopback")
            reply = client.recv(1024)
        thread.join(5)
    assert received == [b"hello over loopback"] and reply == b"HELLO OVER LOOPBACK", (received, reply)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.txt"
        path.write_text("file I/O under seccomp\n")
        os.rename(path, Path(tmp) / "moved.txt")
        assert (Path(tmp) / "moved.txt").read_text() == "file I/O under seccomp\n"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid() > 0)"],
                          capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "True", done
    print("workload ok", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--profile", type=Path)
    source.add_argument("--bpf", type=Path)
    parser.add_argument("--log", action="store_true", help="SECCOMP_FILTER_FLAG_LOG for --bpf")
    parser.add_argument("--optimize", type=int, default=seccomp_loader.OPTIMIZE_BINARY_TREE,
                        help="libseccomp's optimizer for --profile: 2 binary tree, 1 flat")
    parser.add_argument("command", choices=["probe", "exec", "workload"])
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    calls = json.loads(args.rest[0]) if args.command == "probe" else []
    if args.profile:
        seccomp_loader.load_profile(json.loads(args.profile.read_text()), args.optimize)
    else:
        flags = seccomp_loader.SECCOMP_FILTER_FLAG_LOG if args.log else 0
        seccomp_loader.load_bpf(args.bpf.read_bytes(), flags)
    if args.command == "probe":
        print(json.dumps(probe(calls)), flush=True)
    elif args.command == "exec":
        command = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        os.execvp(command[0], command)
    else:
        workload()
    return 0


if __name__ == "__main__":
    sys.exit(main())
