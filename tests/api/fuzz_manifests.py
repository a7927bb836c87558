"""Seeded, mutated FineTuneJob manifests for the bad-input suite (issue 9).

`structured(seed, count)` breaks valid manifests (the minimal job and every example)
in one place each: a wrong type, an out-of-range or non-finite number, an unknown or
misspelt field, a huge string, odd unicode, deep nesting or a deleted field, at any
level. `raw_files(seed)` gives whole files that are not manifests at all: alias bombs,
binary bytes, empty and multi-document files, YAML syntax errors, Python tags.

Everything is a pure function of the seed, so a failure names a case that can be
replayed (`Mutant.id`).
"""

from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from tests.support.paths import REPO

DELETE = object()
WRONG_TYPES: list[Any] = ["text", 7, 2.5, True, [], {}, None, [1, "a"], {"x": 1}]
NUMBERS: list[Any] = [-1, 0, -0.0, 1e308, -1e308, 2**63, 10**30, 1e-320, math.nan, math.inf, -math.inf]
UNICODE = ["名前", "zero\u200bwidth", "\u202eright-to-left", "emoji 🚀", "nul\x00byte", "line\nbreak",
           "e\u0301\u0301\u0301", "\ufeffbom", "tab\tand\rreturn", "\U0010ffff"]


@dataclass(frozen=True)
class Mutant:
    id: str
    manifest: dict[str, Any]
    path: str  # the dotted path that was broken ("" for the document itself)
    kind: str

    def json_safe(self) -> bool:
        """Whether the manifest can travel as JSON (no NaN or infinity)."""
        try:
            json.dumps(self.manifest, allow_nan=False)
            return True
        except ValueError:
            return False


def bases() -> list[tuple[str, dict[str, Any]]]:
    from api_cases import base_job
    from finetune_operator.manifests import load_manifests

    out = [("minimal", base_job())]
    for path in sorted((REPO / "examples").glob("*.yaml")):
        # Read as kubectl reads them (`5e-5` is a number), not as PyYAML's YAML 1.1 does.
        for index, document in load_manifests(path):
            out.append((f"{path.stem}-{index}", document))
    return out


def _nodes(value: Any, parts: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path parts, value) of every node under the document, the document first."""
    yield parts, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, (*parts, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _nodes(child, (*parts, index))


def dotted(parts: tuple) -> str:
    """`spec.tune.searchSpace.training.learningRate`, `spec.model.labels[0]`."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parent(document: dict, parts: tuple) -> Any:
    parent: Any = document
    for part in parts[:-1]:
        parent = parent[part]
    return parent


def _misspell(key: str, rng: random.Random) -> str:
    choices = [key.lower(), key.upper(), key + "s", key[:-1], "_" + key,
               "".join(f"_{c.lower()}" if c.isupper() else c for c in key)]
    if len(key) > 2:
        at = rng.randrange(len(key) - 1)
        choices.append(key[:at] + key[at + 1] + key[at] + key[at + 2:])
    return rng.choice([c for c in choices if c and c != key] or [key + "x"])


def _nested(depth: int, as_list: bool) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def _mutate(document: dict, rng: random.Random) -> tuple[str, str]:
    """Break `document` in one place, in place; returns (path, kind)."""
    nodes = [(p, v) for p, v in _nodes(document) if p]
    parts, value = rng.choice(nodes)
    parent, key = _parent(document, parts), parts[-1]
    kind = rng.choice(["type", "number", "unknown", "huge", "unicode", "nesting", "delete"])
    if kind == "unknown":
        target, base = (value, parts) if isinstance(value, dict) else (parent, parts[:-1])
        if isinstance(target, dict):
            siblings = list(target) or ["field"]
            new = _misspell(str(rng.choice(siblings)), rng) if rng.random() < 0.7 else f"unexpected{rng.randrange(99)}"
            target.setdefault(new, rng.choice(["x", 1, True, {"y": 2}]))
            return dotted((*base, new)), kind
        kind = "type"
    if kind == "delete" and isinstance(parent, dict):
        del parent[key]
        return dotted(parts), kind
    replacement = {
        "type": lambda: rng.choice([t for t in WRONG_TYPES if type(t) is not type(value)]),
        "number": lambda: rng.choice(NUMBERS),
        "huge": lambda: "x" * rng.choice([300, 70_000, 1_100_000]),
        "unicode": lambda: rng.choice(UNICODE),
        "nesting": lambda: _nested(rng.choice([40, 200, 1200]), rng.random() < 0.5),
        "delete": lambda: rng.choice(WRONG_TYPES),
    }[kind]()
    parent[key] = replacement
    return dotted(parts), kind


def structured(seed: int = 9, count: int = 1200) -> list[Mutant]:
    rng = random.Random(seed)
    pool = bases()
    out = []
    for index in range(count):
        name, base = pool[index % len(pool)]
        document = copy.deepcopy(base)
        path, kind = _mutate(document, rng)
        out.append(Mutant(f"{seed}-{index}-{name}-{kind}", document, path, kind))
    return out


def _alias_bomb(width: int, depth: int) -> str:
    lines = ['l0: &l0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for level in range(1, depth + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def raw_files(seed: int = 9) -> list[tuple[str, bytes]]:
    """(id, file bytes) of files that are not a single well-formed manifest."""
    rng = random.Random(seed)
    valid = yaml.safe_dump(bases()[0][1])
    files: list[tuple[str, bytes]] = [
        ("empty", b""), ("whitespace", b"  \n\t\n"), ("comments", b"# nothing here\n# at all\n"),
        ("document-markers", b"---\n---\n...\n"), ("scalar", b"just a string\n"), ("number", b"42\n"),
        ("list", b"- a\n- b\n"), ("null", b"null\n"),
        ("two-valid", (valid + "---\n" + valid.replace("name: demo", "name: demo-two")).encode()),
        ("valid-then-broken", (valid + "---\n" + valid.replace("train: s3://data/train.csv", "train: 5")).encode()),
        ("duplicate-key", (valid + "kind: Other\n").encode()),
        ("tab-indent", b"apiVersion: finetune.dev/v1alpha1\nspec:\n\tmodel: {}\n"),
        ("unclosed", b"spec: {model: [\n"), ("bad-escape", b'spec: "\\q"\n'),
        ("python-tag", b"spec: !!python/object/apply:os.system ['echo owned']\n"),
        ("custom-tag", b"spec: !secret value\n"),
        ("merge-key", valid.replace("metadata:\n", "metadata:\n  labels: &team {team: a}\n"
                                                   "  annotations: {<<: *team, owner: b}\n").encode()),
        ("long-line", b"metadata: {name: " + b"a" * 2_000_000 + b"}\n"),
        ("utf16", valid.encode("utf-16")), ("bom", b"\xef\xbb\xbf" + valid.encode()),
        ("latin1", "metadata: {name: caf\xe9}\n".encode("latin-1")),
    ]
    for width, depth in ((9, 6), (10, 8), (30, 5), (2, 40)):
        files.append((f"alias-bomb-{width}x{depth}", _alias_bomb(width, depth).encode()))
    for index in range(20):
        size = rng.choice([1, 16, 512, 8192])
        files.append((f"binary-{index}", bytes(rng.randrange(256) for _ in range(size))))
    for index in range(10):  # a valid manifest with a random byte flipped
        data = bytearray(valid.encode())
        data[rng.randrange(len(data))] = rng.randrange(256)
        files.append((f"flipped-{index}", bytes(data)))
    return files


def write(directory: Path, name: str, data: bytes | dict) -> Path:
    path = directory / f"{name}.yaml"
    if isinstance(data, dict):
        import sys

        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 50_000))  # the representer recurses per nesting level
        try:
            data = yaml.safe_dump(data, allow_unicode=True).encode()
        finally:
            sys.setrecursionlimit(limit)
    path.write_bytes(data)
    return path


__all__ = ["Mutant", "bases", "raw_files", "structured", "write"]


