"""Filters over a shard set's index columns (``where: "frames >= 64 and source != 'tgif'"``), so one set of shards
serves several training recipes without re-curating.

The text is parsed with Python's ``ast`` (parsing runs nothing) and only a small grammar is translated into a
``pyarrow.compute`` expression: comparisons (``== != < <= > >=``, chained), ``in`` / ``not in`` a list of
constants, ``is None`` / ``is not None``, ``and`` / ``or`` / ``not``, parentheses, a bare column as a boolean,
and constants (numbers, strings, True/False). Anything else, and any name that is not a column, is an error
that names it."""

from __future__ import annotations

import ast
import operator
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc


class FilterError(ValueError):
    """A ``where`` filter that does not parse, uses something outside the grammar, or names an unknown column."""


_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}  # fmt: skip


def parse_where(text: str, columns: Sequence[str]) -> pc.Expression:
    """The ``pyarrow.compute`` expression of ``text`` over ``columns``; :class:`FilterError` when there is none."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise FilterError(f"where {text!r} does not parse: {e.msg}") from e
    except (RecursionError, MemoryError) as e:  # nested thousands deep
        raise FilterError(f"where {text[:80]!r}...: nested too deeply to parse") from e
    known = set(columns)

    def constant(node: ast.AST) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        negative = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
        inner = node.operand.value if negative and isinstance(node.operand, ast.Constant) else None
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
        raise FilterError(f"where {text!r}: {ast.unparse(node)!r} is not a constant")

    def value(node: ast.AST) -> pc.Expression | object:
        if isinstance(node, ast.Name):
            if node.id not in known:
                raise FilterError(f"where {text!r}: unknown column {node.id!r} (columns: {', '.join(sorted(known))})")
            return pc.field(node.id)
        return constant(node)

    def expr(node: ast.AST) -> pc.Expression:
        if isinstance(node, ast.BoolOp):
            parts = [expr(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if isinstance(node.op, ast.And) else (out | p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~expr(node.operand)
        if isinstance(node, ast.Name):
            return value(node)
        if isinstance(node, ast.Compare):
            out, left = None, node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                term = compare(left, op, right)
                out = term if out is None else out & term
                left = right
            return out
        raise FilterError(f"where {text!r}: {ast.unparse(node)!r} is not a comparison, a column or and/or/not")

    def compare(left: ast.AST, op: ast.cmpop, right: ast.AST) -> pc.Expression:
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                raise FilterError(f"where {text!r}: 'in' needs a list of constants, got {ast.unparse(right)!r}")
            field = value(left)
            if not isinstance(field, pc.Expression):
                raise FilterError(f"where {text!r}: the left side of 'in' must be a column")
            test = field.isin(pa.array([constant(e) for e in right.elts]))
            return ~test if isinstance(op, ast.NotIn) else test
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right, ast.Constant) and right.value is None):
                raise FilterError(f"where {text!r}: 'is' only compares with None")
            field = value(left)
            if not isinstance(field, pc.Expression):
                raise FilterError(f"where {text!r}: the left side of 'is' must be a column")
            return field.is_null() if isinstance(op, ast.Is) else field.is_valid()
        if type(op) not in _COMPARE:
            raise FilterError(f"where {text!r}: unsupported operator {type(op).__name__}")
        a, b = value(left), value(right)
        if not isinstance(a, pc.Expression) and not isinstance(b, pc.Expression):
            raise FilterError(f"where {text!r}: {ast.unparse(left)} and {ast.unparse(right)} are both constants")
        a = a if isinstance(a, pc.Expression) else pc.scalar(a)
        b = b if isinstance(b, pc.Expression) else pc.scalar(b)
        return _COMPARE[type(op)](a, b)

    try:
        return expr(tree.body)
    except FilterError:
        raise
    # Constants Arrow cannot hold (an integer past 64 bits, a lone surrogate, a list of mixed types) and nesting
    # past Python's recursion limit: the filter's own error, never a traceback.
    except (pa.ArrowException, OverflowError, UnicodeError, TypeError, RecursionError, MemoryError) as e:
        raise FilterError(f"where {text[:200]!r} cannot be translated: {type(e).__name__}: {e}") from e


def filter_index(index: pa.Table, where: str | None) -> pa.Table:
    """The rows of ``index`` that ``where`` keeps (all of them for ``None``); a null comparison drops the row."""
    if not where:
        return index
    e = parse_where(where, index.column_names)
    try:
        return index.filter(e)
    except (pa.ArrowException, TypeError) as err:
        raise FilterError(f"where {where!r} cannot be applied to the index: {err}") from err
