"""Reading YAML files with the line of every value, so errors can name file, line and field.

PyYAML's composed node tree keeps marks; :class:`Section` walks a mapping of it and converts
values on demand, raising :class:`~fireproof.errors.UsageError` with ``file:line: field: why``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import yaml

from fireproof.errors import UsageError
from fireproof.files import CONFIG_LIMIT, read_text


def load_yaml(path: Path, what: str = "YAML file") -> Section:
    text = read_text(path, limit=CONFIG_LIMIT, what=what)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise UsageError(
            f"{path}:{line}: control character U+{exc.character:04X} is not allowed in YAML",
            hint="remove it, or write it as an escape inside double quotes (\\x01)",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UsageError(f"{where}: malformed YAML: {problem}") from None
    if node is None:  # an empty file: no field at all, each error still names line 1
        start = yaml.Mark(str(path), 0, 0, 0, "", 0)
        node = yaml.MappingNode("tag:yaml.org,2002:map", [], start, start)
    return Section(path, node, "")


class Section:
    """A YAML mapping with typed accessors that report where a bad value is."""

    def __init__(self, path: Path, node: yaml.Node, field: str) -> None:
        self.path = path
        self.node = node
        self.field = field
        if not isinstance(node, yaml.MappingNode):
            raise self.error("must be a mapping")
        self._items: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise Section._fail(path, key, field, "keys must be plain strings")
            if str(key.value) in self._items:
                # YAML's last-wins would silently change a setting (method: auto -> delete).
                first = self._items[str(key.value)].start_mark.line + 1
                raise Section._fail(
                    path, key, self._name(str(key.value)), f"duplicate key (first on line {first})"
                )
            self._items[str(key.value)] = value

    @staticmethod
    def _fail(path: Path, node: yaml.Node, field: str, why: str) -> UsageError:
        return UsageError(f"{path}:{node.start_mark.line + 1}: {field or '(top level)'}: {why}")

    def error(self, why: str, key: str | None = None) -> UsageError:
        node = self._items.get(key, self.node) if key is not None and self.has(key) else self.node
        return Section._fail(self.path, node, self._name(key) if key else self.field, why)

    def _name(self, key: str) -> str:
        return f"{self.field}.{key}" if self.field else key

    def has(self, key: str) -> bool:
        return hasattr(self, "_items") and key in self._items

    def fields(self) -> list[str]:
        return list(self._items)

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in self._items:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(f"unknown field (known: {known})", key)

    def _scalar(self, key: str) -> yaml.ScalarNode | None:
        node = self._items.get(key)
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode):
            raise self.error("must be a single value", key)
        if node.tag == "tag:yaml.org,2002:null" or node.value in ("", "~", "null"):
            return None
        return node

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        node = self._scalar(key)
        if node is None:
            if required:
                raise self.error(f"missing required field {self._name(key)!r}")
            return default
        return str(node.value)

    def req_text(self, key: str) -> str:
        value = self.text(key, required=True)
        assert value is not None  # noqa: S101 - required=True raised otherwise
        return value

    def number(
        self, key: str, default: float, *, minimum: float = 0, maximum: float | None = None
    ) -> float:
        node = self._scalar(key)
        if node is None:
            return default
        try:
            value = float(node.value)
        except ValueError:
            raise self.error(f"must be a number, got {node.value!r}", key) from None
        if not math.isfinite(value):
            raise self.error(f"must be a finite number, got {node.value!r}", key)
        if value < minimum:
            raise self.error(f"must be >= {minimum:g}", key)
        if maximum is not None and value > maximum:
            raise self.error(f"must be <= {maximum:g}", key)
        return value

    def integer(
        self, key: str, default: int | None = None, *, minimum: int = 0, maximum: int | None = None
    ) -> int | None:
        node = self._scalar(key)
        if node is None:
            return default
        try:
            value = int(node.value)
        except ValueError:
            raise self.error(f"must be an integer, got {node.value!r}", key) from None
        if value < minimum:
            raise self.error(f"must be >= {minimum}", key)
        if maximum is not None and value > maximum:
            raise self.error(f"must be <= {maximum}", key)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        node = self._scalar(key)
        if node is None:
            return default
        if node.value.lower() in ("true", "yes", "on"):
            return True
        if node.value.lower() in ("false", "no", "off"):
            return False
        raise self.error(f"must be true or false, got {node.value!r}", key)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default) or default
        if value not in choices:
            raise self.error(f"must be one of {', '.join(choices)}; got {value!r}", key)
        return value

    def section(self, key: str) -> Section | None:
        node = self._items.get(key)
        if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
            return None
        return Section(self.path, node, self._name(key))

    def sections(self, key: str) -> Iterator[tuple[str, Section]]:
        """The mapping under ``key`` as (name, section) pairs."""
        outer = self.section(key)
        if outer is None:
            return
        for name in outer.fields():
            inner = outer.section(name)
            if inner is None:
                raise outer.error("must be a mapping", name)
            yield name, inner

    def strings(self, key: str) -> list[str]:
        node = self._items.get(key)
        if node is None:
            return []
        if isinstance(node, yaml.ScalarNode):
            return [str(node.value)]
        if not isinstance(node, yaml.SequenceNode) or not all(
            isinstance(n, yaml.ScalarNode) for n in node.value
        ):
            raise self.error("must be a string or a list of strings", key)
        return [str(n.value) for n in node.value]

    def string_map(self, key: str) -> dict[str, str]:
        inner = self.section(key)
        if inner is None:
            return {}
        return {k: inner.req_text(k) for k in inner.fields()}

    def list_of_sections(self, key: str) -> list[Section]:
        """A sequence of mappings under ``key`` (a single mapping counts as one)."""
        node = self._items.get(key)
        if node is None:
            return []
        if isinstance(node, yaml.MappingNode):
            return [Section(self.path, node, self._name(key))]
        if not isinstance(node, yaml.SequenceNode):
            raise self.error("must be a list of mappings", key)
        return [Section(self.path, n, f"{self._name(key)}[{i}]") for i, n in enumerate(node.value)]
