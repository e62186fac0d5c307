"""The where-language: one small boolean expression syntax for every dbx filter.

``dbx ls --where`` filters experiments with it and ``dbx query ... | where`` filters events, so
users learn one syntax. Identifiers are dotted paths (``params.optimizer.lr``) resolved by a
caller-supplied lookup, which is what lets the same parsed expression run over experiments,
events or captured variables. An expression is parsed once into nested closures, so evaluating
it over many thousands of rows costs a few Python calls per node and no re-parsing.

Semantics (grammar in docs/dbx-expressions.md): a comparison that touches a missing field is
false (so ``not`` of it is true); ``exists(path)`` holds when the field has a non-null value;
numbers compare numerically, strings lexically, booleans only with booleans; comparing values
of different types is false, except ``!=``, which is true. A field name that is not an
identifier (``val-acc``) or is a keyword is written in backticks: ```val-acc` > 0.5``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from squeezr.dbx import scalar
from squeezr.dbx.errors import UserError
from squeezr.dbx.regex import compile_regex
from squeezr.dbx.tokens import ExpressionError, Token, Tokenizer, TokenStream

__all__ = ["MISSING", "Expr", "ExpressionError", "dig", "equal", "mapping_lookup", "parse"]


class _Missing:
    """The type of ``MISSING``: what a lookup returns for a path that does not exist."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()

Lookup = Callable[[str], Any]
_Node = Callable[[Lookup], bool]
# ("path", dotted path), ("literal", value) or ("computed", a function of the lookup)
_Operand = tuple[str, Any]


def dig(value: Any, path: str) -> Any:
    """Follow a dotted ``path`` through nested mappings (and list indices); MISSING if absent."""
    if not path:
        return value
    for key in path.split("."):
        if isinstance(value, Mapping):
            if key not in value:
                return MISSING
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def mapping_lookup(root: Mapping[str, Any]) -> Lookup:
    """A lookup over nested dicts, e.g. ``{"params": {...}, "results": {...}, "kind": "train"}``."""
    return lambda path: dig(root, path)


@dataclass(frozen=True)
class Expr:
    """A parsed expression; ``evaluate`` runs it against one row's ``lookup``."""

    text: str
    _root: _Node
    _paths: frozenset[str]
    _compared: frozenset[str]
    _literals: tuple[tuple[str, str, Any], ...] = ()

    def evaluate(self, lookup: Lookup) -> bool:
        """True if the expression holds; ``lookup(path)`` returns the value or ``MISSING``."""
        return self._root(lookup)

    def paths(self) -> set[str]:
        """Every field path the expression reads (to load or index only what is needed)."""
        return set(self._paths)

    def compared_paths(self) -> set[str]:
        """The paths whose value is used, i.e. all but those only tested with ``exists()``
        (a caller may reject an unknown field in a comparison as a typo, not in ``exists``)."""
        return set(self._compared)

    def literal_comparisons(self) -> list[tuple[str, str, Any]]:
        """``(path, operator, literal)`` for each ``path OP literal`` comparison (a caller may
        warn when a field holds values of another type than the literal it is compared to)."""
        return list(self._literals)

    def __str__(self) -> str:
        return self.text


# -- values and comparisons ----------------------------------------------------------------


def _kind(value: Any) -> str:
    """The comparison class of a value: bools are not numbers, ints and floats are."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "num"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


def equal(a: Any, b: Any) -> bool:
    """Typed equality: 1 == 1.0, but 1 != True and 1 != "1" (JSON values keep their types)."""
    return _kind(a) == _kind(b) and a == b


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """An ordering that only holds between two numbers or two strings."""

    def ordered(a: Any, b: Any) -> bool:
        kind = _kind(a)
        return kind in ("num", "str") and kind == _kind(b) and compare(a, b)

    return ordered


def _contains(a: Any, b: Any) -> bool:
    """``a in b``: membership in a list (typed equality), or substring of a string."""
    if isinstance(b, str):
        return isinstance(a, str) and a in b
    if isinstance(b, (list, tuple)):
        return any(equal(a, item) for item in b)
    return False


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": equal,
    "!=": lambda a, b: not equal(a, b),
    "<": _ordered(lambda a, b: a < b),
    "<=": _ordered(lambda a, b: a <= b),
    ">": _ordered(lambda a, b: a > b),
    ">=": _ordered(lambda a, b: a >= b),
    "in": _contains,
    "not in": lambda a, b: not _contains(a, b),
}
_REGEX_OPS = ("=~", "!~")
_OPERATORS = (*_COMPARE, *_REGEX_OPS)


def _comparison(op: str, left: _Operand, right: _Operand) -> _Node:
    """A closure for ``left op right``; the common ``path op literal`` case reads one field."""
    compare = _COMPARE[op]
    if right[0] == "literal":
        get, value = _getter(left), right[1]

        def against_literal(lookup: Lookup) -> bool:
            a = get(lookup)
            return a is not MISSING and compare(a, value)

        return against_literal
    get_left, get_right = _getter(left), _getter(right)

    def node(lookup: Lookup) -> bool:
        a = get_left(lookup)
        if a is MISSING:
            return False
        b = get_right(lookup)
        return b is not MISSING and compare(a, b)

    return node


def _getter(operand: _Operand) -> Callable[[Lookup], Any]:
    kind, value = operand
    if kind == "path":
        return lambda lookup: lookup(value)
    if kind == "computed":
        return value
    return lambda lookup: value


def _computed(value: Callable[[Lookup], Any]) -> _Operand:
    """A computation as an operand: a result that is not a number (None) is missing."""

    def get(lookup: Lookup) -> Any:
        result = value(lookup)
        return MISSING if result is None else result

    return ("computed", get)


def _arithmetic(first: _Operand, rest: list[tuple[str, _Operand]]) -> _Operand:
    """``first op operand op operand ...``, left to right, flat (no recursion to evaluate)."""
    get_first = _getter(first)
    steps = [(scalar.BINARY[op], _getter(operand)) for op, operand in rest]

    def value(lookup: Lookup) -> Any:
        result = get_first(lookup)
        for apply, get in steps:
            if result is MISSING or result is None:
                return None
            operand = get(lookup)
            result = None if operand is MISSING else apply(result, operand)
        return result

    return _computed(value)


def _applied(function: Callable[[Any], Any], operand: _Operand) -> _Operand:
    get = _getter(operand)
    return _computed(lambda lookup: function(get(lookup)))


def _regex_match(op: str, left: _Operand, pattern: Any) -> _Node:
    wanted = op == "=~"
    search = pattern.search

    get = _getter(left)

    def node(lookup: Lookup) -> bool:
        value = get(lookup)
        if not isinstance(value, str):
            return False
        return (search(value) is not None) == wanted

    return node


def _truthy(operand: _Operand) -> _Node:
    """A bare value as a condition: holds only for boolean ``true``."""
    get = _getter(operand)
    return lambda lookup: get(lookup) is True


def _exists(path: str) -> _Node:
    """Present with a value: absent and stored null are alike (a log table cannot tell them apart)."""

    def node(lookup: Lookup) -> bool:
        value = lookup(path)
        return value is not MISSING and value is not None

    return node


def _negate(inner: _Node) -> _Node:
    return lambda lookup: not inner(lookup)


def _all(parts: list[_Node]) -> _Node:
    if len(parts) == 2:
        first, second = parts
        return lambda lookup: first(lookup) and second(lookup)
    return lambda lookup: all(part(lookup) for part in parts)


def _any(parts: list[_Node]) -> _Node:
    if len(parts) == 2:
        first, second = parts
        return lambda lookup: first(lookup) or second(lookup)
    return lambda lookup: any(part(lookup) for part in parts)


# -- tokens (squeezr.dbx.tokens, shared with computed columns) ----------------------------

_TOKENIZER = Tokenizer(
    (
        *("==", "!=", "<=", ">=", "=~", "!~", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ","),
        *("**", "//", "+", "-", "*", "/", "%"),
    ),
    unexpected="unexpected character {char!r}",
    strings=True,
    rejected={"=": "'=' is not an operator; use '==' to compare"},
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "exists"}
_CONSTANTS = {"true": True, "false": False, "null": None}


def _describe(token: Token) -> str:
    return "end of expression" if token.kind == "end" else repr(token.text)


# -- parser --------------------------------------------------------------------------------


class _Parser(TokenStream):
    """Recursive descent: or > and > not > comparison; each rule returns a closure."""

    def __init__(self, text: str) -> None:
        super().__init__(_TOKENIZER.tokenize(text))
        self.paths: set[str] = set()
        self.compared: set[str] = set()
        self.comparisons: list[tuple[_Operand, str, Any]] = []  # (operand, op, literal)

    def expect(self, text: str, context: str) -> Token:
        if not self.at(text):
            raise ExpressionError(
                self.token.column, f"expected {text!r} {context} (got {_describe(self.token)})"
            )
        return self.advance()

    def parse(self) -> _Node:
        if self.token.kind == "end":
            raise ExpressionError(
                1, "the expression is empty; write a condition such as kind == 'train'"
            )
        node = self.parse_or()
        if self.token.kind != "end":
            raise ExpressionError(
                self.token.column,
                f"unexpected {_describe(self.token)} after a complete condition "
                "(join conditions with 'and' / 'or')",
            )
        return node

    def parse_or(self) -> _Node:
        return self.parse_joined(("or", "||"), self.parse_and, _any)

    def parse_and(self) -> _Node:
        return self.parse_joined(("and", "&&"), self.parse_not, _all)

    def parse_joined(
        self,
        words: tuple[str, ...],
        part: Callable[[], _Node],
        join: Callable[[list[_Node]], _Node],
    ) -> _Node:
        """``part (word part)*``, joined into one node when there are several."""
        parts = [part()]
        while self.at(*words):
            self.advance()
            parts.append(part())
        return parts[0] if len(parts) == 1 else join(parts)

    def parse_not(self) -> _Node:
        if self.at("not", "!"):
            self.advance()
            with self.nested():
                return _negate(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> _Node:
        token = self.token
        if self.at("("):
            comparison = self.parse_grouped_comparison()
            if comparison is not None:
                return comparison
            self.advance()
            with self.nested():
                node = self.parse_or()
            self.expect(")", f"to close the '(' at column {token.column}")
            return node
        if self.at("exists"):
            self.advance()
            self.expect("(", "after 'exists'")
            path = self.token
            if path.kind != "name" or path.text in _KEYWORDS:
                raise ExpressionError(
                    path.column, f"exists() needs a field path (got {_describe(path)})"
                )
            self.advance()
            self.expect(")", "to close exists(")
            self.paths.add(path.value)
            return _exists(path.value)
        left = self.parse_operand(f"expected a condition (got {_describe(token)})")
        op = self.parse_operator()
        if op is None:
            return _truthy(left)
        return self.parse_comparison(left, op)

    def parse_grouped_comparison(self) -> _Node | None:
        """``(1 - x) < 0.2``: a parenthesised computation compared; None (nothing read) if
        the parentheses hold a condition instead, ``(a > 1 or b)``."""
        start, paths, compared = self.index, set(self.paths), set(self.compared)
        try:
            left = self.parse_operand("")
            op = self.parse_operator()
        except ExpressionError:
            op = None
        if op is None:
            self.index, self.paths, self.compared = start, paths, compared
            return None
        return self.parse_comparison(left, op)

    def parse_comparison(self, left: _Operand, op: str) -> _Node:
        """The rest of ``left op ...`` once the operator is read."""
        op_token = self.tokens[self.index - 1]
        if op in _REGEX_OPS:
            return _regex_match(op, left, self.parse_regex(op))
        if op in ("in", "not in") and self.at("["):
            return _comparison(op, left, ("literal", self.parse_list()))
        right = self.parse_operand(
            f"expected a value after {op_token.text!r} (got {_describe(self.token)})"
        )
        if right[0] == "literal":
            self.comparisons.append((left, op, right[1]))
        return _comparison(op, left, right)

    def parse_operator(self) -> str | None:
        if self.at("not") and self.tokens[self.index + 1].text == "in":
            self.index += 2
            return "not in"
        if self.token.kind in ("op", "name") and self.token.text in _OPERATORS:
            return self.advance().text
        return None

    def parse_operand(self, message: str) -> _Operand:
        """A value: a path, a literal, or arithmetic on them (as in computed query columns:
        ``+ - * / // % **``, unary minus, parentheses, abs sqrt exp log log2 log10)."""
        return self.parse_arithmetic(("+", "-"), self.parse_product, message)

    def parse_product(self, message: str) -> _Operand:
        return self.parse_arithmetic(("*", "/", "//", "%"), self.parse_unary, message)

    def parse_arithmetic(
        self, operators: tuple[str, ...], part: Callable[[str], _Operand], message: str
    ) -> _Operand:
        first = part(message)
        rest: list[tuple[str, _Operand]] = []
        while self.token.kind == "op" and self.token.text in operators:
            op = self.advance().text
            rest.append((op, part(f"expected a value after {op!r} (got {_describe(self.token)})")))
        return _arithmetic(first, rest) if rest else first

    def parse_unary(self, message: str) -> _Operand:
        if self.token.kind == "op" and self.token.text in ("-", "+"):
            sign = self.advance().text
            with self.nested():
                inner = self.parse_unary(message)
            if inner[0] == "literal" and type(inner[1]) in (int, float):  # -1 is a number
                return ("literal", -inner[1] if sign == "-" else inner[1])
            return _applied(scalar.negate, inner) if sign == "-" else inner
        base = self.parse_atom(message)
        if self.token.kind == "op" and self.token.text == "**":
            self.advance()
            with self.nested():
                exponent = self.parse_unary(message)
            return _arithmetic(base, [("**", exponent)])
        return base

    def parse_atom(self, message: str) -> _Operand:
        token = self.token
        if self.at("("):
            self.advance()
            with self.nested():
                inner = self.parse_operand(message)
            self.expect(")", f"to close the '(' at column {token.column}")
            return inner
        if token.kind == "name" and token.text not in _KEYWORDS:
            self.advance()
            function = scalar.FUNCTIONS.get(token.text)
            if function is not None and not token.text.startswith("`") and self.at("("):
                self.advance()
                with self.nested():
                    inner = self.parse_operand(message)
                self.expect(")", f"to close {token.text}(")
                return _applied(function, inner)
            self.paths.add(token.value)
            self.compared.add(token.value)
            return ("path", token.value)
        return ("literal", self.parse_literal(message))

    def parse_literal(self, message: str) -> Any:
        token = self.token
        if self.at("-") and self.tokens[self.index + 1].kind == "num":  # a negative number
            self.advance()
            return -self.advance().value
        if token.kind in ("num", "str"):
            self.advance()
            return token.value
        if token.kind == "name" and token.text in _CONSTANTS:
            self.advance()
            return _CONSTANTS[token.text]
        if self.at("["):
            with self.nested():
                return self.parse_list()
        raise ExpressionError(token.column, message)

    def parse_list(self) -> list[Any]:
        opening = self.expect("[", "to start a list")
        items: list[Any] = []
        while not self.at("]"):
            if self.token.kind == "end":
                raise ExpressionError(
                    self.token.column, f"the '[' at column {opening.column} is never closed"
                )
            if items:
                self.expect(",", "between list items")
            items.append(self.parse_literal(f"expected a list item (got {_describe(self.token)})"))
        self.advance()
        return items

    def parse_regex(self, op: str) -> Any:
        token = self.token
        if token.kind != "str":
            raise ExpressionError(
                token.column,
                f"expected a quoted regular expression after {op!r} (got {_describe(token)})",
            )
        self.advance()
        try:
            return compile_regex(token.value)
        except UserError as exc:
            raise ExpressionError(
                token.column, f"invalid regular expression {token.text}: {exc}"
            ) from None


def parse(text: str) -> Expr:
    """Parse ``text`` into an :class:`Expr`; syntax errors are UserErrors naming the column."""
    parser = _Parser(text)
    root = parser.parse()
    literals = tuple(
        (left[1], op, value) for left, op, value in parser.comparisons if left[0] == "path"
    )
    return Expr(text, root, frozenset(parser.paths), frozenset(parser.compared), literals)
