"""The bag-of-words baseline that `make demo` prints beside the fine-tuned model.

A TF-IDF vectoriser (word unigrams and bigrams) and a logistic regression, fitted with
scikit-learn on the demo's own training split and scored on its test split: what a
model that only counts words gets on the same data. The fine-tuned model is worth its
GPU hours when it beats this line.

    python -m finetune_trainer.demo_baseline --data data/demo --run outputs/support-intents-demo
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def _read(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def tfidf_accuracy(train_csv: str | Path, test_csv: str | Path, seed: int = 0) -> float:
    """Test accuracy of TF-IDF + logistic regression fitted on `train_csv`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train_texts, train_labels = _read(Path(train_csv))
    test_texts, test_labels = _read(Path(test_csv))
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          LogisticRegression(max_iter=5000, random_state=seed))
    model.fit(train_texts, train_labels)
    return float(model.score(test_texts, test_labels))


def fine_tuned_accuracy(run_dir: str | Path) -> Optional[float]:
    """The run's test accuracy from its metrics.json, or None when it has none."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("test_accuracy")
    return float(value) if isinstance(value, (int, float)) else None


def comparison(baseline: float, fine_tuned: Optional[float]) -> str:
    line = f"test accuracy: TF-IDF + logistic regression {baseline:.3f}"
    if fine_tuned is None:
        return line + "; the fine-tuned model's metrics.json has no test_accuracy"
    return f"test accuracy: fine-tuned {fine_tuned:.3f} vs TF-IDF + logistic regression {baseline:.3f} " \
           f"({100 * (fine_tuned - baseline):+.1f} points)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune_trainer.demo_baseline",
                                     description="Score a TF-IDF + logistic regression baseline on the demo data "
                                                 "and print it beside the fine-tuned model's test accuracy.")
    parser.add_argument("--data", default="data/demo", help="folder with train.csv and test.csv (default: data/demo)")
    parser.add_argument("--run", help="the fine-tune's output folder, holding metrics.json")
    args = parser.parse_args(argv)
    data = Path(args.data)
    missing = [name for name in ("train.csv", "test.csv") if not (data / name).is_file()]
    if missing:
        print(f"error: --data {data}: no {' or '.join(missing)}; write the data with "
              "`python -m finetune_trainer.demo --out DIR`", file=sys.stderr)
        return 1
    baseline = tfidf_accuracy(data / "train.csv", data / "test.csv")
    print(comparison(baseline, fine_tuned_accuracy(args.run) if args.run else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
