"""Experiments: one typed config and one ``run`` function per book chapter.

:data:`EXPERIMENTS` maps each experiment's name to its config class (a run's stored config
reads back typed through :func:`defectlib.config.config_from_dict`); the notebooks under
``book/`` import the module they need and call its ``run``; :mod:`.grid` runs the whole study.
"""

from __future__ import annotations

from ..config import CONFIG_CLASSES
from . import data_chapter, rec004, seg000, seg004
from .data_chapter import DataConfig

#: Every experiment's config class by name (the study's and any defined later).
EXPERIMENTS = CONFIG_CLASSES

__all__ = ["EXPERIMENTS", "DataConfig", "data_chapter", "rec004", "seg000", "seg004"]
