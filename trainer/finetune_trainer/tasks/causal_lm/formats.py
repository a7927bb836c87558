"""The record layouts of causal-LM data, and how a record becomes prompt and answer text.

Three layouts (`causalLm.format`): `chat` (a list of {role, content} messages),
`instruction` (instruction / optional input / output, the alpaca layout) and `text`
(one text column). `auto` picks the first whose columns the training data has.

A record is rendered as *segments*, pieces of text each marked trainable or not: the
answer (an assistant turn, an output, a whole plain text) is trainable, everything
else is prompt. Chat records are rendered with the chat template (`causalLm.chatTemplate`,
else the tokenizer's); a turn's segments come from rendering the conversation up to
it with and without the turn, so the split follows whatever the template writes
around a turn (role markers, end-of-turn tokens: the end of an assistant turn is
trained, so the model learns to stop).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Optional

from finetune_trainer.config import DataSpec, TrainingConfig
from finetune_trainer.errors import DataError
from finetune_trainer.sources import Columns, MissingColumnError, iter_rows

ROLES = ("system", "user", "assistant")
LAYOUTS = ("chat", "instruction", "text")

Segment = tuple[str, bool]
"""A piece of rendered text and whether the loss covers it."""


@dataclass(frozen=True)
class Layout:
    """A resolved record layout: its name and the columns it reads."""

    format: str
    columns: dict[str, str]
    has_input: bool = False


def _candidates(config: TrainingConfig, fmt: str) -> list[Layout]:
    spec = config.causal_lm_settings
    if fmt == "chat":
        return [Layout("chat", {spec.messages_column: "causalLm.messagesColumn"})]
    if fmt == "instruction":
        base = {spec.instruction_column: "causalLm.instructionColumn", spec.output_column: "causalLm.outputColumn"}
        with_input = {spec.instruction_column: "causalLm.instructionColumn", spec.input_column: "causalLm.inputColumn",
                      spec.output_column: "causalLm.outputColumn"}
        return [Layout("instruction", with_input, True), Layout("instruction", base, False)]
    return [Layout("text", {config.data.text_column: "data.textColumn"})]


def _has_columns(config: TrainingConfig, columns: Columns) -> bool:
    rows = iter_rows(config.data.train, config.data, columns, field_name="data.train", output=config.output)
    try:
        next(rows, None)
    except MissingColumnError:
        return False
    finally:
        rows.close()
    return True


def resolve_layout(config: TrainingConfig) -> Layout:
    """The layout `causalLm.format` names, or (`auto`) the first of chat, instruction,
    text whose columns the training data has; its reader's error when a named layout's
    columns are missing."""
    spec = config.causal_lm_settings
    if spec.format != "auto":
        candidates = _candidates(config, spec.format)
        for layout in candidates[:-1]:
            if _has_columns(config, layout.columns):
                return layout
        return candidates[-1]  # read as is: a missing column fails naming its setting
    for fmt in LAYOUTS:
        for layout in _candidates(config, fmt):
            if _has_columns(config, layout.columns):
                return layout
    raise DataError(
        f"data.train ({config.data.train}): cannot tell the record layout: no column "
        f"{spec.messages_column!r} (chat), no {spec.instruction_column!r} and {spec.output_column!r} (instruction), "
        f"no {config.data.text_column!r} (text); set causalLm.format to chat, instruction or text and the column "
        "names (causalLm.messagesColumn, causalLm.instructionColumn, causalLm.outputColumn, data.textColumn)"
    )


# ---------------------------------------------------------------------- rows


def _text(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def check_messages(value: Any, cell: str) -> list[dict[str, str]]:
    """The messages of one chat record as [{role, content}], or a DataError naming the
    row and the message's field."""
    if isinstance(value, str):  # csv/tsv cells hold the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise DataError(f"{cell}: not a JSON list of messages ({err})") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"{cell}: expected a non-empty list of {{role, content}} messages, got "
                        f"{type(value).__name__}")
    messages = []
    for i, message in enumerate(value):
        where = f"{cell}[{i}]"
        if not isinstance(message, dict):
            raise DataError(f"{where}: expected an object with role and content, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DataError(f"{where}.role: {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            got = type(content).__name__ if content is not None else "nothing"
            raise DataError(f"{where}.content: expected text, got {got}")
        messages.append({"role": role, "content": content})
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        raise DataError(f"{cell}: no assistant message; a chat record needs at least one answer to learn from")
    first_turn = next(i for i, r in enumerate(roles) if r != "system")
    if roles[first_turn] != "user":
        raise DataError(f"{cell}[{first_turn}].role: the first message after the system prompt must be from the "
                        f"user (got {roles[first_turn]})")
    return messages


class CausalRows:
    """The splitter's questions about one load's rows (`splitting.RowRules`)."""

    duplicate_means = "same record"

    def __init__(self, config: TrainingConfig, layout: Layout) -> None:
        self.config, self.layout = config, layout

    def columns(self, spec: DataSpec) -> Columns:
        return self.layout.columns

    def clean(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        spec, layout = self.config.causal_lm_settings, self.layout
        if layout.format == "chat":
            messages = record[spec.messages_column]
            return {"messages": messages}, ([spec.messages_column] if messages is None else [])
        if layout.format == "instruction":
            values = {"instruction": _text(record[spec.instruction_column]),
                      "output": _text(record[spec.output_column]),
                      "input": _text(record.get(spec.input_column)) if layout.has_input else None}
            missing = [c for c, k in ((spec.instruction_column, "instruction"), (spec.output_column, "output"))
                       if values[k] is None]
            return values, missing
        text = _text(record[self.config.data.text_column])
        return {"text": text}, ([self.config.data.text_column] if text is None else [])

    def check(self, values: dict[str, Any], where: str, row_number: int) -> None:
        if self.layout.format == "chat":
            cell = f"{where}: row {row_number}, field {self.config.causal_lm_settings.messages_column}"
            values["messages"] = check_messages(values["messages"], cell)

    def fit(self, where: str) -> None:
        """Nothing to settle: a causal LM has no label set."""

    def row_key(self, values: dict[str, Any]) -> str:
        return json.dumps(values, sort_keys=True, ensure_ascii=False)

    def dedupe_key(self, values: dict[str, Any]) -> Hashable:
        return self.row_key(values)


@dataclass
class Records:
    """The checked records of one split on one rank, in one layout."""

    format: str
    values: list[dict[str, Any]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def row_key(self, index: int) -> str:
        return json.dumps(self.values[index], sort_keys=True, ensure_ascii=False)

    def subset(self, indexes) -> "Records":
        return Records(self.format, [self.values[i] for i in indexes], [self.rows[i] for i in indexes])

    def extend(self, more: "Records") -> None:
        self.values.extend(more.values)
        self.rows.extend(more.rows)


# ----------------------------------------------------------------- rendering


def chat_template(tokenizer: Any, config: TrainingConfig) -> Optional[str]:
    """`causalLm.chatTemplate`, else the tokenizer's chat template, else None."""
    return config.causal_lm_settings.chat_template or getattr(tokenizer, "chat_template", None) or None


def render_chat(messages: list[dict[str, str]], tokenizer: Any, template: str) -> list[Segment]:
    """A conversation as segments: every assistant turn trainable, the rest prompt."""
    from finetune_trainer.errors import ModelError

    def render(part: list[dict[str, str]], prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(part, chat_template=template, tokenize=False,
                                                 add_generation_prompt=prompt)
        except Exception as err:  # jinja raises its own error types
            raise ModelError(f"causalLm.chatTemplate: the chat template cannot render a conversation: {err}") \
                from None

    segments: list[Segment] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt, through = render(messages[:i], True), render(messages[: i + 1], False)
        if not prompt.startswith(done) or not through.startswith(prompt):
            raise ModelError(
                "causalLm.chatTemplate: the chat template does not render a conversation as a prefix of its "
                "continuation, so the assistant turns cannot be told apart; use a template that appends each "
                "turn (and writes the generation prompt as the start of the assistant turn)"
            )
        segments += [(prompt[len(done):], False), (through[len(prompt):], True)]
        done = through
    whole = render(messages, False)
    if whole.startswith(done) and len(whole) > len(done):
        segments.append((whole[len(done):], False))
    return [s for s in segments if s[0]]


def instruction_prompt(values: dict[str, Any]) -> str:
    """The user turn of an instruction record: the instruction, then its input."""
    return values["instruction"] + (f"\n\n{values['input']}" if values.get("input") else "")


def render(values: dict[str, Any], fmt: str, tokenizer: Any, template: Optional[str]) -> list[Segment]:
    """One record as segments (see the module docstring)."""
    eos = tokenizer.eos_token or ""
    if fmt == "chat":
        assert template is not None
        return render_chat(values["messages"], tokenizer, template)
    if fmt == "instruction":
        if template is not None:
            messages = [{"role": "user", "content": instruction_prompt(values)},
                        {"role": "assistant", "content": values["output"]}]
            return render_chat(messages, tokenizer, template)
        prompt = f"### Instruction:\n{values['instruction']}\n\n"
        if values.get("input"):
            prompt += f"### Input:\n{values['input']}\n\n"
        return [(prompt + "### Response:\n", False), (values["output"] + eos, True)]
    return [(values["text"] + eos, True)]


def prompt_text(values: dict[str, Any], fmt: str, tokenizer: Any, template: Optional[str]) -> Optional[str]:
    """The prompt of a record's first answer, as a generation would start from it
    (None for plain text)."""
    if fmt == "text":
        return None
    segments = render(values, fmt, tokenizer, template)
    first_answer = next(i for i, (_, trainable) in enumerate(segments) if trainable)
    return "".join(text for text, _ in segments[:first_answer])


__all__ = ["LAYOUTS", "ROLES", "CausalRows", "Layout", "Records", "Segment", "chat_template", "check_messages",
           "instruction_prompt", "prompt_text", "render", "render_chat", "resolve_layout"]
