"""Test-only fault points: make the agent die (os._exit, as SIGKILL would) at a named step.

`SVCNET_TEST_FAULTS="step:token_file,step2:token_file2"` arms each step once: when the agent
reaches `step` and can remove `token_file`, it exits at once with status 86 (no cleanup, no
flush, like a kill -9). A missing token file disarms the step, so the restarted agent goes
through. Unset (always, outside fault tests), `point()` costs one dictionary lookup.

Steps of a pod start, in order: ip-allocated, holder-started, veth-added, sandbox-ready,
container-spawned.
"""

from __future__ import annotations

import os

ENV = "SVCNET_TEST_FAULTS"
EXIT_STATUS = 86


def point(step: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        name, _, token = item.partition(":")
        if name != step or not token:
            continue
        try:
            os.unlink(token)
        except OSError:
            continue
        os._exit(EXIT_STATUS)
