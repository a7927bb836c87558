"""Manifests are read into plain JSON values only, as the API server would hold them:
tagged YAML, duplicate keys and alias bombs become one line naming the file, the
field and what is allowed, from `validate`, `submit` and `run` alike."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from finetune_operator.cli import main
from finetune_operator.manifests import load_manifests
from finetune_operator.plain_yaml import MAX_ALIAS_VALUES

HEAD = """\
apiVersion: finetune.dev/v1alpha1
kind: FineTuneJob
metadata:
  name: demo
"""


def manifest(*, data: str = "", model: str = "", metadata: str = "") -> str:
    """The smallest valid manifest, with extra lines under data, model or metadata."""
    return HEAD + metadata + textwrap.dedent("""\
        spec:
          model:
            source: sentence-transformers/all-MiniLM-L6-v2
        {model}  data:
            train: s3://data/train.csv
        {data}  output:
            uri: s3://models/out
        """).format(model=model, data=data)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


ALLOWED = "a manifest holds only strings, numbers, booleans, null, lists and mappings"

# (id, manifest text, field path, words the one line must hold)
TAGGED = [
    ("binary", manifest(data="    maxSeqLength: !!binary aGVsbG8=\n"), "spec.data.maxSeqLength",
     ["the YAML tag !!binary is not allowed", ALLOWED]),
    ("set", manifest(model="    labels: !!set {a: null, b: null}\n"), "spec.model.labels",
     ["the YAML tag !!set is not allowed on a mapping", ALLOWED]),
    ("int-abc", manifest(data="    maxSeqLength: !!int abc\n"), "spec.data.maxSeqLength",
     ["!!int 'abc' is not an integer"]),
    ("float-abc", manifest(data="    validationFraction: !!float abc\n"), "spec.data.validationFraction",
     ["!!float 'abc' is not a number"]),
    ("bool-maybe", manifest(data="    strict: !!bool maybe\n"), "spec.data.strict",
     ["!!bool 'maybe' is not true or false"]),
    ("null-text", manifest(data="    test: !!null something\n"), "spec.data.test",
     ["!!null 'something' is not null"]),
    ("explicit-timestamp", manifest(data="    test: !!timestamp 2026-01-01\n"), "spec.data.test",
     ["the YAML tag !!timestamp is not allowed", ALLOWED]),
    ("omap", manifest(model="    labels: !!omap [{a: 1}]\n"), "spec.model.labels",
     ["the YAML tag !!omap is not allowed on a list"]),
    ("custom-local-tag", manifest(data="    maxSeqLength: !env MAX_LEN\n"), "spec.data.maxSeqLength",
     ["the YAML tag !env is not allowed", ALLOWED]),
    ("custom-global-tag", manifest(data="    test: !<tag:example.com,2026:file> x.csv\n"), "spec.data.test",
     ["the YAML tag tag:example.com,2026:file is not allowed"]),
    ("python-tag", manifest(data="    test: !!python/object/apply:os.system [echo]\n"), "spec.data.test",
     ["the YAML tag !!python/object/apply:os.system is not allowed on a list"]),
    ("tagged-key", manifest(metadata="  labels:\n    ? !!binary aGk=\n    : x\n"), "metadata.labels",
     ["the YAML tag !!binary is not allowed"]),
    ("infinity", manifest(data="    validationFraction: .inf\n"), "spec.data.validationFraction",
     ["must be a finite number (got .inf); JSON has no infinity or NaN"]),
    ("nan", manifest(data="    validationFraction: .nan\n"), "spec.data.validationFraction",
     ["must be a finite number (got .nan)"]),
    ("duplicate-key", manifest(data="    train: s3://data/other.csv\n"), "spec.data.train",
     ["appears twice in this mapping (lines 9 and 10); a key may appear only once"]),
    ("duplicate-block", HEAD + "metadata:\n  name: again\nspec: {}\n", "metadata",
     ["appears twice in this mapping (lines 3 and 5)"]),
    ("recursive-alias", manifest(model="    labels: &self [a, *self]\n"), "spec.model.labels[1]",
     ["an alias refers to the mapping or list that contains it"]),
]


def _one_line(out: str, path: Path, field: str, words: list[str]) -> None:
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    line = lines[0].removeprefix("error: ")
    assert line.startswith(f"{path}: {field}: "), line
    for word in words:
        assert word in line, (word, line)


@pytest.mark.parametrize(("text", "field", "words"), [case[1:] for case in TAGGED], ids=[c[0] for c in TAGGED])
@pytest.mark.parametrize("command", ["validate", "submit", "run"])
def test_values_json_cannot_carry_are_one_clear_line(command, text, field, words, tmp_path, capsys):
    path = write(tmp_path, text)
    assert main([command, str(path)]) == 1
    out, err = capsys.readouterr()
    _one_line(out + err, path, field, words)


def test_tagged_values_that_say_what_the_value_is_are_fine(tmp_path):
    text = manifest(data="    maxSeqLength: !!int 64\n    validationFraction: !!float 0\n"
                         "    strict: !!bool true\n    test: !!null ~\n    textColumn: !!str 2026-01-01\n")
    [(_, document)] = load_manifests(write(tmp_path, text))
    data = document["spec"]["data"]
    assert (data["maxSeqLength"], data["validationFraction"], data["strict"], data["test"]) == (64, 0.0, True, None)
    assert data["textColumn"] == "2026-01-01"


def test_an_unquoted_timestamp_is_the_text_as_written(tmp_path, capsys):
    """kubectl sends an unquoted date or time as the string it was written as."""
    text = manifest(metadata="  annotations:\n    created: 2026-01-01 10:00:00\n    day: 2026-01-01\n")
    path = write(tmp_path, text)
    [(_, document)] = load_manifests(path)
    assert document["metadata"]["annotations"] == {"created": "2026-01-01 10:00:00", "day": "2026-01-01"}
    assert json.loads(json.dumps(document)) == document
    assert main(["validate", str(path)]) == 0
    # Where the spec wants a number, it is a string like any other.
    path = write(tmp_path, manifest(data="    maxSeqLength: 2026-01-01\n"))
    assert main(["validate", str(path)]) == 1
    _one_line(capsys.readouterr().out.split("\n", 1)[1], path, "spec.data.maxSeqLength",
              ["must be an integer (got '2026-01-01')"])


def test_anchors_aliases_and_merge_keys_within_bounds_are_accepted(tmp_path):
    text = HEAD + textwrap.dedent("""\
          labels: &common {team: nlp}
          annotations: *common
        spec:
          model: {source: m}
          data: {train: s3://data/train.csv}
          output: {uri: s3://models/out}
          resources:
            head: &pod {cpu: "2", memory: 8Gi}
            worker:
              <<: *pod
              memory: 16Gi
            tolerations:
              - &gpu {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
              - *gpu
        """)
    [(_, document)] = load_manifests(write(tmp_path, text))
    assert document["metadata"]["labels"] == document["metadata"]["annotations"] == {"team": "nlp"}
    resources = document["spec"]["resources"]
    assert resources["worker"] == {"cpu": "2", "memory": "16Gi"}
    assert resources["tolerations"][0] == resources["tolerations"][1]
    assert main(["validate", str(tmp_path / "job.yaml")]) == 0


BOMB_PROBE = """
import resource, sys, time, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a runaway expansion dies, not the machine
from finetune_operator.cli import main
import finetune_operator.manifests  # the models are built before the clock starts
tracemalloc.start()
started = time.process_time()  # CPU seconds: a busy machine does not stretch them
code = main(["validate", sys.argv[1]])
print("SECONDS", time.process_time() - started, "PEAK", tracemalloc.get_traced_memory()[1])
sys.exit(code)
"""


def test_an_alias_bomb_is_refused_quickly_with_bounded_memory(tmp_path):
    """Billion laughs: nine levels of nine aliases would expand to 387 million strings."""
    levels = ['    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write(tmp_path, manifest(metadata="  annotations:\n" + "\n".join(levels) + "\n"))
    result = subprocess.run([sys.executable, "-c", BOMB_PROBE, str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{path}: metadata.annotations."), lines
    assert f"aliases repeat more than {MAX_ALIAS_VALUES:,} values" in lines[0]
    _, seconds, _, peak = lines[1].split()
    assert float(seconds) < 2.0, lines
    assert int(peak) < 50 << 20, lines


@pytest.mark.parametrize(("value", "field", "words"), [
    ("!!binary aGk=", "data.maxSeqLength", ["the YAML tag !!binary is not allowed"]),
    ("{a: !!set {x: null}}", "data.maxSeqLength.a", ["the YAML tag !!set is not allowed on a mapping"]),
    ("!!int abc", "data.maxSeqLength", ["!!int 'abc' is not an integer"]),
])
def test_set_overrides_are_plain_values_too(value, field, words, tmp_path, capsys):
    path = write(tmp_path, manifest())
    assert main(["run", str(path), "--set", f"data.maxSeqLength={value}"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert err.startswith(f"error: --set {field}: "), err
    assert all(word in err for word in words), err
