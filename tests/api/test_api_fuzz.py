"""The bad-input suite, offline: 1,200 seeded mutated manifests and 55 files that are no
manifest at all go through `finetune validate`. None may raise (no traceback reaches a
user), every refusal is one line per problem, and a refused manifest is refused at the
field that was broken (or one that contains it or that it contains)."""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from pathlib import Path

import pytest

from fuzz_manifests import Mutant, raw_files, structured, write

MUTANTS = structured()
FILE_LEVEL = re.compile(r"^(the file is empty|is not UTF-8 text|is not valid YAML|"
                        r"expected a mapping|document \d+|line \d+|.*alias)", re.I)


def validate(path: Path) -> tuple[int, str]:
    from finetune_operator.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, out.getvalue() + err.getvalue()


# A field path as format_path writes it: names joined by dots, list indexes, and odd
# keys quoted in brackets as Python's repr quotes them (which may hold `]` or `: `).
_QUOTED = r"""\['(?:[^'\\]|\\.)*'\]|\["(?:[^"\\]|\\.)*"\]"""
FIELD_PATH = re.compile(rf"^((?:[A-Za-z_][^:\s\[.]*|{_QUOTED})(?:\.[^:\s\[.]+|\[\d+\]|{_QUOTED})*): ")


def reported_fields(path: Path, output: str) -> list[str]:
    """The field each refusal line names (`<file>: <field>: <message>`)."""
    fields = []
    for line in output.splitlines():
        assert line.startswith(f"{path}: "), f"a line that names no file: {line!r}"
        rest = line[len(f"{path}: "):]
        match = FIELD_PATH.match(rest)
        fields.append(match[1] if match else "")
    return fields


def related(reported: str, broken: str) -> bool:
    """The same field, a field inside it, or one that contains it (a parent that lost a
    required child, or a value replaced by a mapping that has unknown keys)."""
    canon = lambda p: re.sub(r"\[(['\"])(.*?)\1\]", r".\2", p)  # noqa: E731
    a, b = canon(reported), canon(broken)
    return a == b or a.startswith(b + ".") or a.startswith(b + "[") or b.startswith(a + ".") \
        or b.startswith(a + "[")


def test_there_are_over_a_thousand_mutants_of_every_kind():
    kinds = Counter(m.kind for m in MUTANTS)
    assert len(MUTANTS) >= 1000 and set(kinds) == {"type", "number", "unknown", "huge", "unicode", "nesting",
                                                    "delete"}
    assert min(kinds.values()) > 50


def test_no_mutant_raises_and_every_refusal_names_the_broken_field(tmp_path):
    accepted, refused, wrong_field = [], 0, []
    for mutant in MUTANTS:
        path = write(tmp_path, mutant.id, mutant.manifest)
        code, output = validate(path)  # an exception here is a traceback a user would see
        assert "Traceback" not in output, f"{mutant.id}: {output[-2000:]}"
        assert code in (0, 1), f"{mutant.id}: exit {code}: {output[-500:]}"
        if code == 0:
            accepted.append(mutant)
            continue
        refused += 1
        fields = reported_fields(path, output)
        assert fields and all(fields), f"{mutant.id}: a refusal without a field: {output!r}"
        if not any(related(field, mutant.path) for field in fields):
            wrong_field.append(f"{mutant.id} broke {mutant.path}, refused at {fields}")
    assert not wrong_field, "\n".join(wrong_field[:20])
    # Some mutations are harmless (an optional field deleted, a string where any string
    # goes); most are not.
    assert refused > 0.6 * len(MUTANTS), f"only {refused} of {len(MUTANTS)} refused"
    harmless = Counter(m.kind for m in accepted)
    assert harmless["unknown"] == 0 and harmless["nesting"] == 0, [m.id for m in accepted
                                                                  if m.kind in ("unknown", "nesting")][:10]


@pytest.mark.parametrize("name,data", raw_files(), ids=[name for name, _ in raw_files()])
def test_files_that_are_no_manifest_get_one_clear_line(name, data, tmp_path):
    path = write(tmp_path, name, data)
    code, output = validate(path)
    assert "Traceback" not in output, output[-2000:]
    assert code in (0, 1), output
    if name in ("two-valid", "merge-key", "bom"):
        assert code == 0, output
        return
    assert code == 1, f"{name} was accepted: {output}"
    lines = output.splitlines()
    # `<file>: ...`, or `<file>[<document>]: ...` in a file of several documents.
    assert lines and all(re.match(re.escape(str(path)) + r"(\[\d+\])?: \S", line) for line in lines), output
    assert len(output) < 5000, f"{name}: {len(output)} characters of output"
    if name in ("python-tag", "custom-tag"):  # refused for the tag, never constructed
        assert "the YAML tag" in output and "is not allowed" in output, output
