"""Kubernetes' own name rules (apimachinery's validation), as the tests' oracle for
the names the operator derives."""

from __future__ import annotations

import re

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns1035_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1035.match(name))


def is_dns1123_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS1123_LABEL.match(name))
