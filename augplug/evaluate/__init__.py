"""Evaluation of frozen representations: multi-task linear probes and test-time feature averaging."""

from augplug.evaluate.averaging import *  # noqa: F403
from augplug.evaluate.averaging import __all__ as _averaging_all
from augplug.evaluate.probes import *  # noqa: F403
from augplug.evaluate.probes import __all__ as _probes_all

__all__ = [*_averaging_all, *_probes_all]
