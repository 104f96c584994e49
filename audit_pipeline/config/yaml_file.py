"""Reading the YAML configuration file strictly: UTF-8 only, no duplicate keys, errors by position.

Why strict: YAML silently keeps the last of two equal keys, so a second ``retention:``
section once dropped ``legal_hold: true``.  Errors name the line, the column and the key
path, never the line's text, which may hold an inline secret.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from audit_pipeline.core.errors import ConfigError

_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<items>(?:-\s+)*)(?P<key>\"[^\"]*\"|'[^']*'|[^\s#:\"'\-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s|$)")
_ITEM_LINE = re.compile(r"^(?P<indent>\s*)-(?:\s|$)")


def key_path_at(text: str, line: int) -> str:
    """The dotted key path (``sinks.webhooks[0].secret``) in effect at 1-based ``line``, from indentation.

    A best effort for messages only: it reads block-style YAML as people write configuration."""
    stack: list[tuple[int, str, list[int]]] = []  # (indent, name, [items seen below it])
    for raw in text.splitlines()[:line]:
        stripped = raw.split(" #", 1)[0].rstrip()
        if not stripped.strip() or stripped.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        match = _KEY_LINE.match(stripped)
        item = _ITEM_LINE.match(stripped)
        if item:
            while stack and stack[-1][0] >= indent and not stack[-1][1].startswith("["):
                stack.pop()
            while stack and stack[-1][0] >= indent and stack[-1][1].startswith("["):
                stack.pop()
            if stack:
                counter = stack[-1][2]
                counter[0] += 1
                stack.append((indent, f"[{counter[0]}]", [-1]))
            if match:
                key_indent = indent + len(match.group("items"))
                stack.append((key_indent, match.group("key").strip("\"'"), [-1]))
            continue
        if match:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group("key").strip("\"'"), [-1]))
    path = ""
    for _, name, _ in stack:
        path += name if name.startswith("[") or not path else f".{name}"
    return path or "(top level)"


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping, naming both lines."""

    source_text = ""
    source_name = ""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor explains it
            line = key_node.start_mark.line + 1
            if first is not None:
                where = key_path_at(self.source_text, line)
                raise ConfigError(
                    f"{self.source_name}: key '{where}' is given twice, at lines {first} and {line}; "
                    "YAML would silently keep only the last one, so remove or merge one of them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:  # type: ignore[override]
        """A date-like value that is no calendar day (``2024-13-45``) stays text, so the setting
        that reads it can say which key is wrong instead of the YAML parser failing."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictLoader.construct_yaml_timestamp)
_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_yaml_map)  # type: ignore[type-var]


def read_yaml(path: Path) -> Any:
    """The parsed file, or :class:`ConfigError` with line, column and key of the first problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror or type(exc).__name__}") from None
    return parse_yaml(data, str(path))


def parse_yaml(data: bytes, name: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        where = key_path_at(data.decode("utf-8", errors="replace"), line)
        raise ConfigError(
            f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column} (key '{where}'); save the file as UTF-8"
        ) from None
    loader = _StrictLoader(text)
    loader.source_text, loader.source_name = text, name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = (exc.problem or exc.context or "syntax error").strip()
        raise ConfigError(f"{name}: invalid YAML at line {line}, column {column} (key '{key_path_at(text, line)}'): {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML ({type(exc).__name__})") from None
    finally:
        loader.dispose()
