"""The kernel lab lives in the package (clawpolicy/operate/netlab/) for `clawpolicy test
--kernel`; this module keeps `from netlab import Lab` working for the kernel tests."""

from __future__ import annotations

from clawpolicy.operate.netlab import *  # noqa: F401,F403
from clawpolicy.operate.netlab import (  # noqa: F401 - the names tests use, for readers and mypy
    DNSQUERY,
    LISTENER,
    PROBE,
    Daemon,
    DnsAnswer,
    DnsQuery,
    Lab,
    LabError,
    NftError,
    Probe,
    ProbeResult,
    cleanup_stale_namespaces,
    format_results,
)
