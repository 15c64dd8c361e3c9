"""A small, safe condition language over per-customer feature names.

Conditions are written by people (in ``segments.yaml``) and evaluated on every
event, so the language is deliberately tiny and never touches ``eval``/``exec``
or Python's ``ast``: a hand-written tokenizer and recursive-descent parser
compile the text straight into nested closures.

Grammar (lowest precedence first; keywords are case-insensitive)::

    condition  := or_expr
    or_expr    := and_expr ( "or" and_expr )*
    and_expr   := not_expr ( "and" not_expr )*
    not_expr   := "not" not_expr | "(" condition ")" | test
    test       := operand [ compare_op operand
                          | "in" list | "not" "in" list
                          | "is" "null" | "is" "not" "null" ]
    compare_op := "==" | "!=" | "<" | "<=" | ">" | ">="
    list       := "[" [ literal ( "," literal )* [","] ] "]"
    operand    := name | literal
    name       := feature | "profile" "." field ( "." field )*
    literal    := number | 'single' | "double" | true | false | null

Semantics:

* A missing feature reads as ``null``.
* Any comparison with a ``null`` side is false -- including ``!=``,
  ``in`` and ``not in`` -- except the explicit null tests ``x == null``,
  ``x != null``, ``x is null``, ``x is not null`` (and ``x in [..., null]``).
* Comparing values of incompatible types (``'DE' < 3``) is false, never an error.
* A name on its own is a truthiness test (``null``, ``0``, ``''`` are false).

Examples
--------
>>> cond = compile_condition("revenue_90d >= 1000 and profile.country in ['DE', 'AT']")
>>> cond({"revenue_90d": 1500.0, "profile": {"country": "DE"}})
True
>>> cond({"revenue_90d": None, "profile": {"country": "DE"}})
False
>>> sorted(cond.features_used)
['profile.country', 'revenue_90d']
>>> compile_condition("revenu > 5", known_features=["revenue", "orders"])
Traceback (most recent call last):
  ...
models.conditions.ConditionError: unknown feature 'revenu' at column 1; did you mean 'revenue'?
  revenu > 5
  ^
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = [
    "DICT_FEATURES",
    "MAX_CONDITION_LENGTH",
    "Condition",
    "ConditionError",
    "compile_condition",
]

#: Features whose value is a mapping that may be read with dotted access.
DICT_FEATURES = frozenset({"profile"})
#: Longest condition text accepted, in characters.
MAX_CONDITION_LENGTH = 10_000
_MAX_DEPTH = 64

_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "true", "false", "null"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)
_NUMBER_RE = re.compile(
    r"[-+]?(?:[0-9]+(?:_[0-9]+)*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII
)
_DIGITS = frozenset("0123456789")
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_PYTHONISMS = {"None": "null", "True": "true", "False": "false"}

_Fn = Callable[[Mapping[str, Any]], Any]

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# a OP b  ==  b MIRROR[OP] a
_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class ConditionError(ValueError):
    """A condition could not be compiled.

    ``str(error)`` is the message followed by the offending source line and a
    caret under the column where the problem starts.

    Attributes
    ----------
    message
        What went wrong, including the position ("at column 7").
    text
        The complete condition source.
    position
        0-based offset into ``text``.
    line, column
        1-based line and column of the problem (line is 1 unless the text
        spans several lines).

    Examples
    --------
    >>> try:
    ...     compile_condition("orders >> 2")
    ... except ConditionError as exc:
    ...     print(exc.column, exc.message)
    9 expected a value at column 9, found '>'
    """

    def __init__(self, message: str, text: str, position: int) -> None:
        position = max(0, min(position, len(text)))
        self.text = text
        self.position = position
        self.line = text.count("\n", 0, position) + 1
        line_start = text.rfind("\n", 0, position) + 1
        self.column = position - line_start + 1
        where = f"at column {self.column}"
        if "\n" in text:
            where = f"at line {self.line}, column {self.column}"
        head, _, tail = message.partition("{where}")
        self.message = f"{head}{where}{tail}" if _ else f"{message} {where}"
        line_end = text.find("\n", position)
        source_line = text[line_start : len(text) if line_end < 0 else line_end]
        caret = " " * (self.column - 1) + "^"
        super().__init__(f"{self.message}\n  {source_line}\n  {caret}")


class Condition:
    """A compiled condition: call it with a feature dict to get a ``bool``.

    Attributes
    ----------
    text
        The source text it was compiled from.
    features_used
        The names read, as written (``'profile.country'`` for dotted access);
        used to explain a decision in ``reasons``.
    fn
        The raw compiled closure (returns a truthy value); slightly faster than
        calling the ``Condition`` itself in hot loops.

    Examples
    --------
    >>> c = compile_condition("orders >= 2 or profile.plan == 'pro'")
    >>> c({"orders": 1, "profile": {"plan": "pro"}}), c({"orders": 1, "profile": {}})
    (True, False)
    >>> c.explain({"orders": 1, "profile": {"plan": "pro"}})
    ['orders = 1', "profile.plan = 'pro'"]
    """

    __slots__ = ("features_used", "fn", "text")

    def __init__(self, text: str, fn: _Fn, features_used: frozenset[str]) -> None:
        self.text = text
        self.fn = fn
        self.features_used = features_used

    def __call__(self, features: Mapping[str, Any]) -> bool:
        return bool(self.fn(features))

    def explain(self, features: Mapping[str, Any]) -> list[str]:
        """Return ``'name = value'`` for every feature used, sorted by name."""
        return [f"{name} = {_read(features, name)!r}" for name in sorted(self.features_used)]

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"


def _read(features: Mapping[str, Any], dotted: str) -> Any:
    value: Any = features
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


# --------------------------------------------------------------------------- tokens

_NUM, _STR, _NAME, _KW, _OP, _PUNCT, _EOF = "number", "string", "name", "kw", "op", "punct", "eof"


class _Token:
    __slots__ = ("kind", "pos", "raw", "value")

    def __init__(self, kind: str, value: Any, pos: int, raw: str) -> None:
        self.kind = kind
        self.value = value
        self.pos = pos
        self.raw = raw

    def describe(self) -> str:
        return "end of condition" if self.kind == _EOF else repr(self.raw)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        start = i
        if c in "()[],":
            tokens.append(_Token(_PUNCT, c, i, c))
            i += 1
        elif c in "=!<>":
            two = text[i : i + 2]
            if two in ("==", "!=", "<=", ">="):
                tokens.append(_Token(_OP, two, i, two))
                i += 2
            elif c in "<>":
                tokens.append(_Token(_OP, c, i, c))
                i += 1
            elif c == "=":
                raise ConditionError("unexpected '=' {where}; use '==' to test equality", text, i)
            else:
                raise ConditionError("unexpected '!' {where}; use 'not' or '!='", text, i)
        elif c in "'\"":
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise ConditionError("unterminated string starting {where}", text, start)
                ch = text[i]
                if ch == c:
                    i += 1
                    break
                if ch == "\\":
                    nxt = text[i + 1] if i + 1 < n else ""
                    if nxt not in _ESCAPES:
                        raise ConditionError(
                            "invalid escape {where}; allowed: \\\\ \\' \\\" \\n \\t", text, i
                        )
                    chars.append(_ESCAPES[nxt])
                    i += 2
                    continue
                chars.append(ch)
                i += 1
            tokens.append(_Token(_STR, "".join(chars), start, text[start:i]))
        elif c in _DIGITS or (
            c in "-+." and i + 1 < n and (text[i + 1] in _DIGITS or text[i + 1] == ".")
        ):
            m = _NUMBER_RE.match(text, i)
            if m is None:
                raise ConditionError("invalid number {where}", text, i)
            raw = m.group()
            i = m.end()
            if i < n and (text[i] in _IDENT_CHARS or text[i] == "."):
                raise ConditionError("invalid number {where}", text, start)
            try:
                is_float = any(ch in raw for ch in ".eE")
                value: Any = float(raw) if is_float else int(raw)
            except ValueError:
                raise ConditionError("invalid number {where}", text, start) from None
            tokens.append(_Token(_NUM, value, start, raw))
        elif c in _IDENT_CHARS:
            m = _NAME_RE.match(text, i)
            if m is None:  # a digit-led name is caught above; defensive only
                raise ConditionError("unexpected character {where}", text, i)
            raw = m.group()
            i = m.end()
            if i < n and text[i] == ".":
                raise ConditionError("expected a field name after '.' {where}", text, i + 1)
            if any(part.startswith("_") for part in raw.split(".")):
                raise ConditionError(
                    f"name {raw!r} {{where}} is not allowed (names may not start with '_')",
                    text,
                    start,
                )
            lowered = raw.lower()
            if lowered in _KEYWORDS:
                tokens.append(_Token(_KW, lowered, start, raw))
            else:
                tokens.append(_Token(_NAME, raw, start, raw))
        elif c in "&|":
            word = "and" if c == "&" else "or"
            raise ConditionError(f"unexpected {c!r} {{where}}; use '{word}'", text, i)
        else:
            raise ConditionError(f"unexpected character {c!r} {{where}}", text, i)
    tokens.append(_Token(_EOF, None, n, ""))
    return tokens


# --------------------------------------------------------------------------- parser


class _Name:
    __slots__ = ("path", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.path = tuple(text.split("."))


class _Literal:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_Operand = _Name | _Literal


def _getter(name: _Name) -> _Fn:
    path = name.path
    if len(path) == 1:
        key = path[0]
        return lambda f: f.get(key)
    if len(path) == 2:
        head, field = path

        def get2(f: Mapping[str, Any]) -> Any:
            inner = f.get(head)
            return inner.get(field) if isinstance(inner, Mapping) else None

        return get2

    def get_deep(f: Mapping[str, Any]) -> Any:
        value: Any = f
        for part in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get_deep


def _value_fn(operand: _Operand) -> _Fn:
    if isinstance(operand, _Name):
        return _getter(operand)
    value = operand.value
    return lambda f: value


def _compare(op: str, left: _Operand, right: _Operand) -> _Fn:
    if isinstance(left, _Literal) and isinstance(right, _Name):
        left, right, op = right, left, _MIRROR[op]
    opf = _COMPARE[op]
    if isinstance(left, _Name) and isinstance(right, _Literal) and len(left.path) == 1:
        # The hot path: feature OP literal.
        key = left.path[0]
        lit = right.value

        def cmp_name_lit(f: Mapping[str, Any]) -> Any:
            v = f.get(key)
            if v is None:
                return False
            try:
                return opf(v, lit)
            except TypeError:
                return False

        return cmp_name_lit
    get_left = _value_fn(left)
    get_right = _value_fn(right)

    def cmp_general(f: Mapping[str, Any]) -> Any:
        a = get_left(f)
        if a is None:
            return False
        b = get_right(f)
        if b is None:
            return False
        try:
            return opf(a, b)
        except TypeError:
            return False

    return cmp_general


def _null_test(operand: _Operand, want_null: bool) -> _Fn:
    if isinstance(operand, _Literal):
        result = (operand.value is None) == want_null
        return lambda f: result
    get = _getter(operand)
    if want_null:
        return lambda f: get(f) is None
    return lambda f: get(f) is not None


def _membership(operand: _Operand, values: list[Any], negate: bool) -> _Fn:
    has_null = any(v is None for v in values)
    members = frozenset(v for v in values if v is not None)
    get = _value_fn(operand)
    if negate:

        def not_in(f: Mapping[str, Any]) -> bool:
            v = get(f)
            if v is None:
                return False
            try:
                return v not in members
            except TypeError:
                return False

        return not_in

    def is_in(f: Mapping[str, Any]) -> bool:
        v = get(f)
        if v is None:
            return has_null
        try:
            return v in members
        except TypeError:
            return False

    return is_in


def _truthy(operand: _Operand) -> _Fn:
    get = _getter(operand) if isinstance(operand, _Name) else _value_fn(operand)

    def truthy(f: Mapping[str, Any]) -> bool:
        try:
            return bool(get(f))
        except Exception:  # an exotic value with a failing __bool__
            return False

    return truthy


def _all(fns: list[_Fn]) -> _Fn:
    if len(fns) == 2:
        a, b = fns
        return lambda f: a(f) and b(f)
    if len(fns) == 3:
        a, b, c = fns
        return lambda f: a(f) and b(f) and c(f)
    parts = tuple(fns)

    def all_of(f: Mapping[str, Any]) -> bool:
        for g in parts:  # noqa: SIM110 - a plain loop is faster than all(genexpr)
            if not g(f):
                return False
        return True

    return all_of


def _any(fns: list[_Fn]) -> _Fn:
    if len(fns) == 2:
        a, b = fns
        return lambda f: a(f) or b(f)
    if len(fns) == 3:
        a, b, c = fns
        return lambda f: a(f) or b(f) or c(f)
    parts = tuple(fns)

    def any_of(f: Mapping[str, Any]) -> bool:
        for g in parts:  # noqa: SIM110 - a plain loop is faster than any(genexpr)
            if g(f):
                return True
        return False

    return any_of


class _Parser:
    def __init__(self, text: str, known: frozenset[str] | None) -> None:
        self.text = text
        self.known = known
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.used: set[str] = set()

    # helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != _EOF:
            self.i += 1
        return tok

    def is_kw(self, word: str, offset: int = 0) -> bool:
        tok = self.tokens[min(self.i + offset, len(self.tokens) - 1)]
        return tok.kind == _KW and tok.value == word

    def error(self, message: str, tok: _Token | None = None) -> ConditionError:
        tok = tok or self.tok
        return ConditionError(message, self.text, tok.pos)

    def unexpected(self, expected: str) -> ConditionError:
        tok = self.tok
        if tok.kind == _PUNCT and tok.value == "(" and self.i > 0:
            prev = self.tokens[self.i - 1]
            if prev.kind == _NAME:
                return self.error("function calls are not supported {where}")
        return self.error(f"expected {expected} {{where}}, found {tok.describe()}")

    # grammar
    def parse(self) -> _Fn:
        if self.tok.kind == _EOF:
            raise self.error("empty condition {where}")
        fn = self.or_expr()
        if self.tok.kind != _EOF:
            raise self.unexpected("'and', 'or' or the end of the condition")
        return fn

    def or_expr(self) -> _Fn:
        parts = [self.and_expr()]
        while self.is_kw("or"):
            self.next()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else _any(parts)

    def and_expr(self) -> _Fn:
        parts = [self.not_expr()]
        while self.is_kw("and"):
            self.next()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else _all(parts)

    def not_expr(self) -> _Fn:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error("condition nested too deeply {where}")
        try:
            if self.is_kw("not"):
                self.next()
                inner = self.not_expr()
                return lambda f: not inner(f)
            tok = self.tok
            if tok.kind == _PUNCT and tok.value == "(":
                self.next()
                fn = self.or_expr()
                if not (self.tok.kind == _PUNCT and self.tok.value == ")"):
                    raise self.unexpected("')'")
                self.next()
                if self.tok.kind == _OP or self.is_kw("in") or self.is_kw("is"):
                    raise self.error(
                        "a parenthesised condition cannot be compared {where}; "
                        "compare a feature instead"
                    )
                return fn
            return self.test()
        finally:
            self.depth -= 1

    def test(self) -> _Fn:
        left_tok = self.tok
        left = self.operand()
        tok = self.tok
        if tok.kind == _OP:
            self.next()
            right_tok = self.tok
            right = self.operand()
            for side, side_tok in ((left, left_tok), (right, right_tok)):
                if (
                    isinstance(side, _Literal)
                    and side.value is None
                    and tok.value
                    not in (
                        "==",
                        "!=",
                    )
                ):
                    raise self.error(
                        f"null cannot be compared with {tok.value!r} {{where}}; "
                        "use 'is null' / 'is not null'",
                        side_tok,
                    )
            if isinstance(right, _Literal) and right.value is None:
                return _null_test(left, tok.value == "==")
            if isinstance(left, _Literal) and left.value is None:
                return _null_test(right, tok.value == "==")
            return _compare(tok.value, left, right)
        if self.is_kw("in"):
            self.next()
            return _membership(left, self.literal_list(), negate=False)
        if self.is_kw("not") and self.is_kw("in", 1):
            self.next()
            self.next()
            return _membership(left, self.literal_list(), negate=True)
        if self.is_kw("is"):
            self.next()
            negate = False
            if self.is_kw("not"):
                self.next()
                negate = True
            if not self.is_kw("null"):
                raise self.unexpected("'null' after 'is'" if not negate else "'null'")
            self.next()
            return _null_test(left, want_null=not negate)
        if isinstance(left, _Literal) and not isinstance(left.value, bool):
            raise self.error(
                "a literal on its own is not a condition {where}; compare it with a feature",
                left_tok,
            )
        return _truthy(left)

    def operand(self) -> _Operand:
        tok = self.tok
        if tok.kind == _NAME:
            self.next()
            self.check_name(tok)
            self.used.add(tok.value)
            return _Name(tok.value)
        if tok.kind in (_NUM, _STR) or (tok.kind == _KW and tok.value in ("true", "false", "null")):
            return _Literal(self.literal())
        raise self.unexpected("a value")

    def literal(self) -> Any:
        tok = self.next()
        if tok.kind in (_NUM, _STR):
            return tok.value
        if tok.kind == _KW and tok.value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[tok.value]
        self.i -= 1
        raise self.unexpected("a literal (number, string, true, false or null)")

    def literal_list(self) -> list[Any]:
        tok = self.tok
        if not (tok.kind == _PUNCT and tok.value == "["):
            raise self.unexpected("'[' to start a list")
        self.next()
        values: list[Any] = []
        while not (self.tok.kind == _PUNCT and self.tok.value == "]"):
            values.append(self.literal())
            if self.tok.kind == _PUNCT and self.tok.value == ",":
                self.next()
            elif not (self.tok.kind == _PUNCT and self.tok.value == "]"):
                raise self.unexpected("',' or ']'")
        self.next()
        return values

    def check_name(self, tok: _Token) -> None:
        name: str = tok.value
        head, dot, _ = name.partition(".")
        if name in _PYTHONISMS:
            raise self.error(
                f"unknown name {name!r} {{where}}; did you mean '{_PYTHONISMS[name]}'?", tok
            )
        if self.known is not None and head not in self.known:
            hint = difflib.get_close_matches(head, sorted(self.known), n=1, cutoff=0.6)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise self.error(f"unknown feature {head!r} {{where}}{suffix}", tok)
        if dot and head not in DICT_FEATURES:
            allowed = ", ".join(sorted(DICT_FEATURES))
            raise self.error(
                f"feature {head!r} has no fields {{where}}; dotted access works on: {allowed}",
                tok,
            )


def compile_condition(text: str, known_features: Collection[str] | None = None) -> Condition:
    """Compile ``text`` into a :class:`Condition`.

    Parameters
    ----------
    text
        The condition source (see the module docstring for the grammar).
    known_features
        Feature names that exist; an unknown name is a :class:`ConditionError`
        with a spelling suggestion. ``None`` accepts any name (missing ones read
        as ``null``). Fields of ``profile`` are never checked: profiles are open.

    Raises
    ------
    ConditionError
        For any lexical, syntax or name error -- never another exception type.

    Examples
    --------
    >>> c = compile_condition("not (orders > 3 or revenue >= 100) and top_category is not null")
    >>> c({"orders": 1, "revenue": 20.0, "top_category": "toys"})
    True
    >>> c({"orders": 1, "revenue": 20.0})
    False
    >>> compile_condition("nps_category != 'detractor'")({"nps_category": None})
    False
    >>> try:
    ...     compile_condition("__import__('os')")
    ... except ConditionError as exc:
    ...     print(exc)
    name '__import__' at column 1 is not allowed (names may not start with '_')
      __import__('os')
      ^
    """
    if not isinstance(text, str):
        raise ConditionError("a condition must be a string", repr(text), 0)
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(
            f"condition longer than {MAX_CONDITION_LENGTH} characters {{where}}",
            text[:80],
            0,
        )
    known = None if known_features is None else frozenset(known_features)
    parser = _Parser(text, known)
    fn = parser.parse()
    return Condition(text, fn, frozenset(parser.used))
