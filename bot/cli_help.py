"""Help layout for `python -m bot --help`: one line per subcommand."""

from __future__ import annotations

import argparse


class OneLineSubcommands(argparse.HelpFormatter):
    """argparse measures subcommand names without their extra indent, so long ones (e.g.
    `teams-package`) wrap onto a line of their own; count the indent so each fits one line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            names = [sub.metavar or sub.dest for sub in action._get_subactions()]
            widest = max((len(str(name)) for name in names), default=0)
            # Subcommands sit two columns deeper than their section.
            self._action_max_length = max(
                self._action_max_length, widest + self._current_indent + self._indent_increment
            )
