"""The sandbox sweep never kills in the namespace it runs in (sandbox.kill_netns_members): a
holder that shares the agent's network namespace (a hostNetwork pod's) must not take every
process of the node with it. Run in a network namespace of the test's own (unshare --net), so a
failure could only ever kill that namespace's processes: this test's."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")

CHILD = r"""
import subprocess, sys
from svcnet.agent.runtime.containers import proc_start_ticks
from svcnet.agent.runtime.sandbox import Sandbox, kill_netns_members

holder = subprocess.Popen(["sleep", "10"])
other = subprocess.Popen(["sleep", "10"])
try:
    sb = Sandbox(pid=holder.pid, start=proc_start_ticks(holder.pid), ip="", host_if="x",
                 created_at="", wired=True)
    killed = kill_netns_members(sb)
    print(killed, other.poll())
finally:
    holder.kill()
    other.kill()
"""


def test_the_sweep_never_kills_in_its_own_namespace():
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", CHILD], capture_output=True,
                       text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__)))))
    assert (r.returncode, r.stdout.split()) == (0, ["0", "None"]), r.stderr
