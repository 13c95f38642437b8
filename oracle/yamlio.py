"""Loading untrusted YAML: safe tags only, no aliases, exact numbers, line numbers kept.

Numbers are kept exactly as written (``Decimal``), so an input like ``0.1`` is
rounded once, straight to the evaluated dtype, and never through float64 first.
Mappings and sequences remember the line of each key or item for error messages.
"""

from __future__ import annotations

import re
import sys
from decimal import Decimal

import yaml

MAX_BYTES = 1 << 20


class YamlError(ValueError):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class LineDict(dict):
    """A dict that knows the 1-based line of each of its keys."""

    lines: dict


class LineList(list):
    """A list that knows the 1-based line of each of its items."""

    lines: list


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlError("YAML aliases (*name) are not allowed in case files", event.start_mark.line + 1)
        return super().compose_node(parent, index)

    def construct_object(self, node, deep=False):
        """PyYAML's constructors raise bare ValueError, KeyError, AttributeError... on a tag that does not fit its
        value (`!!int abc`, `!!bool maybe`, `!!timestamp x`, a 4301-digit integer): located here, at the node."""
        try:
            return super().construct_object(node, deep=deep)
        except (YamlError, yaml.YAMLError, RecursionError):
            raise
        except Exception as e:  # noqa: BLE001 - any constructor failure is the file's fault, said with its line
            tag = node.tag.rsplit(":", 1)[-1]
            text = node.value if isinstance(node.value, str) else ""
            shown = repr(text if len(text) <= 40 else text[:40] + "...")
            detail = str(e) if type(e) is ValueError else type(e).__name__
            if "integer string conversion" in detail:  # Python's guard against quadratic int parsing
                detail = f"an integer of more than {sys.get_int_max_str_digits()} digits"
            raise YamlError(f"invalid YAML: {shown} is not a valid !!{tag} value ({detail[:200]})",
                            node.start_mark.line + 1) from None

    def construct_yaml_float(self, node):
        text = self.construct_scalar(node).replace("_", "").lower()
        special = {".inf": "inf", "+.inf": "inf", "-.inf": "-inf", ".nan": "nan"}
        return Decimal(special.get(text, text))

    def construct_yaml_map(self, node):
        data = LineDict()
        data.lines = {}
        yield data
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise YamlError(f"mapping keys must be strings, got {key!r}", key_node.start_mark.line + 1)
            if key in data:
                raise YamlError(f"duplicate key '{key}'", key_node.start_mark.line + 1)
            data[key] = self.construct_object(value_node, deep=True)
            data.lines[key] = key_node.start_mark.line + 1

    def construct_yaml_seq(self, node):
        data = LineList()
        data.lines = [item.start_mark.line + 1 for item in node.value]
        yield data
        data.extend(self.construct_object(item, deep=True) for item in node.value)


_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)
# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-8 as a string because it has no dot.
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in _Loader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read(path) -> str:
    """A case file's text, reading at most MAX_BYTES + 1 bytes: a huge, sparse or endless file
    (a link to /dev/zero) is refused without being read."""
    with open(path, "rb") as stream:
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlError(f"file is larger than {MAX_BYTES} bytes")
    return data.decode("utf-8")


def load(text: str):
    """Parse one YAML document into plain data with LineDict/LineList containers."""
    if len(text.encode()) > MAX_BYTES:
        raise YamlError(f"file is larger than {MAX_BYTES} bytes")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except YamlError:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise YamlError(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise YamlError(f"invalid YAML: {e}") from None
    except RecursionError:
        raise YamlError("invalid YAML: nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - whatever else PyYAML raises is still the file's fault, never a crash
        raise YamlError(f"invalid YAML: {type(e).__name__}: {e}") from None


def line_of(data, path: tuple) -> int | None:
    """The line of the deepest element of `path` that the YAML recorded."""
    line = None
    for key in path:
        lines = getattr(data, "lines", None)
        try:
            line = lines[key] if lines is not None else line
            data = data[key]
        except (KeyError, IndexError, TypeError):
            break
    return line
