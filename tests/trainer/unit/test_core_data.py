"""Reading, checking, splitting and sharding data (finetune_trainer.sources, .splitting, .tasks.text_classification)."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_helpers import sentiment_rows, training_config, write_rows
from finetune_trainer.tasks.text_classification import load_examples, make_collator, prepare_datasets, read_table
from finetune_trainer.errors import DataError

FORMATS = ["csv", "tsv", "jsonl", "parquet"]


def _config(train: Path, tmp_path: Path, **data):
    return training_config(str(train), str(tmp_path / "out"), data=data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_the_same_rows(tmp_path: Path, fmt: str) -> None:
    rows = sentiment_rows(30)
    train = write_rows(tmp_path / f"train.{fmt}", rows)
    table = read_table(str(train), _config(train, tmp_path).data)
    assert table.num_rows == 30
    assert sorted(table.column("text").to_pylist()) == sorted(r["text"] for r in rows)
    assert set(table.column("label").to_pylist()) == {"pos", "neg"}


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.txt", sentiment_rows(5), fmt="tsv")
    with pytest.raises(DataError, match=r"data.format"):
        read_table(str(train), _config(train, tmp_path).data)
    assert read_table(str(train), _config(train, tmp_path, format="tsv").data).num_rows == 5


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_and_complete(tmp_path: Path, world_size: int) -> None:
    rows = sentiment_rows(101)
    train = write_rows(tmp_path / "train.parquet", rows)
    config = _config(train, tmp_path)
    shards = [load_examples(config, rank=r, world_size=world_size) for r in range(world_size)]
    whole = load_examples(config)
    for split in ("train", "validation"):
        parts = [set(getattr(s, split).texts) for s in shards]
        for i in range(world_size):
            for j in range(i + 1, world_size):
                assert not parts[i] & parts[j]
        assert set().union(*parts) == set(getattr(whole, split).texts)
        assert all(
            len(getattr(s, split)) < len(getattr(whole, split)) or len(getattr(whole, split)) == 0
            for s in shards
        )
    assert sum(len(s.train) for s in shards) == len(whole.train)
    assert all(s.label_names == ["neg", "pos"] for s in shards)


def test_validation_split_is_deterministic_disjoint_and_seeded(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.csv", sentiment_rows(200))
    first = load_examples(_config(train, tmp_path, validationFraction=0.25))
    again = load_examples(_config(train, tmp_path, validationFraction=0.25))
    other_seed = load_examples(_config(train, tmp_path, validationFraction=0.25, shuffleSeed=7))
    assert first.validation.texts == again.validation.texts
    assert not set(first.validation.texts) & set(first.train.texts)
    assert len(first.validation) + len(first.train) == 200
    assert 30 <= len(first.validation) <= 70  # 25 % of 200, with hashing noise
    assert set(other_seed.validation.texts) != set(first.validation.texts)


def test_explicit_validation_and_test_sources(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.jsonl", sentiment_rows(20))
    validation = write_rows(
        tmp_path / "val.csv", [{"text": "good fun", "label": "pos"}, {"text": "bad", "label": "neg"}]
    )
    test = write_rows(tmp_path / "test.tsv", [{"text": "awful", "label": "neg"}])
    split = load_examples(_config(train, tmp_path, validation=str(validation), test=str(test)))
    assert len(split.train) == 20
    assert split.validation.texts == ["good fun", "bad"] and split.validation.labels == [1, 0]
    assert split.test is not None and split.test.labels == [0]


def test_string_labels_follow_model_labels_order(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.csv", sentiment_rows(10))
    config = training_config(
        str(train), str(tmp_path / "o"), model={"labels": ["pos", "neg"]}, data={"validationFraction": 0.1}
    )
    split = load_examples(config)
    assert split.label_names == ["pos", "neg"]
    by_text = dict(
        zip(split.train.texts + split.validation.texts, split.train.labels + split.validation.labels)
    )
    assert by_text["a great movie i loved it 0"] == 0 and by_text["the worst film ever 1"] == 1


def test_int_labels_checked_against_num_labels(tmp_path: Path) -> None:
    rows = [{"text": f"text {i}", "label": i % 3} for i in range(12)]
    train = write_rows(tmp_path / "train.jsonl", rows)
    split = load_examples(_config(train, tmp_path))
    assert split.label_names == ["0", "1", "2"]
    assert sorted(set(split.train.labels) | set(split.validation.labels)) == [0, 1, 2]
    config = training_config(str(train), str(tmp_path / "o"), model={"numLabels": 2})
    with pytest.raises(DataError) as err:
        load_examples(config)
    message = str(err.value)
    assert "train.jsonl" in message and "row 3" in message and "'label'" in message and "0-1" in message


def test_unknown_label_names_file_row_column_and_allowed(tmp_path: Path) -> None:
    rows = sentiment_rows(4) + [{"text": "meh", "label": "neutral"}]
    train = write_rows(tmp_path / "train.csv", rows)
    config = training_config(str(train), str(tmp_path / "o"), model={"labels": ["neg", "pos"]})
    with pytest.raises(DataError) as err:
        load_examples(config)
    message = str(err.value)
    for part in ("data.train", "train.csv", "row 5", "column 'label'", "'neutral'", "'neg', 'pos'"):
        assert part in message


def test_missing_column_lists_available_columns(tmp_path: Path) -> None:
    for fmt in FORMATS:
        train = write_rows(tmp_path / f"t.{fmt}", [{"sentence": "hi", "label": "a"}])
        with pytest.raises(DataError) as err:
            read_table(str(train), _config(train, tmp_path).data)
        message = str(err.value)
        assert f"t.{fmt}" in message and "'text'" in message and "data.textColumn" in message
        assert "'sentence', 'label'" in message


def test_empty_and_unparseable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv.*empty"):
        read_table(str(empty), _config(empty, tmp_path).data)
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(DataError, match=r"header\.csv.*no data rows"):
        read_table(str(header_only), _config(header_only, tmp_path).data)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,label\nfine,pos\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"ragged\.csv.*row 2.*3 fields"):
        read_table(str(ragged), _config(ragged, tmp_path).data)
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "a", "label": "x"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl.*row 2.*not valid JSON"):
        read_table(str(bad_json), _config(bad_json, tmp_path).data)
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text("text,label\n")
    with pytest.raises(DataError, match=r"fake\.parquet.*parquet"):
        read_table(str(not_parquet), _config(not_parquet, tmp_path).data)
    with pytest.raises(DataError, match=r"data.train.*nope\.csv.*not found"):
        read_table(str(tmp_path / "nope.csv"), _config(empty, tmp_path).data)


def test_missing_values_and_duplicates_are_counted_and_dropped(tmp_path: Path) -> None:
    rows = sentiment_rows(20)
    rows += [{"text": None, "label": "pos"}, {"text": "fine", "label": None}]
    rows += [dict(rows[0]), dict(rows[1]), dict(rows[1])]
    train = write_rows(tmp_path / "train.jsonl", rows)
    split = load_examples(_config(train, tmp_path))
    assert split.report.dropped_missing == 2
    # Duplicates land on the side of their original, so they are all in train or all in validation.
    in_train = [r["text"] for r in rows[:2] if r["text"] in split.train.texts]
    expected_dups = (1 if rows[0]["text"] in in_train else 0) + (2 if rows[1]["text"] in in_train else 0)
    assert split.report.dropped_duplicates == expected_dups
    assert len(split.train.texts) == len(set(split.train.texts))
    assert split.report.train + split.report.validation == 20 + (3 - expected_dups)
    validation = write_rows(tmp_path / "val.csv", sentiment_rows(2) + [{"text": "x", "label": None}])
    with_validation = load_examples(_config(train, tmp_path, validation=str(validation)))
    assert with_validation.report.dropped_duplicates == 3
    assert with_validation.report.dropped_missing == 3  # two in train, one in validation
    assert len(with_validation.validation) == 2
    assert with_validation.report.train == 20
    assert with_validation.report.label_counts == {"neg": 10, "pos": 10}


def test_strict_mode_fails_on_missing_and_duplicates(tmp_path: Path) -> None:
    missing = write_rows(tmp_path / "m.csv", sentiment_rows(3) + [{"text": "", "label": "pos"}])
    with pytest.raises(DataError) as err:
        load_examples(_config(missing, tmp_path, strict=True))
    assert "m.csv" in str(err.value) and "row 4" in str(err.value) and "'text'" in str(err.value)
    assert "data.strict" in str(err.value)
    rows = sentiment_rows(30)
    rows.append(dict(rows[0]))
    dup = write_rows(tmp_path / "d.csv", rows)
    validation = write_rows(tmp_path / "v.csv", sentiment_rows(2))
    with pytest.raises(DataError, match=r"d\.csv.*row 31 duplicates row 1"):
        load_examples(_config(dup, tmp_path, strict=True, validation=str(validation)))
    assert len(load_examples(_config(dup, tmp_path, validation=str(validation))).train) == 30


def test_max_samples_caps_training_examples_across_ranks(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.csv", sentiment_rows(100))
    config = _config(train, tmp_path, maxSamples=25)
    assert len(load_examples(config).train) == 25
    shards = [load_examples(config, rank=r, world_size=2) for r in range(2)]
    assert [len(s.train) for s in shards] == [13, 12]


def test_sentence_pairs_are_tokenised_together(tmp_path: Path, tiny_tokenizer) -> None:
    rows = [{"a": f"the cat sat {i}", "b": "on the mat", "label": i % 2} for i in range(10)]
    train = write_rows(tmp_path / "pairs.parquet", rows)
    config = _config(train, tmp_path, textColumn="a", textPairColumn="b", maxSeqLength=8)
    prepared = prepare_datasets(config, tiny_tokenizer)
    item = prepared.train[0]
    assert len(item["input_ids"]) <= 8
    assert 1 in item["token_type_ids"]  # the pair is the second segment
    batch = make_collator(tiny_tokenizer)([prepared.train[i] for i in range(len(prepared.train))])
    assert (
        batch["input_ids"].shape[0] == len(prepared.train)
        and batch["labels"].dtype.is_floating_point is False
    )


def test_augmentation_touches_training_split_only(tmp_path: Path, tiny_tokenizer) -> None:
    rows = [
        {"text": "one two three four five six seven eight nine ten " + str(i), "label": i % 2}
        for i in range(40)
    ]
    train = write_rows(tmp_path / "train.jsonl", rows)
    config = training_config(
        str(train), str(tmp_path / "o"), data={"augmentation": {"wordDropout": 0.3, "wordSwap": 0.3}}
    )
    prepared = prepare_datasets(config, tiny_tokenizer)
    texts = [prepared.train.text_at(i) for i in range(len(prepared.train))]
    assert texts != prepared.train.examples.texts
    assert [prepared.train.text_at(i) for i in range(len(prepared.train))] == texts  # deterministic
    prepared.train.set_epoch(1)
    assert [prepared.train.text_at(i) for i in range(len(prepared.train))] != texts  # new noise per epoch
    assert [
        prepared.validation.text_at(i) for i in range(len(prepared.validation))
    ] == prepared.validation.examples.texts


def test_hf_source_without_datasets_package_is_a_clear_error(tmp_path: Path) -> None:
    try:
        import datasets  # noqa: F401

        pytest.skip("datasets is installed; this checks the message without it")
    except ImportError:
        pass
    config = training_config("hf://imdb@train", str(tmp_path / "o"))
    with pytest.raises(DataError, match=r"data.train.*hf://.*datasets"):
        load_examples(config)


def test_folder_of_part_files_reads_every_part(tmp_path: Path) -> None:
    rows = sentiment_rows(30)
    folder = tmp_path / "parts"
    write_rows(folder / "part-0000.parquet", rows[:10])
    write_rows(folder / "part-0001.parquet", rows[10:25])
    write_rows(folder / "part-0002.parquet", rows[25:])
    (folder / "_SUCCESS").write_text("")
    table = read_table(str(folder), _config(folder, tmp_path).data)
    assert sorted(table.column("text").to_pylist()) == sorted(r["text"] for r in rows)
    assert table.column("row").to_pylist()[:2] == [1, 2]
    assert {Path(f).name for f in table.column("file").to_pylist()} == {
        "part-0000.parquet",
        "part-0001.parquet",
        "part-0002.parquet",
    }
    shards = [load_examples(_config(folder, tmp_path), rank=r, world_size=2) for r in range(2)]
    assert sum(len(s.train) + len(s.validation) for s in shards) == 30


def test_folder_errors_name_the_part_file(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    write_rows(folder / "a.csv", sentiment_rows(5))
    write_rows(folder / "b.csv", [{"text": "fine", "label": "pos"}, {"text": "meh", "label": "neutral"}])
    config = training_config(str(folder), str(tmp_path / "o"), model={"labels": ["neg", "pos"]})
    with pytest.raises(
        DataError, match=r"data.train \(.*b\.csv\): row 2, column 'label': unknown label 'neutral'"
    ):
        load_examples(config)
    write_rows(folder / "c.jsonl", sentiment_rows(2))
    with pytest.raises(DataError, match=r"mixes formats \(csv, jsonl\)"):
        load_examples(config)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"holds no data files"):
        load_examples(_config(empty, tmp_path))


def test_max_seq_length_truncates_and_is_capped_by_the_model(tmp_path: Path, tiny_tokenizer) -> None:
    long_text = " ".join(["great"] * 200)
    train = write_rows(
        tmp_path / "long.jsonl", [{"text": f"{long_text} {i}", "label": i % 2} for i in range(6)]
    )
    short = prepare_datasets(_config(train, tmp_path, maxSeqLength=16), tiny_tokenizer)
    assert {len(short.train[i]["input_ids"]) for i in range(len(short.train))} == {16}
    capped = prepare_datasets(_config(train, tmp_path, maxSeqLength=512), tiny_tokenizer)
    assert tiny_tokenizer.model_max_length == 64
    assert {len(capped.train[i]["input_ids"]) for i in range(len(capped.train))} == {64}
