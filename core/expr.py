"""A small, safe expression language for ``where`` criteria.

Grammar (never evaluated as Python, nor through ``DataFrame.query``/``eval``)::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := operand (OP operand | ["not"] "in" list | "is" ["not"] "missing")?
                | "(" expr ")"
    operand    := column | number | 'string' | "string" | true | false
    list       := ("[" | "(") literal ("," literal)* ("]" | ")")
    OP         := == != < <= > >=

A column is a name (letters, digits, _) or a name in backticks. A comparison involving a missing
value is false; test ``x is missing`` explicitly. A string compared with a date column is read as
a YYYY-MM-DD date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecError, suggest

_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?)|(?P<string>'[^']*'|\"[^\"]*\")|(?P<op>==|!=|<=|>=|<|>)"
    r"|(?P<punct>[()\[\],])|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<quoted>`[^`]+`))"
)
KEYWORDS = {"and", "or", "not", "in", "is", "missing", "true", "false"}


MAX_NUMBER_DIGITS = 30  # more is a typo or an attack (Python refuses int() of 4,300+ digits)


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple


class Expression:
    """A parsed ``where`` expression; ``evaluate(frame)`` gives a boolean mask."""

    def __init__(self, text: str, path: str):
        self.text, self.path = text, path
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.tree = self._or()
        if self.pos != len(self.tokens):
            self._error(f"unexpected '{self.tokens[self.pos][1]}'")

    def __repr__(self) -> str:
        return self.text

    # -- parsing
    def _error(self, message: str) -> None:
        shown = self.text if len(self.text) <= 120 else self.text[:100] + f"... ({len(self.text):,} characters)"
        raise SpecError(self.path, f"invalid expression {shown!r}: {message}")

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        text = text.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                self._error(f"cannot read from position {pos + 1}: {text[pos:pos + 10]!r}")
            kind = match.lastgroup
            tokens.append((kind, match.group(kind)))
            pos = match.end()
        if not tokens:
            self._error("empty expression")
        return tokens

    def _peek(self, value: str | None = None) -> bool:
        if self.pos >= len(self.tokens):
            return False
        kind, text = self.tokens[self.pos]
        return value is None or (text.lower() == value if kind == "name" else text == value)

    def _take(self, value: str) -> None:
        if not self._peek(value):
            got = self.tokens[self.pos][1] if self.pos < len(self.tokens) else "end of expression"
            self._error(f"expected '{value}', got '{got}'")
        self.pos += 1

    def _or(self) -> Any:
        node = self._and()
        while self._peek("or"):
            self.pos += 1
            node = Node("or", (node, self._and()))
        return node

    def _and(self) -> Any:
        node = self._not()
        while self._peek("and"):
            self.pos += 1
            node = Node("and", (node, self._not()))
        return node

    def _not(self) -> Any:
        if self._peek("not"):
            self.pos += 1
            return Node("not", (self._not(),))
        return self._comparison()

    def _comparison(self) -> Any:
        if self._peek("("):
            self.pos += 1
            node = self._or()
            self._take(")")
            return node
        left = self._operand()
        if self.pos >= len(self.tokens):
            self._error("expected a comparison such as == 'value', in [...] or is missing")
        kind, text = self.tokens[self.pos]
        if kind == "op":
            self.pos += 1
            return Node(text, (left, self._operand()))
        if self._peek("is"):
            self.pos += 1
            negate = self._peek("not")
            if negate:
                self.pos += 1
            self._take("missing")
            node = Node("missing", (left,))
            return Node("not", (node,)) if negate else node
        negate = self._peek("not")
        if negate:
            self.pos += 1
        if self._peek("in"):
            self.pos += 1
            node = Node("in", (left, self._list()))
            return Node("not", (node,)) if negate else node
        self._error(f"expected a comparison operator after '{self.tokens[self.pos - 1][1]}', got '{text}'")

    def _list(self) -> Literal:
        if not (self._peek("[") or self._peek("(")):
            self._error("expected a list such as ['a', 'b'] after 'in'")
        close = "]" if self._peek("[") else ")"
        self.pos += 1
        values = [self._literal()]
        while self._peek(","):
            self.pos += 1
            values.append(self._literal())
        self._take(close)
        return Literal(tuple(v.value for v in values))

    def _literal(self) -> Literal:
        node = self._operand()
        if not isinstance(node, Literal):
            self._error("lists may hold only literals")
        return node

    def _operand(self) -> Any:
        if self.pos >= len(self.tokens):
            self._error("unexpected end of expression")
        kind, text = self.tokens[self.pos]
        self.pos += 1
        if kind == "number":
            digits = sum(c.isdigit() for c in text)
            if digits > MAX_NUMBER_DIGITS:
                self._error(f"a number of {digits} digits ({text[:12]}...); numbers in expressions have at most {MAX_NUMBER_DIGITS} digits")
            return Literal(float(text) if "." in text else int(text))
        if kind == "string":
            return Literal(text[1:-1])
        if kind == "quoted":
            return Column(text[1:-1])
        if kind == "name":
            low = text.lower()
            if low in ("true", "false"):
                return Literal(low == "true")
            if low in KEYWORDS:
                self._error(f"unexpected keyword '{text}'")
            return Column(text)
        self._error(f"unexpected '{text}'")

    # -- evaluation
    def columns(self) -> set[str]:
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, Column):
                found.add(node.name)
            elif isinstance(node, Node):
                for arg in node.args:
                    walk(arg)

        walk(self.tree)
        return found

    def evaluate(self, frame: pd.DataFrame) -> pd.Series:
        for name in self.columns():
            if name not in frame.columns:
                visible = [c for c in frame.columns if not str(c).startswith("_")]
                raise SpecError(self.path, f"unknown column '{name}'{suggest(name, visible)}; columns: {', '.join(map(str, visible))}")
        result = self._eval(self.tree, frame)
        return pd.Series(np.asarray(result, dtype=bool), index=frame.index)

    def _value(self, node: Any, frame: pd.DataFrame, other: Any = None) -> Any:
        if isinstance(node, Column):
            return frame[node.name]
        value = node.value
        if isinstance(other, Column) and isinstance(value, str) and pd.api.types.is_datetime64_any_dtype(frame[other.name]):
            try:
                return pd.Timestamp(value)
            except ValueError:
                self._error(f"'{value}' is not a date YYYY-MM-DD (column '{other.name}' holds dates)")
        return value

    def _eval(self, node: Any, frame: pd.DataFrame) -> np.ndarray:
        op = node.op if isinstance(node, Node) else None
        if op == "or":
            return self._eval(node.args[0], frame) | self._eval(node.args[1], frame)
        if op == "and":
            return self._eval(node.args[0], frame) & self._eval(node.args[1], frame)
        if op == "not":
            return ~self._eval(node.args[0], frame)
        if op == "missing":
            value = self._value(node.args[0], frame)
            return np.asarray(pd.isna(value), dtype=bool) if isinstance(value, pd.Series) else np.full(len(frame), pd.isna(value))
        if op == "in":
            left = self._value(node.args[0], frame)
            options = list(node.args[1].value)
            if isinstance(left, pd.Series):
                return left.isin(options).fillna(False).to_numpy(dtype=bool)
            return np.full(len(frame), left in options)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            left = self._value(node.args[0], frame, node.args[1])
            right = self._value(node.args[1], frame, node.args[0])
            try:
                result = {
                    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
                    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
                }[op](left, right)
            except TypeError:
                self._error(f"cannot compare {node.args[0]} with {node.args[1]} (different types)")
            mask = pd.Series(result, index=frame.index) if not isinstance(result, pd.Series) else result
            missing = np.zeros(len(frame), dtype=bool)
            for side in (left, right):
                if isinstance(side, pd.Series):
                    missing |= side.isna().to_numpy()
            return mask.fillna(False).to_numpy(dtype=bool) & ~missing
        self._error("cannot evaluate")
        return np.zeros(len(frame), dtype=bool)
