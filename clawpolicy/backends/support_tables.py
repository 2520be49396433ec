"""Which policy features each target enforces: floor 2, data only.

Every backend's `support` table lives here, not in its module, so the registry's support
check can say that an unselected target would enforce a rule (`enforced-elsewhere`) without
importing that target: importing seccomp, AppArmor, systemd and their libraries (YAML, the
seccomp loader, jinja2) cost `compile -t nftables` about 80 ms of start-up (issue 14). Each
backend's `support` attribute is the table below (tests/unit/test_support_tables.py), and the
docs target prints them as the enforcement matrix.
"""

from __future__ import annotations

from collections.abc import Mapping

from clawpolicy.backends.base import CompileOptions, Feature, Level, Support

NFTABLES: Mapping[Feature, Support] = {
    Feature.CIDR_PORT: Support(Level.YES, "address interval verdict maps, then protocol . port classifiers"),
    Feature.FQDN: Support(Level.PARTIAL, "address sets filled at run time by the dnsmasq "
                          "target's resolver, or from a lock file (denied until then); DNS "
                          "only through that resolver"),
    Feature.WILDCARD: Support(Level.PARTIAL, "address sets filled at run time by the dnsmasq "
                              "target's resolver"),
    Feature.EXPLICIT_DENY: Support(Level.YES, "deny maps are consulted before allow maps"),
    Feature.INGRESS: Support(Level.YES, "input chain"),
    Feature.USER_SCOPE: Support(Level.YES, "egress by meta skuid; ingress by the agent ports"),
    Feature.SOCKETS: Support(Level.NO, "a firewall sees packets, not socket() calls"),
    Feature.CAPABILITIES: Support(Level.NO, "a firewall cannot drop process capabilities"),
    Feature.SYSCALLS: Support(Level.NO, "a firewall sees packets, not system calls"),
    Feature.FILES: Support(Level.NO, "a firewall cannot see file access"),
    Feature.LOG_ONLY: Support(Level.YES, "log 'would-deny' and accept"),
}

DNSMASQ: Mapping[Feature, Support] = {
    Feature.FQDN: Support(Level.PARTIAL, "fills the nftables sets with each answer; names "
                          "below an exact-only name are answered NXDOMAIN"),
    Feature.WILDCARD: Support(Level.PARTIAL, "fills the nftables sets with each answer; the "
                              "wildcard's own suffix is answered NXDOMAIN unless allowed"),
}

DNSGATE: Mapping[Feature, Support] = {}

SECCOMP: Mapping[Feature, Support] = {
    Feature.CIDR_PORT: Support(Level.NO, "seccomp cannot read connect()/sendto() addresses "
                               "(a pointer, seccomp(2)); nftables filters destinations"),
    Feature.FQDN: Support(Level.NO, "no names or addresses at the syscall layer"),
    Feature.WILDCARD: Support(Level.NO, "no names or addresses at the syscall layer"),
    Feature.EXPLICIT_DENY: Support(Level.NO, "network denies name addresses, which seccomp "
                                   "cannot see"),
    Feature.INGRESS: Support(Level.NO, "accept() has no peer address to filter on"),
    Feature.USER_SCOPE: Support(Level.PARTIAL, "applies to the processes started under the "
                                "profile (runtime or launcher), whatever their user"),
    Feature.SOCKETS: Support(Level.YES, "socket()/socketpair() family, type and netlink "
                             "protocol arguments"),
    Feature.SYSCALLS: Support(Level.YES, "syscall allowlist (baseline + rules)"),
    Feature.CAPABILITIES: Support(Level.PARTIAL, "refuses the syscalls of capabilities not "
                                  "kept; the runtime sets the capability sets"),
    Feature.FILES: Support(Level.NO, "paths are behind pointers"),
    Feature.LOG_ONLY: Support(Level.YES, "SCMP_ACT_LOG (audit type=1326)"),
}

APPARMOR: Mapping[Feature, Support] = {
    Feature.CIDR_PORT: Support(Level.NO, "AppArmor 3 network rules name socket families and "
                               "types, never addresses or ports"),
    Feature.FQDN: Support(Level.NO, "AppArmor does not see domain names"),
    Feature.WILDCARD: Support(Level.NO, "AppArmor does not see domain names"),
    Feature.EXPLICIT_DENY: Support(Level.NO, "network deny rules name addresses, which "
                                   "AppArmor 3 cannot match"),
    Feature.INGRESS: Support(Level.NO, "AppArmor 3 cannot tell who connects"),
    Feature.USER_SCOPE: Support(Level.NO, "a profile confines a program, whoever runs it"),
    Feature.SOCKETS: Support(Level.YES, "network FAMILY TYPE rules; raw and packet denied "
                             "unless kept (unix sockets stay open for abstractions/base; "
                             "netlink protocols are not mediated)"),
    Feature.SYSCALLS: Support(Level.NO, "AppArmor mediates objects, not system calls"),
    Feature.CAPABILITIES: Support(Level.YES, "capability rules; dangerous ones denied explicitly"),
    Feature.FILES: Support(Level.YES, "path rules: audited denies on the path and below "
                           "(every home for ~/), owner-scoped writes for allowed ~/ paths"),
    Feature.LOG_ONLY: Support(Level.YES, "flags=(complain), denials as audit rules"),
}

SYSTEMD: Mapping[Feature, Support] = {
    Feature.CIDR_PORT: Support(Level.PARTIAL, "IPAddressAllow= per address, both directions, no ports"),
    Feature.FQDN: Support(Level.NO, "IPAddressAllow= takes addresses only (compile --lock "
                          "uses the locked ones)"),
    Feature.WILDCARD: Support(Level.NO, "IPAddressAllow= takes addresses only"),
    Feature.EXPLICIT_DENY: Support(Level.PARTIAL, "IPAddressDeny=any; a deny inside an allowed "
                                   "network cannot be carved out (the allow list wins)"),
    Feature.INGRESS: Support(Level.PARTIAL, "the same address list, no ports"),
    Feature.USER_SCOPE: Support(Level.YES, "the unit's own sockets"),
    Feature.SOCKETS: Support(Level.PARTIAL, "RestrictAddressFamilies=: families, not types"),
    Feature.CAPABILITIES: Support(Level.YES, "CapabilityBoundingSet=, AmbientCapabilities="),
    Feature.SYSCALLS: Support(Level.YES, "SystemCallFilter=, native architecture only"),
    Feature.FILES: Support(Level.PARTIAL, "InaccessiblePaths= for denies; allows not expressed"),
    Feature.LOG_ONLY: Support(Level.PARTIAL, "SystemCallLog= and an AppArmor complain profile "
                              "only: no log-only IP filter"),
}

# the k8s target: the pod patch's confinement rows are the same in every flavour
_K8S_CONFINEMENT = {
    Feature.SOCKETS: Support(Level.NO, "NetworkPolicy sees packets, not sockets; the pod patch "
                             "references the seccomp profile, which enforces them"),
    Feature.SYSCALLS: Support(Level.NO, "the pod patch references the seccomp profile, which "
                              "enforces them once loaded on the node (SPO)"),
    Feature.CAPABILITIES: Support(Level.YES, "pod patch: securityContext.capabilities drop ALL "
                                  "+ kept ones, allowPrivilegeEscalation false"),
    Feature.FILES: Support(Level.NO, "the pod patch references the AppArmor profile, which "
                           "enforces them once loaded on the node"),
    Feature.USER_SCOPE: Support(Level.NO, "Kubernetes selects pods, not users"),
    Feature.INGRESS: Support(Level.YES, "ingress rules of the selected pods"),
}

K8S: Mapping[str, Mapping[Feature, Support]] = {
    "vanilla": {
        **_K8S_CONFINEMENT,
        Feature.CIDR_PORT: Support(Level.YES, "ipBlock (denies carved out as except) and ports "
                                   "with endPort; ICMP is not expressible"),
        Feature.FQDN: Support(Level.NO, "NetworkPolicy has no names: compile with --lock to "
                              "use the lock file's addresses"),
        Feature.WILDCARD: Support(Level.NO, "NetworkPolicy has no names"),
        Feature.EXPLICIT_DENY: Support(Level.YES, "compiled into except ranges and split ports "
                                       "(not logged: NetworkPolicy has no log)"),
        Feature.LOG_ONLY: Support(Level.NO, "NetworkPolicy has no log-only mode"),
    },
    "cilium": {
        **_K8S_CONFINEMENT,
        Feature.CIDR_PORT: Support(Level.YES, "toCIDRSet/fromCIDRSet and toPorts"),
        Feature.FQDN: Support(Level.YES, "toFQDNs matchName (DNS proxy via the kube-dns rule)"),
        Feature.WILDCARD: Support(Level.YES, "toFQDNs matchPattern **.suffix"),
        Feature.EXPLICIT_DENY: Support(Level.YES, "egressDeny/ingressDeny (not by name)"),
        Feature.LOG_ONLY: Support(Level.PARTIAL, "policy audit mode is an agent or endpoint "
                                  "setting, not a policy field (see the README)"),
    },
    "calico": {
        **_K8S_CONFINEMENT,
        Feature.CIDR_PORT: Support(Level.YES, "nets and ports, ICMP/ICMPv6"),
        Feature.FQDN: Support(Level.NO, "domains are Calico Enterprise only: compile with "
                              "--lock to use the lock file's addresses"),
        Feature.WILDCARD: Support(Level.NO, "domains are Calico Enterprise only"),
        Feature.EXPLICIT_DENY: Support(Level.YES, "ordered Log + Deny rules before the allows"),
        Feature.LOG_ONLY: Support(Level.YES, "StagedNetworkPolicy (preview, not enforced)"),
    },
}


def k8s_support_for(options: CompileOptions) -> Mapping[Feature, Support]:
    """The k8s target's table for its flavour, and the lock (the registry's check reads this
    instead of the static one)."""
    table = dict(K8S[options.k8s_flavor])
    if options.lock is not None and options.k8s_flavor != "cilium":
        table[Feature.FQDN] = Support(Level.YES, "the lock file's addresses as ipBlocks/nets")
    return table


DOCS: Mapping[Feature, Support] = {}

# target name -> (enforces, static support table); dnsmasq and dnsgate feed the nftables
# target's sets and block nothing alone; docs enforces nothing
TARGETS: Mapping[str, tuple[bool, Mapping[Feature, Support]]] = {
    "nftables": (True, NFTABLES), "dnsmasq": (False, DNSMASQ), "dnsgate": (False, DNSGATE),
    "seccomp": (True, SECCOMP), "apparmor": (True, APPARMOR), "k8s": (True, K8S["vanilla"]),
    "systemd": (True, SYSTEMD), "docs": (False, DOCS),
}
