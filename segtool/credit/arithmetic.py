"""Arithmetic steps in a worked solution: ``a op b = c`` in plain text and GSM8K's calculator
annotations ``<<a op b=c>>c``, with the left-hand side evaluated (numbers, + - * / x, parentheses,
``$`` and ``%`` only) so a written result can be checked.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass

NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_OPERAND = rf"\(?\$?{NUM}%?\)?"
_OP = r"\s*[-+*/x\u00d7\u00f7]\s*"
# The first operand may not continue a number, an expression or an annotation.
PLAIN_STEP = re.compile(rf"(?<![\w.,<>=+\-*/\u00d7\u00f7])(?P<lhs>{_OPERAND}(?:{_OP}{_OPERAND})+)"
                        rf"\s*=\s*\$?(?P<result>{NUM})(?![\d])")
ANNOTATED_STEP = re.compile(rf"<<(?P<lhs>[^<>=]+)=(?P<result>{NUM})>>(?P<shown>{NUM})?")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Step:
    start: int  # where the step begins in the text
    results: tuple[tuple[int, int], ...]  # spans of the written result (annotated: the annotation's and the shown one)
    written: tuple[float, ...]  # the written result at each of those spans
    value: float | None  # the left-hand side, evaluated (None when it cannot be parsed)
    decimals: int  # decimal places of the written result

    @property
    def tolerance(self) -> float:
        """Half a unit of the last written digit: a rounded result still counts as right."""
        return 0.5 * 10 ** -self.decimals + 1e-9

    @property
    def wrong(self) -> bool:
        if len(set(self.written)) > 1:  # the annotation and the shown result disagree
            return True
        return self.value is not None and abs(self.value - self.written[0]) > self.tolerance


def number(text: str) -> float:
    return float(text.replace(",", ""))


def decimals_of(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def evaluate(expression: str) -> float | None:
    """The value of an arithmetic expression, or None when it is anything else (or divides by 0)."""
    cleaned = expression.replace("$", "").replace(",", "").replace("\u00d7", "*").replace("\u00f7", "/")
    cleaned = re.sub(r"(?<=[\d)\s])x(?=[\s\d(])", "*", cleaned)
    cleaned = re.sub(rf"({NUM})%", r"(\1/100)", cleaned)
    try:
        return _value(ast.parse(cleaned.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None


def _value(node) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left), _value(node.right))
    raise ValueError("not plain arithmetic")


def find_steps(text: str) -> list[Step]:
    """Every arithmetic step of ``text`` in order (annotated steps, then plain ones outside them)."""
    steps, taken = [], []
    for m in ANNOTATED_STEP.finditer(text):
        spans = [m.span("result")] + ([m.span("shown")] if m.group("shown") else [])
        steps.append(Step(m.start(), tuple(spans), tuple(number(text[a:b]) for a, b in spans),
                          evaluate(m.group("lhs")), decimals_of(m.group("result"))))
        taken.append(m.span())
    for m in PLAIN_STEP.finditer(text):
        if any(a < m.end() and m.start() < b for a, b in taken):
            continue
        steps.append(Step(m.start(), (m.span("result"),), (number(m.group("result")),),
                          evaluate(m.group("lhs")), decimals_of(m.group("result"))))
    return sorted(steps, key=lambda s: s.start)


def strip_annotations(text: str) -> str:
    """GSM8K's solution text as a person writes it: ``<<16-3-4=9>>9`` becomes ``9``."""
    return re.sub(r"<<[^<>]*>>", "", text)
