"""`finetune validate`: one plain line per problem, field paths in YAML spelling, exit
codes, and never a traceback."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from api_cases import BAD_CASES, base_job
from finetune_operator.api import FineTuneJob
from finetune_operator.cli import main
from finetune_operator.errors import UserError
from finetune_operator.manifests import ManifestError, load_jobs, parse_job

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def run_validate(capsys: pytest.CaptureFixture[str], *files: Path) -> tuple[int, list[str]]:
    code = main(["validate", *map(str, files)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out.splitlines()


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_table_is_large_and_distinct() -> None:
    assert len({case.id for case in BAD_CASES}) == len(BAD_CASES) >= 35
    assert len({(case.path, case.words) for case in BAD_CASES}) == len(BAD_CASES)


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda case: case.id)
def test_bad_manifest_names_field_and_problem(case, tmp_path: Path, capsys) -> None:
    job = write(tmp_path, yaml.safe_dump(case.manifest()))
    code, lines = run_validate(capsys, job)
    assert code == 1
    prefix = f"{job}: {case.path}: "
    matching = [line for line in lines if line.startswith(prefix)]
    assert matching, f"no line starts with {prefix!r} in {lines}"
    assert any(all(word in line for word in case.words) for line in matching), matching
    # Nothing but problem lines: every line names this file.
    assert all(line.startswith(f"{job}: ") for line in lines)


def test_valid_manifest_passes(tmp_path: Path, capsys) -> None:
    code, lines = run_validate(capsys, write(tmp_path, yaml.safe_dump(base_job())))
    assert code == 0
    assert lines == [f"{tmp_path / 'job.yaml'}: ok (demo)"]


def test_unknown_field_without_a_close_match_lists_the_allowed_fields(tmp_path: Path, capsys) -> None:
    job = base_job()
    job["spec"]["output"]["bucketPolicy"] = "private"
    code, lines = run_validate(capsys, write(tmp_path, yaml.safe_dump(job)))
    assert code == 1
    assert lines == [
        f"{tmp_path / 'job.yaml'}: spec.output.bucketPolicy: unknown field; allowed here: "
        "endpoint, keepCheckpoints, region, secretRef, uri"
    ]


def test_unknown_field_inside_a_list_item_suggests_the_field(tmp_path: Path, capsys) -> None:
    job = base_job()
    job["spec"]["resources"] = {"tolerations": [{"key": "a"}, {"key": "b", "efect": "NoSchedule"}]}
    code, lines = run_validate(capsys, write(tmp_path, yaml.safe_dump(job)))
    assert code == 1
    assert lines == [
        f"{tmp_path / 'job.yaml'}: spec.resources.tolerations[1].efect: unknown field; did you mean 'effect'?"
    ]


def test_yaml_syntax_error_reports_line_and_column(tmp_path: Path, capsys) -> None:
    text = "apiVersion: finetune.dev/v1alpha1\nkind: FineTuneJob\nspec:\n  model: {source: m\n  data: x\n"
    code, lines = run_validate(capsys, write(tmp_path, text))
    assert code == 1
    assert len(lines) == 1
    assert lines == [
        f"{tmp_path / 'job.yaml'}: invalid YAML at line 5, column 7: expected ',' or '}}', but got ':' "
        "(while parsing a flow mapping that starts at line 4, column 10)"
    ]


def test_tab_indentation_is_a_syntax_error_with_position(tmp_path: Path, capsys) -> None:
    code, lines = run_validate(capsys, write(tmp_path, "spec:\n\tmodel: x\n"))
    assert code == 1
    assert "invalid YAML at line 2, column 1" in lines[0]


def test_multi_document_file_reports_each_document_by_index(tmp_path: Path, capsys) -> None:
    good = base_job()
    bad = base_job()
    bad["metadata"]["name"] = "second"
    bad["spec"]["training"] = {"batchSize": 0}
    worse = base_job()
    worse["metadata"]["name"] = "third"
    worse["spec"]["outputPolicy"] = "Keep"
    text = "---\n".join(yaml.safe_dump(d) for d in (good, bad, worse))
    job = write(tmp_path, text)
    code, lines = run_validate(capsys, job)
    assert code == 1
    assert lines == [
        f"{job}[1]: spec.training.batchSize: must be >= 1 (got 0)",
        f"{job}[2]: spec.outputPolicy: must be one of: Retain, Delete (got 'Keep')",
    ]


def test_multi_document_file_all_valid(tmp_path: Path, capsys) -> None:
    second = base_job()
    second["metadata"]["name"] = "other"
    job = write(tmp_path, yaml.safe_dump(base_job()) + "---\n" + yaml.safe_dump(second) + "---\n")
    code, lines = run_validate(capsys, job)
    assert code == 0
    assert lines == [f"{job}: ok (demo, other)"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty; expected a FineTuneJob manifest"),
        ("# only a comment\n", "the file is empty; expected a FineTuneJob manifest"),
        ("- a\n- b\n", "a manifest must be a mapping with apiVersion, kind, metadata and spec (got a list)"),
        ("just words\n", "a manifest must be a mapping with apiVersion, kind, metadata and spec (got a string)"),
    ],
    ids=["empty", "comment-only", "list", "scalar"],
)
def test_file_without_a_mapping(text: str, message: str, tmp_path: Path, capsys) -> None:
    code, lines = run_validate(capsys, write(tmp_path, text))
    assert code == 1
    assert lines == [f"{tmp_path / 'job.yaml'}: {message}"]


def test_other_kind_is_reported_alone(tmp_path: Path, capsys) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": 1}}
    code, lines = run_validate(capsys, write(tmp_path, yaml.safe_dump(deployment)))
    assert code == 1
    assert lines == [
        f"{tmp_path / 'job.yaml'}: apiVersion: must be finetune.dev/v1alpha1 (got 'apps/v1')",
        f"{tmp_path / 'job.yaml'}: kind: must be FineTuneJob (got 'Deployment')",
    ]


def test_missing_identity_fields(tmp_path: Path, capsys) -> None:
    code, lines = run_validate(capsys, write(tmp_path, "metadata: {name: x}\n"))
    assert code == 1
    assert lines == [
        f"{tmp_path / 'job.yaml'}: apiVersion: is required; expected finetune.dev/v1alpha1",
        f"{tmp_path / 'job.yaml'}: kind: is required; expected FineTuneJob",
    ]


def test_missing_file(tmp_path: Path, capsys) -> None:
    code, lines = run_validate(capsys, tmp_path / "nope.yaml")
    assert code == 1
    assert lines == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_directory_and_binary_file(tmp_path: Path, capsys) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"apiVersion: x\n\xff\xfe")
    code, lines = run_validate(capsys, tmp_path, binary)
    assert code == 1
    assert lines == [
        f"{tmp_path}: is a directory, not a manifest file",
        f"{binary}: is not UTF-8 text (byte 0xff at offset 14)",
    ]


def test_scientific_notation_is_a_number(tmp_path: Path, capsys) -> None:
    text = yaml.safe_dump(base_job()) + "  training:\n    learningRate: 3e-5\n"
    code, lines = run_validate(capsys, write(tmp_path, text))
    assert (code, lines) == (0, [f"{tmp_path / 'job.yaml'}: ok (demo)"])


def test_several_files_are_each_checked(tmp_path: Path, capsys) -> None:
    good = write(tmp_path, yaml.safe_dump(base_job()), "good.yaml")
    bad = write(tmp_path, "kind: FineTuneJob\n", "bad.yaml")
    code, lines = run_validate(capsys, bad, good)
    assert code == 1
    assert lines == [
        f"{bad}: apiVersion: is required; expected finetune.dev/v1alpha1",
        f"{good}: ok (demo)",
    ]


def test_every_example_validates(capsys) -> None:
    assert len(EXAMPLES) >= 5
    code, lines = run_validate(capsys, *EXAMPLES)
    assert code == 0, lines
    assert [line.split(": ok")[0] for line in lines] == [str(p) for p in EXAMPLES]


def test_command_line_process_prints_problems_without_traceback(tmp_path: Path) -> None:
    """The installed entry point, in its own process, on a file broken in many ways."""
    documents = [case.manifest() for case in BAD_CASES[:12]]
    job = write(tmp_path, "---\n".join(yaml.safe_dump(d) for d in documents))
    finetune = Path(sys.executable).with_name("finetune")
    result = subprocess.run([str(finetune), "validate", str(job)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    for index, case in enumerate(BAD_CASES[:12]):
        assert any(line.startswith(f"{job}[{index}]: {case.path}: ") for line in lines), (case.id, lines)


def test_examples_pass_in_a_process_and_no_heavy_library_is_imported() -> None:
    probe = (
        "import sys; from finetune_operator.cli import main; "
        f"code = main(['validate', *{[str(p) for p in EXAMPLES]!r}]); "
        "heavy = [m for m in ('torch', 'ray', 'transformers', 'kopf', 'kubernetes') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HEAVY []" in result.stdout


def test_standard_input(monkeypatch, capsys) -> None:
    job = base_job()
    job["spec"]["training"] = {"learningRate": -1}
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(job)))
    code, lines = run_validate(capsys, Path("-"))
    assert code == 1
    assert lines == ["<stdin>: spec.training.learningRate: must be > 0 (got -1)"]


def test_load_jobs_returns_validated_models(tmp_path: Path) -> None:
    """The API `finetune run` and the operator use: models, not dicts."""
    second = base_job()
    second["metadata"]["name"] = "other"
    second["spec"]["strategy"] = {"type": "lora"}
    job = write(tmp_path, yaml.safe_dump(base_job()) + "---\n" + yaml.safe_dump(second))
    first, other = load_jobs(job)
    assert isinstance(first, FineTuneJob) and first.metadata.name == "demo"
    assert other.spec.strategy.resolved().lora.r == 8
    assert other.spec.training.learning_rate == 5e-5


def test_manifest_error_carries_every_problem() -> None:
    job = base_job()
    job["spec"]["training"] = {"batchSize": 0, "epochs": -1}
    with pytest.raises(ManifestError) as caught:
        parse_job(job, "job.yaml")
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("spec.training.epochs", "must be > 0 (got -1)"),
        ("spec.training.batchSize", "must be >= 1 (got 0)"),
    ]
    assert isinstance(caught.value, UserError)
    assert str(caught.value) == (
        "job.yaml: spec.training.epochs: must be > 0 (got -1)\n"
        "job.yaml: spec.training.batchSize: must be >= 1 (got 0)"
    )
