"""A YAML syntax error as one line: where it is and what, with a hint for the usual mistake."""

from __future__ import annotations

import yaml


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """`line 2, column 1: a tab (YAML indents with spaces only)`; PyYAML's own text spans
    several lines and quotes an "<unicode string>" nobody wrote."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    problem = (exc.problem or exc.context or "syntax error").strip()
    if "'\\t'" in problem:
        problem = "a tab character (YAML indents with spaces only)"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
