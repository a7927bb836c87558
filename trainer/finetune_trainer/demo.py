"""The demo dataset: customer-support messages labelled with one of five intents.

The project writes this data itself from templates and word lists (nothing is
downloaded), deterministically for a given seed, so `make demo` runs offline and
gives the same numbers every time. It is made hard enough that a good model does
not score 1.0 and a bag-of-words model does worse:

- templates share many words across intents ("order", "account", "charged");
- a share of messages are short and vague ("problem with my order");
- words carry typos (swapped, dropped, doubled or neighbouring-key letters), which a
  word-level model sees as new words and a subword model mostly does not;
- a few messages are routed to a neighbouring team (billing/refund, shipping/refund,
  login/technical) with that team's wording mixed in, as real tickets are: about one
  in twenty labels is arguably wrong, so no model reaches 1.0.

    python -m finetune_trainer.demo --out data/demo      # train/validation/test CSVs
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path
from typing import Sequence

INTENTS = ("billing", "login", "shipping", "refund", "technical")

_SLOTS = {
    "amount": ["$12.99", "$45", "$7.50", "$120", "$19.99", "$60", "$5", "$250"],
    "plan": ["premium plan", "basic plan", "family plan", "annual subscription", "monthly subscription",
             "pro tier"],
    "item": ["headphones", "blender", "running shoes", "phone case", "desk lamp", "backpack", "coffee maker",
             "keyboard", "winter jacket", "water bottle"],
    "days": ["two", "three", "five", "seven", "ten", "twelve"],
    "device": ["iphone", "android phone", "laptop", "tablet", "smart tv", "work computer"],
    "app": ["mobile app", "website", "desktop app", "browser extension"],
    "error": ["error 500", "a blank screen", "an endless spinner", "error code 0x80", "a timeout message",
              "a crash report"],
    "courier": ["the courier", "the delivery driver", "the post office", "ups", "fedex"],
    "when": ["yesterday", "this morning", "last week", "two days ago", "on monday", "tonight"],
}

_TEMPLATES = {
    "billing": [
        "i was charged {amount} twice for my {plan}",
        "why does my invoice show {amount} when my {plan} costs less",
        "please update the credit card on my account before the next bill",
        "my {plan} renewed {when} and the charge of {amount} looks wrong",
        "can i get a copy of the invoice for {amount} from {when}",
        "the payment of {amount} failed but the bank says it went through",
        "how do i switch from the {plan} to a cheaper plan on my bill",
        "there is an unknown charge of {amount} on my statement",
        "i need a vat receipt for the {plan} i paid {when}",
        "my account was billed {amount} after i downgraded the {plan}",
        "when is the next payment for my {plan} due",
        "the price of my {plan} went up to {amount} without notice",
    ],
    "login": [
        "i cannot log in to my account on the {app}",
        "the password reset email never arrives",
        "my account got locked after too many sign in attempts {when}",
        "two factor code is not accepted when i sign in on my {device}",
        "i forgot my password and the reset link has expired",
        "it says my username does not exist but i have an account",
        "how do i change the email i use to sign in",
        "the {app} keeps logging me out every few minutes",
        "i get invalid credentials even with the right password",
        "my verification code for login was sent to an old phone number",
        "single sign on with my work account stopped working {when}",
        "please unlock my account, i am locked out of the {app}",
    ],
    "shipping": [
        "where is my order of {item}, it was supposed to arrive {when}",
        "the tracking number for my {item} shows no updates for {days} days",
        "{courier} left my {item} at the wrong address",
        "can i change the delivery address for the {item} i ordered {when}",
        "my parcel with the {item} is stuck in customs",
        "how long does standard shipping take for a {item}",
        "the package says delivered but i never got my {item}",
        "{courier} tried to deliver {when} and nobody told me",
        "is express delivery available for the {item}",
        "my order has not shipped after {days} days",
        "only half of my order arrived, the {item} is missing from the box",
        "can {courier} hold my {item} at a pickup point",
    ],
    "refund": [
        "i want a refund for the {item}, it broke after {days} days",
        "how do i return the {item} i bought {when}",
        "i returned the {item} but have not got my money back",
        "please cancel my {plan} and refund the {amount}",
        "the {item} arrived damaged and i would like my money back",
        "can i get a refund for the unused part of my {plan}",
        "my return label for the {item} does not work",
        "it has been {days} days since you received my return and no refund yet",
        "i was promised a refund of {amount} {when}",
        "the {item} is not what i ordered, i want to send it back",
        "how long does a refund to my card take",
        "cancel my order for the {item} and give me a full refund",
    ],
    "technical": [
        "the {app} shows {error} when i open it on my {device}",
        "the {app} crashes every time i upload a photo",
        "since the update {when} the {app} is very slow on my {device}",
        "notifications stopped working on my {device}",
        "i get {error} when i try to save my settings",
        "the {app} will not install on my {device}",
        "video playback freezes in the {app} after a few seconds",
        "sync between my {device} and the {app} is broken",
        "the search in the {app} returns {error}",
        "dark mode makes the text unreadable in the {app}",
        "my {device} overheats when the {app} is running",
        "the page loads with {error} since {when}",
    ],
}

# Short, vague messages: the intent is a guess from one or two words.
_SHORT = {
    "billing": ["wrong charge", "double charged", "invoice please", "billing question", "charged again {when}",
                "payment issue", "price went up", "card declined", "problem with my bill", "{amount} charge?"],
    "login": ["cant sign in", "locked out", "password not working", "login problem", "reset link broken",
              "account access", "sign in loop", "code not accepted", "problem with my account", "logged out again"],
    "shipping": ["where is my order", "package late", "tracking not updating", "order not here", "delivery problem",
                 "wrong address", "still waiting {when}", "parcel missing", "problem with my order", "when will it ship"],
    "refund": ["money back please", "return item", "refund status", "want to cancel", "refund not received",
               "send it back", "broken {item}", "cancel and refund", "problem with my return", "refund {amount}"],
    "technical": ["app crashing", "{error} again", "not loading", "app is slow", "bug in the {app}",
                  "screen frozen", "update broke it", "sync broken", "problem with the {app}", "keeps crashing"],
}

# Neighbouring teams: the intents whose tickets are most often mixed up.
_NEIGHBOURS = {
    "billing": ("refund",), "refund": ("billing", "shipping"), "shipping": ("refund",),
    "login": ("technical",), "technical": ("login",),
}

_OPENERS = ["", "", "", "hi, ", "hello, ", "hey, ", "good morning, ", "urgent: ", "quick question: "]
_CLOSERS = ["", "", "", " thanks", " please help", " thank you", " asap", " any update?", " this is frustrating"]
_KEYBOARD_NEIGHBOURS = {
    "a": "sq", "c": "xv", "d": "sf", "e": "wr", "g": "fh", "i": "uo", "l": "k", "m": "n", "n": "bm", "o": "ip",
    "r": "et", "s": "ad", "t": "ry", "u": "yi",
}

SHORT_SHARE = 0.25  # messages drawn from _SHORT
MIXED_SHARE = 0.15  # messages that join a neighbouring intent's wording to their own
NOISE_SHARE = 0.05  # labels given to a neighbouring team's message
TYPO_RATE = 0.12  # chance that a word of four or more letters carries one typo


def _fill(template: str, rng: random.Random) -> str:
    text = template
    for slot, values in _SLOTS.items():
        while "{" + slot + "}" in text:
            text = text.replace("{" + slot + "}", rng.choice(values), 1)
    return text


def _typo(word: str, rng: random.Random) -> str:
    """`word` with one typo inside it (the first letter is kept, as people rarely miss it)."""
    at = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0 and word[at] != word[at + 1]:  # two letters swapped
        return word[:at] + word[at + 1] + word[at] + word[at + 2:]
    if kind == 2:  # a letter doubled
        return word[:at] + word[at] + word[at:]
    near = _KEYBOARD_NEIGHBOURS.get(word[at])
    if kind == 3 and near:  # a neighbouring key
        return word[:at] + rng.choice(near) + word[at + 1:]
    return word[:at] + word[at + 1:]  # a letter dropped


def _misspell(text: str, rng: random.Random) -> str:
    return " ".join(_typo(word, rng) if len(word) >= 4 and word.isalpha() and rng.random() < TYPO_RATE else word
                    for word in text.split(" "))


def _ticket_text(intent: str, rng: random.Random) -> str:
    """One message whose true intent is `intent`."""
    draw = rng.random()
    if draw < SHORT_SHARE:
        text = _fill(rng.choice(_SHORT[intent]), rng)
    elif draw < SHORT_SHARE + MIXED_SHARE:
        own = _fill(rng.choice(_TEMPLATES[intent]), rng)
        other = _fill(rng.choice(_SHORT[rng.choice(_NEIGHBOURS[intent])]), rng)
        text = f"{own}, also {other}" if rng.random() < 0.5 else f"{other} - {own}"
    else:
        text = _fill(rng.choice(_TEMPLATES[intent]), rng)
    return _misspell(rng.choice(_OPENERS) + text + rng.choice(_CLOSERS), rng)


def generate(total: int = 500, seed: int = 7) -> list[tuple[str, str]]:
    """`total` distinct (text, intent) pairs, balanced over INTENTS, in a seeded order.

    Each label's messages are that intent's, except a NOISE_SHARE drawn from a
    neighbouring intent (a ticket routed to the neighbouring team). Texts are distinct
    across the whole set, so no message appears under two labels or in two splits."""
    rng = random.Random(seed)
    per_intent = total // len(INTENTS)
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for intent in INTENTS:
        made, attempts = 0, 0
        while made < per_intent:
            attempts += 1
            if attempts > per_intent * 200:
                raise RuntimeError(f"cannot make {per_intent} distinct {intent} messages from the templates")
            source = rng.choice(_NEIGHBOURS[intent]) if rng.random() < NOISE_SHARE else intent
            text = _ticket_text(source, rng)
            if text in seen:
                continue
            seen.add(text)
            rows.append((text, intent))
            made += 1
    rng.shuffle(rows)
    return rows


def write_splits(out_dir: str | Path, total: int = 500, seed: int = 7,
                 fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> dict[str, Path]:
    """Write train.csv, validation.csv and test.csv (columns text,label) into `out_dir`."""
    rows = generate(total, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_train = int(len(rows) * fractions[0])
    n_validation = int(len(rows) * fractions[1])
    splits = {"train": rows[:n_train], "validation": rows[n_train:n_train + n_validation],
              "test": rows[n_train + n_validation:]}
    paths = {}
    for name, split in splits.items():
        path = out / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(split)
        paths[name] = path
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune_trainer.demo",
                                     description="Write the demo support-ticket dataset (train/validation/test CSVs).")
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--total", type=int, default=500, help="messages in all splits (default: 500)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    args = parser.parse_args(argv)
    if args.total < 50:
        print("error: --total must be at least 50", file=sys.stderr)
        return 1
    paths = write_splits(args.out, args.total, args.seed)
    counts = {name: sum(1 for _ in open(path)) - 1 for name, path in paths.items()}
    print(f"demo data in {args.out}: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
