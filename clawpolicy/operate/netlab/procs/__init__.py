"""Scripts the kernel lab (operate/netlab) runs inside its namespaces by path (listener, probe, dnsquery): plain
stdlib (and dnspython) programs, shipped in the package so `clawpolicy test --kernel` works
from an installed wheel."""
