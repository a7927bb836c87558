"""Keep an embedded Ray on loopback.

Ray resolves 127.0.0.1 to the host's network address so that other nodes can reach
it. An embedded Ray (`finetune run`, the tests, the benchmarks) is a one-machine
cluster, so it should never listen on or talk over that address. Ray's
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 switch makes every node and worker use 127.0.0.1;
Ray reads it when it is imported, so call this first. When RAY_ADDRESS names a real
cluster it does nothing.

It also asks for Ray's token authentication explicitly (RAY_AUTH_MODE=token, unless
the user chose a mode): the embedded cluster gets a token as it would by default, but
Ray no longer warns on every start that it chose this for the user.
"""

from __future__ import annotations

import os

LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE = "RAY_AUTH_MODE"


def use_loopback_for_embedded_ray() -> None:
    if not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault(LOOPBACK_SWITCH, "0")
        os.environ.setdefault(AUTH_MODE, "token")
