"""YAML read into plain JSON values only: what the API server would hold.

kubectl turns a manifest into JSON before the API server sees it, so a manifest can
only hold strings, numbers, booleans, null, lists and mappings with string keys.
PyYAML's safe loader builds more than that (bytes for `!!binary`, sets, dates and
times, and whatever an explicit tag asks for) and raises plain Python errors for a
tag its value does not fit (`!!int abc`). Here the YAML is composed into nodes with
PyYAML, and the nodes are turned into values by this module, which knows where in
the document it is, so every refusal names the field path and the line:

- explicit tags are allowed only when they say what the value already is (`!!str`
  on anything, `!!int 5`, `!!float 1`, `!!bool true`, `!!null ~`, `!!map`, `!!seq`);
- an unquoted date or time stays the text it was written as, as kubectl reads it;
- a key may appear once in a mapping (`<<` merge keys may be overridden, as YAML says);
- numbers must be finite (JSON has no .inf or .nan);
- values nest at most MAX_DEPTH levels, refused at the field that goes deeper;
- anchors and aliases are fine, but aliases may repeat at most MAX_ALIAS_VALUES values
  in all and may not contain themselves, so an alias bomb ("billion laughs") is
  refused after a bounded amount of work instead of filling the memory.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Values that aliases may repeat in one document. Real manifests repeat a toleration
# or a resources block (tens of values); a billion-laughs document reaches this after
# a few milliseconds.
MAX_ALIAS_VALUES = 10_000

# Nesting: no FineTuneJob field lies deeper than a dozen levels, so a value nested past
# MAX_DEPTH is refused at its field. PyYAML's composer recurses once per level; it gets
# COMPOSE_RECURSION_LIMIT frames (Python 3.11 keeps Python frames off the C stack), and
# a document deeper than that is refused as a whole.
MAX_DEPTH = 64
COMPOSE_RECURSION_LIMIT = 20_000

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_CORE + name for name in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE = _CORE + "seq", _CORE + "map", _CORE + "merge"
_SCALAR_WORDS = {_INT: "an integer", _FLOAT: "a number", _BOOL: "true or false", _NULL: "null"}
ALLOWED = ("a manifest holds only strings, numbers, booleans, null, lists and mappings "
            "(quote a value to make it a string)")


class PlainYamlError(Exception):
    """A value JSON cannot carry: where (path inside the document, line) and what."""

    def __init__(self, loc: tuple[Any, ...], node: Optional[Node], message: str) -> None:
        self.loc = loc
        self.line = node.start_mark.line + 1 if node is not None and node.start_mark is not None else None
        self.message = message + (f" (line {self.line})" if self.line else "")
        super().__init__(self.message)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe composer with kubectl's implicit types: `5e-5` is a number (YAML
    1.2, as kubectl reads it; YAML 1.1 makes it a string), and unquoted dates and
    times stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_CORE + "timestamp", _CORE + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def compose_documents(text: str) -> list[Node]:
    """The node tree of each document of a YAML stream (raises yaml.YAMLError)."""
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, COMPOSE_RECURSION_LIMIT))
    try:
        return list(yaml.compose_all(text, Loader=_Loader))
    except RecursionError:
        raise yaml.YAMLError(f"the document is nested too deeply (thousands of levels; a manifest needs "
                             f"fewer than {MAX_DEPTH})") from None
    finally:
        sys.setrecursionlimit(limit)


def is_empty(node: Node) -> bool:
    """An empty document (a stray `---`) or one holding only null."""
    return isinstance(node, ScalarNode) and node.tag == _NULL


def to_plain(node: Node) -> Any:
    """The JSON value of one document's node tree; PlainYamlError if it has none."""
    try:
        return _Builder().build(node, ())
    except RecursionError:
        raise PlainYamlError((), None, "the document is nested too deeply") from None


def load_value(text: str) -> Any:
    """One YAML value (a `--set` override) as a plain JSON value."""
    documents = compose_documents(text)
    if len(documents) != 1:
        raise PlainYamlError((), None, f"expected one value (got {len(documents)} YAML documents)")
    return to_plain(documents[0])


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Builder:
    """Walks one document's nodes once, counting the values aliases repeat."""

    def __init__(self) -> None:
        self._constructor = _Loader("")
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._repeated = 0

    def build(self, node: Node, loc: tuple[Any, ...]) -> Any:
        key = id(node)
        if key in self._open:
            raise PlainYamlError(loc, node, "an alias refers to the mapping or list that contains it; "
                                            "a manifest cannot contain itself")
        if key in self._seen:
            self._repeated += 1
            if self._repeated > MAX_ALIAS_VALUES:
                raise PlainYamlError(loc, node, f"aliases repeat more than {MAX_ALIAS_VALUES:,} values; "
                                                "write the values out or use fewer aliases")
        self._seen.add(key)
        if len(loc) > MAX_DEPTH:
            raise PlainYamlError(loc, node, f"nested more than {MAX_DEPTH} levels deep; no field of a manifest "
                                            "goes that deep")
        if isinstance(node, ScalarNode):
            return self._scalar(node, loc)
        self._open.add(key)
        try:
            if isinstance(node, SequenceNode):
                self._expect(node, _SEQ, loc)
                return [self.build(item, (*loc, index)) for index, item in enumerate(node.value)]
            self._expect(node, _MAP, loc)
            return self._mapping(node, loc)
        finally:
            self._open.discard(key)

    def _expect(self, node: Node, tag: str, loc: tuple[Any, ...]) -> None:
        if node.tag != tag:
            kind = "list" if tag == _SEQ else "mapping"
            raise PlainYamlError(loc, node, f"the YAML tag {_tag_name(node.tag)} is not allowed on a {kind}; "
                                            + ALLOWED)

    def _scalar(self, node: ScalarNode, loc: tuple[Any, ...]) -> Any:
        tag = node.tag
        if tag in (_STR, _MERGE):
            return node.value
        if tag not in _SCALAR_WORDS:
            raise PlainYamlError(loc, node, f"the YAML tag {_tag_name(tag)} is not allowed; " + ALLOWED)
        implicit = self._constructor.resolve(ScalarNode, node.value, (True, False))
        if implicit != tag and not (tag == _FLOAT and implicit == _INT):
            raise PlainYamlError(loc, node, f"{_tag_name(tag)} {node.value!r} is not {_SCALAR_WORDS[tag]}")
        value = self._constructor.yaml_constructors[tag](self._constructor, node)
        if isinstance(value, float) and not math.isfinite(value):
            raise PlainYamlError(loc, node, f"must be a finite number (got {node.value}); JSON has no "
                                            "infinity or NaN")
        return value

    def _mapping(self, node: MappingNode, loc: tuple[Any, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lines: dict[str, int] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE and isinstance(key_node, ScalarNode):
                self._merge(value_node, loc, merged)
                continue
            key = self._key(key_node, loc)
            line = key_node.start_mark.line + 1
            if key in out:
                raise PlainYamlError((*loc, key), None, f"appears twice in this mapping (lines {lines[key]} "
                                                        f"and {line}); a key may appear only once")
            lines[key] = line
            out[key] = self.build(value_node, (*loc, key))
        for key, value in merged.items():
            out.setdefault(key, value)
        return out

    def _merge(self, value_node: Node, loc: tuple[Any, ...], merged: dict[str, Any]) -> None:
        """`<<: *base` or `<<: [*a, *b]`: earlier sources win, explicit keys win over all."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode):
                raise PlainYamlError(loc, source, "a merge key (<<) takes a mapping or a list of mappings")
            for key, value in self.build(source, loc).items():
                merged.setdefault(key, value)

    def _key(self, node: Node, loc: tuple[Any, ...]) -> str:
        if not isinstance(node, ScalarNode):
            raise PlainYamlError(loc, node, "a mapping key must be a string, not a list or mapping")
        value = self._scalar(node, loc)
        return value if isinstance(value, str) else node.value
