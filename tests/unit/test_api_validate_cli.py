"""``epp validate``: exit codes and the file / document / kind/name / path: reason lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from endpoint_picker.cli import main

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "examples" / "invalid"


def run(
    capsys: pytest.CaptureFixture[str], *files: Path | str, strict: bool = False
) -> tuple[int, str, str]:
    argv = ["validate", "--strict"] if strict else ["validate"]
    for f in files:
        argv += ["-f", str(f)]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_example_pool_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, ROOT / "examples" / "pool.yaml")
    assert code == 0 and err == ""
    assert out.count(": valid") == 4
    assert "document 1 (InferencePool/demo-pool): valid" in out


@pytest.mark.parametrize("sample", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_samples_report_what_their_header_says(
    capsys: pytest.CaptureFixture[str], sample: Path
) -> None:
    header = sample.read_text().splitlines()[0]
    assert header.startswith("# expect")
    expected = header.split(": ", 1)[1].split("...")[0].split("  (")[0]
    code, _, err = run(capsys, sample, strict="--strict" in header.split(": ", 1)[0])
    assert code == 1
    lines = [line for line in err.splitlines() if not line.endswith("file(s)")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{sample}: document ")
    assert expected in lines[0]
    assert "Traceback" not in err


def test_line_format_names_file_document_object_and_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, INVALID / "bad-group.yaml")
    assert code == 1
    assert err.splitlines()[0] == (
        f"{INVALID / 'bad-group.yaml'}: document 1 (InferenceObjective/chat): spec.poolRef.group: "
        "must match ^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ "
        "(got 'example.com/bar')"
    )


def test_duplicates_across_files_and_all_errors_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text((ROOT / "examples" / "pool.yaml").read_text())
    code, _, err = run(capsys, ROOT / "examples" / "pool.yaml", copy, INVALID / "wrong-type.yaml")
    assert code == 1
    dups = [line for line in err.splitlines() if "duplicate object" in line]
    assert len(dups) == 4 and all(line.startswith(str(copy)) for line in dups)
    assert "spec.targetPorts[0].number: must be an integer" in err
    assert err.splitlines()[-1] == "5 error(s) in 3 file(s)"


def test_json_files_and_list_objects(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                "kind": "InferenceObjective",
                "metadata": {"name": "a"},
                "spec": {"poolRef": {"name": "p"}, "priority": "high"},
            }
        ],
    }
    path = tmp_path / "objs.json"
    path.write_text(json.dumps(doc))
    code, _, err = run(capsys, path)
    assert code == 1
    assert (
        "document 1 (InferenceObjective/a): spec.priority: must be an integer (got 'high')" in err
    )
    path.write_text("{not json")
    code, _, err = run(capsys, path)
    assert code == 1 and "document 1: JSON syntax error at line 1, column 2" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "document 1: a document must be a mapping (an object), got a list"),
        ("metadata: {name: x}\n", "document 1 (?/x): kind: required field is missing"),
        ("kind: InferencePool\nmetadata: {name: x}\n", "apiVersion: InferencePool is served as"),
        ("a: [\n", "document 1: YAML syntax error at line 2"),
    ],
)
def test_malformed_documents(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    code, _, err = run(capsys, path)
    assert code == 1 and expected in err, err


def test_missing_file_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, tmp_path / "nope.yaml")
    assert code == 1 and "nope.yaml: cannot read file: No such file or directory" in err


def test_empty_documents_are_skipped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("---\n---\n" + (ROOT / "examples" / "pool.yaml").read_text())
    code, out, _ = run(capsys, path)
    assert code == 0 and "document 2 (InferencePool/demo-pool): valid" in out


def test_unknown_fields_are_pruned_with_a_warning_as_the_api_server_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Upstream's own test data carries fields its CRDs do not have (InferenceObjective
    ``targetModels``, ``endpointPickerRef.namespace``) and ``labels:`` with nothing under it; the
    API server prunes the former and reads the latter as no labels. So does ``epp validate``
    (``--strict`` makes unknown fields errors, as ``kubectl --validate=strict``)."""
    sample = tmp_path / "upstream.yaml"
    sample.write_text(
        "apiVersion: inference.networking.x-k8s.io/v1alpha2\n"
        "kind: InferenceObjective\n"
        "metadata: {name: sql-lora, labels: null}\n"
        "spec:\n"
        "  priority: 2\n"
        "  poolRef: {name: vllm-qwen3-32b-pool}\n"
        "  targetModels: [{name: sql-lora-1fdg2, weight: 100}]\n"
    )
    code, out, err = run(capsys, sample)
    assert code == 0 and "(InferenceObjective/sql-lora): valid" in out
    assert err.strip() == (
        f"warning: {sample}: document 1 (InferenceObjective/sql-lora): spec.targetModels: "
        "unknown field, pruned (as the API server does)"
    )
    code, _, err = run(capsys, sample, strict=True)
    assert code == 1 and "spec.targetModels: unknown field" in err
