"""The DNS gate (`clawpolicy dns serve`): the agent's resolver, in front of the FQDN sets.

Floors (DESIGN.md "Layout"): `upstreams` (listen/upstream addresses, resolv.conf; floor 1),
`policy` (which names are admitted, which addresses go into which nftables set with which
expiry: pure functions over the IR, floor 3), `logline` (the one line per decision, written
and read back) and `querylog` (those lines and dnsmasq's query log for `explain` and
`simulate --dns-log`), then the host I/O, each thin: `nftset` (libnftables transactions),
`privileges` (down to CAP_NET_ADMIN), `forward` (the upstream sockets), `server` (the
asyncio loop: UDP/TCP, decisions, reload) and `workers` (the `--workers` supervisor). The
command is `commands/dns.py`; the systemd unit and resolv.conf line are the `dnsgate` target (`backends/dnsgate.py`).
"""
