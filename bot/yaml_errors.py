"""A YAML syntax error as one line: where it is and what, with a hint for the usual mistake;
and the loader that refuses a key given twice in one mapping."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError

_MERGE = "tag:yaml.org,2002:merge"


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in a mapping: a second `sla:` block pasted
    below the first, or a `technician: false` under an earlier `technician: true`, silently
    replaced what the operator reads first. Refused, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:  # `<<: *base` may be overridden key by key
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable: the base class says so
                    continue
                if first is not key_node:
                    raise ConstructorError(
                        None,
                        None,
                        f"key {key!r} is given twice (first on line {first.start_mark.line + 1}),"
                        " and only the last one would count: keep one",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, refusing a key given twice in one mapping (a yaml.YAMLError)."""
    return yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader: builds no Python objects


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """`line 2, column 1: a tab (YAML indents with spaces only)`; PyYAML's own text spans
    several lines and quotes an "<unicode string>" nobody wrote."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    problem = (exc.problem or exc.context or "syntax error").strip()
    if exc.context and problem.startswith("but "):
        # Half a sentence alone (`but found another document`): the context says what was
        # expected (`expected a single document in the stream`).
        problem = f"{exc.context.strip()}, {problem}"
    if "'\\t'" in problem:
        problem = "a tab character (YAML indents with spaces only)"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
