"""The DNS gate (`clawpolicy dns serve`): the agent's resolver, in front of the FQDN sets.

Floors (DESIGN.md "Layout"): `policy` (which names are admitted, which addresses go into which
nftables set with which expiry; pure functions over the IR, floor 3), `logline` (the one line
per decision, written and read back; floor 3), `nftset` and `privileges` (the two pieces of
host I/O: libnftables transactions and dropping to one capability), `server` (the asyncio
loop: UDP/TCP, forwarding, reload; thin over `policy`). The command is `commands/dns.py`.
"""
