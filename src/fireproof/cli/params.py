"""Parameter types that refuse what would otherwise slip through: nan and inf where a number of
seconds is meant (`nan > 1` is False, so a range check alone lets it pass), and node or
namespace names that are not RFC 1123 (they end up in API URLs)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

from fireproof.names import is_namespace_name, is_node_name


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not math.isfinite(_float_or_zero(value)):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(value, param, ctx)


def _float_or_zero(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0  # not a number at all: FloatRange says so in its own words


class _Rfc1123(click.ParamType[str, Any]):
    valid: Callable[[str], bool] = staticmethod(is_node_name)
    what = "node name"
    rule = "lower-case letters, digits, '-', and dots; at most 253 characters"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not self.valid(text):
            shown = text.encode("unicode_escape").decode("ascii")
            self.fail(f"{shown!r} is not a valid {self.what} (RFC 1123: {self.rule})", param, ctx)
        return text


class NodeName(_Rfc1123):
    name = "node"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from fireproof.cli.completion import node_names

        return [CompletionItem(n) for n in node_names(ctx) if n.startswith(incomplete)]


class NamespaceName(_Rfc1123):
    name = "namespace"
    valid = staticmethod(is_namespace_name)
    what = "namespace name"
    rule = "lower-case letters, digits, '-'; at most 63 characters"


NODE = NodeName()
NAMESPACE = NamespaceName()
