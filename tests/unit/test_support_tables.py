"""The support tables the registry reads without importing a target are the ones each
backend declares: one table per target, in one place (issue 14)."""

from __future__ import annotations

import pytest

from clawpolicy.backends import registry, support_tables
from clawpolicy.backends.base import CompileOptions, Feature, Level


def test_every_target_has_a_table() -> None:
    assert list(support_tables.TARGETS) == list(registry.TARGET_MODULES)


def test_each_backend_declares_the_table_the_registry_reads(subtests: pytest.Subtests) -> None:
    for name in registry.TARGET_MODULES:
        with subtests.test(target=name):
            backend = registry.BACKENDS[name]
            enforces, table = registry.declared(name, None)
            assert (enforces, table) == (backend.enforces, backend.support)
            assert table is backend.support


def test_k8s_table_follows_flavour_and_lock(subtests: pytest.Subtests) -> None:
    cases = (("vanilla", None, Level.NO), ("vanilla", {"a.example": ("192.0.2.1",)}, Level.YES),
             ("cilium", None, Level.YES), ("calico", None, Level.NO))
    for flavour, lock, level in cases:
        with subtests.test(flavour=flavour, lock=lock is not None):
            options = CompileOptions(k8s_flavor=flavour, lock=lock)  # type: ignore[arg-type]
            assert registry.declared("k8s", options)[1][Feature.FQDN].level is level
            backend = registry.BACKENDS["k8s"]
            assert registry.support_of(backend, options) == registry.declared("k8s", options)[1]


def test_a_stand_in_target_is_judged_by_its_own_table(monkeypatch: pytest.MonkeyPatch) -> None:
    class StandIn:
        name = "standin"
        summary = "a test target"
        enforces = True
        support = {Feature.FILES: support_tables.APPARMOR[Feature.FILES]}

        def compile(self, policy: object, options: object) -> object:
            raise AssertionError("not built")

    monkeypatch.setitem(registry.BACKENDS, "standin", StandIn())  # type: ignore[arg-type]
    assert registry.declared("standin", None) == (True, StandIn.support)
