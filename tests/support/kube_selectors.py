"""Label and field selectors, as the Kubernetes API server reads them.

Parsed once per request into predicates, so a list or a watch filters objects
without re-reading the selector text.
"""

from __future__ import annotations

import re
from typing import Any, Callable

JSON = dict[str, Any]


class SelectorError(ValueError):
    """A selector the API server would answer with 400 Bad Request."""


_REQUIREMENT = re.compile(
    r"^\s*(?P<key>!?[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|!=|=|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[A-Za-z0-9_.-]*))?\s*$"
)


def _split_selector(text: str) -> list[str]:
    """Split on commas that are not inside a value set's parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parse_label_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """A predicate for a label selector string (equality- and set-based)."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for part in _split_selector(text or ""):
        match = _REQUIREMENT.match(part)
        if not match:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        key, op, value = match["key"], (match["op"] or "").strip(), match["value"]
        if op == "":
            if key.startswith("!"):
                checks.append(lambda labels, k=key[1:]: k not in labels)
            else:
                checks.append(lambda labels, k=key: k in labels)
        elif op in ("=", "=="):
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        else:
            if not (value.startswith("(") and value.endswith(")")):
                raise SelectorError(f"unable to parse requirement: {part.strip()!r}: "
                                    "set-based operators need values in parentheses")
            values = {item.strip() for item in value[1:-1].split(",") if item.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
    return lambda labels: all(check(labels) for check in checks)


def parse_field_selector(text: str) -> Callable[[JSON], bool]:
    """A predicate for a field selector: dotted paths with =, == or !=."""
    checks: list[Callable[[JSON], bool]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not match:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        path, op, value = match.groups()

        def lookup(obj: JSON, path: str = path) -> str:
            node: Any = obj
            for key in path.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            return "" if node is None else str(node)

        if op == "!=":
            checks.append(lambda obj, f=lookup, v=value: f(obj) != v)
        else:
            checks.append(lambda obj, f=lookup, v=value: f(obj) == v)
    return lambda obj: all(check(obj) for check in checks)
