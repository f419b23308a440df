"""The short chaos suite: every fault once, on one cluster of three namespace hosts.

Each test applies one fault under the workload (ledger and bank, through the proxy and
directly), heals it and asserts every invariant of scenario.check_invariants: no
acknowledged commit lost (synchronous mode), the bank's total unchanged, never two
writable primaries, identical data on every member after convergence, no daemon
crashed; after a sample of the faults, the WAL archive is continuous and a restore of the
latest state has every acknowledged row. `tests/chaos/run` is the long version (faults at random, statistics).
Needs root (network namespaces); run with /usr/bin/python3 -m pytest tests/chaos.
"""
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chaoslib  # noqa: E402
import scenario  # noqa: E402

if os.geteuid() != 0:
    pytest.skip("the chaos suite needs root (network namespaces)", allow_module_level=True)


class Suite:
    def __init__(self):
        self.lab = None
        self.round = 0
        self.results = []

    def ready_lab(self):
        """The shared cluster; a new one when an earlier fault left it broken."""
        if self.lab is not None:
            try:
                self.lab.wait_healthy(60)
            except TimeoutError:
                self.lab.close(keep=True)
                self.lab = None
        if self.lab is None:
            self.lab = chaoslib.Lab()
            self.lab.start()
        return self.lab


@pytest.fixture(scope="module")
def suite():
    s = Suite()
    yield s
    for res in s.results:
        print(res.line())
    if s.lab is not None:
        s.lab.close(keep=any(r.violations for r in s.results))


# The archive property (continuous, restore --latest has every acknowledged row) after a
# sample of the faults here; tests/chaos/run checks it after every fault.
ARCHIVE_SAMPLE = ("crash_host", "partition_primary", "etcd_quorum_loss")


@pytest.mark.parametrize("fault", list(scenario.FAULTS))
def test_fault(suite, fault):
    lab = suite.ready_lab()
    suite.round += 1
    res = scenario.run_scenario(lab, fault, suite.round, random.Random(suite.round),
                                archive=fault in ARCHIVE_SAMPLE)
    suite.results.append(res)
    print(res.line())
    assert not res.violations, "%s: %s\n%s" % (res.what, "\n".join(res.violations),
                                               "\n".join(res.notes))
