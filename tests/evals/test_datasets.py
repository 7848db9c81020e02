import pytest

from graphtune.evals.datasets import DatasetError, load_dataset


def write(tmp_path, text):
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    return path


def error(tmp_path, text) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(write(tmp_path, text))
    return str(info.value)


def test_rows_load_with_hash_and_optional_expected(tmp_path):
    data = load_dataset(write(tmp_path, '{"id": "a", "inputs": {"q": 1}, "expected": {"answer": "x"}, "tags": ["t"]}\n\n'
                                        '{"id": "b", "inputs": {"q": 2}, "observed": {"output": "y"}}\n'))
    assert [e.id for e in data.examples] == ["a", "b"]
    assert data.examples[0].labelled and not data.examples[1].labelled
    assert len(data.hash) == 64 and data.name == "rows"
    assert data.select(tags=["t"])[0].id == "a" and len(data.select(limit=1)) == 1


def test_missing_field_names_file_line_and_field(tmp_path):
    message = error(tmp_path, '{"id": "a", "inputs": {}}\n{"id": "b", "expected": {"answer": "x"}}\n')
    assert "rows.jsonl:2 (id 'b'): inputs: required field is missing" in message


def test_bad_json_names_line(tmp_path):
    assert "rows.jsonl:2: not valid JSON" in error(tmp_path, '{"id": "a", "inputs": {}}\n{"id": "b", "inputs": \n')


def test_wrong_types_and_duplicates(tmp_path):
    assert "inputs" in error(tmp_path, '{"id": "a", "inputs": "text"}\n')
    assert "expected a JSON object" in error(tmp_path, '[1, 2]\n')
    assert "duplicate id 'a' (first on line 1)" in error(tmp_path, '{"id": "a", "inputs": {}}\n{"id": "a", "inputs": {}}\n')


def test_empty_and_missing_files(tmp_path):
    assert "has no rows" in error(tmp_path, "\n")
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_dataset(tmp_path / "absent.jsonl")
