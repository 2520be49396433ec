"""Names derived from user text, and the proof that they stay distinct: floor 2, beside `base`.

Every artifact name a backend derives from a policy name or a rule ID (an nft chain, set or log
prefix, an AppArmor profile, a Kubernetes object, a seccomp resource) must stand for exactly one
thing: two rules that share a chain share its verdict, so a deny can accept (issue 16, item 1).
The backends therefore derive names without losing information (rule IDs and policy names are
already restricted to characters every target accepts, so the derivations keep them verbatim),
and each backend also *reports* every name it derives, as a `NameClaim`: where the name must be
unique (`space`), the name, and the IR identity it stands for (`owner`). `collisions` is the one
generic check the compiler runs over every claim of a compile: a name claimed by two different
owners fails the compile (an internal error, exit 1), so a future derivation that merges names
cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class NameClaim:
    """`name` stands for `owner` wherever `space` is unique: a space names the target and the
    scope of uniqueness ("nftables chain in table clawpolicy_p", "cluster SeccompProfile"), so
    two policies' tables may reuse a chain name while host- and cluster-wide names are checked
    across every policy of the compile. `owner` is the IR identity ("rule ax.1", "policy p")."""

    space: str
    name: str
    owner: str


@dataclass(frozen=True)
class Collision:
    space: str
    name: str
    owners: tuple[str, ...]

    def message(self) -> str:
        return (f"internal error: {' and '.join(self.owners)} map to one {self.space}: "
                f"'{self.name}'")


def collisions(claims: Iterable[NameClaim]) -> list[Collision]:
    """Every (space, name) claimed by more than one owner, in a stable order. A name claimed
    twice by the same owner (a set a rule and the resolver both reference) is no collision."""
    owners: dict[tuple[str, str], set[str]] = {}
    for claim in claims:
        owners.setdefault((claim.space, claim.name), set()).add(claim.owner)
    return [Collision(space, name, tuple(sorted(who)))
            for (space, name), who in sorted(owners.items()) if len(who) > 1]


def rule_owner(rule_id: str) -> str:
    """The identity of an IR rule (network, files, syscalls): its ID, which lowering keeps
    unique within a policy."""
    return f"rule {rule_id}"


def apparmor_profile_name(template: str, policy_name: str) -> str:
    """The AppArmor profile (and its SPO resource, and the pods' `localhostProfile`): the
    `--apparmor-profile-name` template with the policy's name for `{policy}`."""
    return template.replace("{policy}", policy_name)


def seccomp_resource_name(policy_name: str) -> str:
    """The SeccompProfile resource (pods reference `operator/<name>.json`): the policy's name
    verbatim. Lowering makes every policy name a DNS-1123 label (it ends in a letter or digit),
    so no character is dropped: trimming a trailing '-' once gave policies `a` and `a-` one
    cluster-wide resource."""
    return policy_name
