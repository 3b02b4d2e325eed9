"""B: bot.gc_tuning as `serve` applies it once started; A: CPython's defaults, nothing frozen."""

import gc

from bot import gc_tuning

DEFAULT = gc.get_threshold()


def apply() -> None:
    gc_tuning.tune()


def undo() -> None:
    gc.unfreeze()
    gc.set_threshold(*DEFAULT)
