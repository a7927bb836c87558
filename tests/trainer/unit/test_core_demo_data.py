"""The demo data is hard enough to show something: a word-counting baseline does not
reach 1.0 on it, the noise is where the module says it is, and the baseline printer
reads the fine-tune's metrics."""

from __future__ import annotations

import json
import random
from collections import Counter

from finetune_trainer import demo, demo_baseline


def test_typos_change_one_letter_and_keep_the_word_recognisable():
    rng = random.Random(1)
    for _ in range(500):
        word = rng.choice(["account", "refund", "password", "delivery", "invoice"])
        typo = demo._typo(word, rng)
        assert typo != word
        assert abs(len(typo) - len(word)) <= 1 and typo[0] == word[0]


def test_the_data_carries_typos_short_messages_and_a_share_of_neighbouring_labels():
    rows = demo.generate(1000, seed=7)
    vocabulary = {word for templates in demo._TEMPLATES.values() for t in templates
                  for word in demo._fill(t, random.Random(0)).split()}
    words = Counter(w for text, _ in rows for w in text.replace(",", " ").split())
    unknown = sum(count for word, count in words.items()
                  if word.isalpha() and len(word) >= 4 and word not in vocabulary)
    assert unknown / sum(words.values()) > 0.03  # misspelt words are there
    assert sum(1 for text, _ in rows if len(text.split()) <= 4) > 100  # short, vague ones too
    # Each label holds some messages written from a neighbouring intent's templates.
    own_phrases = {intent: {t.split("{")[0].strip() for t in demo._TEMPLATES[intent] + demo._SHORT[intent]
                            if len(t.split("{")[0].strip()) > 12} for intent in demo.INTENTS}
    foreign = sum(1 for text, label in rows
                  if any(p in text for other in demo._NEIGHBOURS[label] for p in own_phrases[other])
                  and not any(p in text for p in own_phrases[label]))
    assert 0.01 < foreign / len(rows) < 0.12


def test_bag_of_words_does_not_solve_the_demo_data(tmp_path):
    paths = demo.write_splits(tmp_path, 500, 7)
    accuracy = demo_baseline.tfidf_accuracy(paths["train"], paths["test"])
    assert 0.5 < accuracy < 0.97


def test_the_printer_puts_the_fine_tune_beside_the_baseline(tmp_path, capsys):
    demo.write_splits(tmp_path / "data", 500, 7)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.96, "eval_accuracy": 0.9}))
    assert demo_baseline.main(["--data", str(tmp_path / "data"), "--run", str(run)]) == 0
    line = capsys.readouterr().out.strip()
    baseline = demo_baseline.tfidf_accuracy(tmp_path / "data" / "train.csv", tmp_path / "data" / "test.csv")
    assert line == (f"test accuracy: fine-tuned 0.960 vs TF-IDF + logistic regression {baseline:.3f} "
                    f"({100 * (0.96 - baseline):+.1f} points)")


def test_the_printer_names_missing_data_files(tmp_path, capsys):
    assert demo_baseline.main(["--data", str(tmp_path)]) == 1
    assert "no train.csv or test.csv" in capsys.readouterr().err
