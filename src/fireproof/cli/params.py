"""Parameter types that refuse what would otherwise slip through: nan and inf where a number of
seconds is meant (`nan > 1` is False, so a range check alone lets it pass), and node or
namespace names that are not RFC 1123 (they end up in API URLs)."""

from __future__ import annotations

import math
import re
from typing import Any

import click

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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
    pattern = _SUBDOMAIN
    max_length = 253
    what = "node name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if len(text) > self.max_length or not self.pattern.match(text):
            shown = text.encode("unicode_escape").decode("ascii")
            self.fail(
                f"{shown!r} is not a valid {self.what} (RFC 1123: lower-case letters, digits, "
                f"'-'{', and dots' if self.pattern is _SUBDOMAIN else ''}; at most "
                f"{self.max_length} characters)",
                param,
                ctx,
            )
        return text


class NodeName(_Rfc1123):
    name = "node"


class NamespaceName(_Rfc1123):
    name = "namespace"
    pattern = _LABEL
    max_length = 63
    what = "namespace name"


NODE = NodeName()
NAMESPACE = NamespaceName()
