"""Experiments: one typed config and one ``run`` function per book chapter.

:data:`EXPERIMENTS` maps each experiment's name to its config class; the notebooks under
``book/`` import the module they need and call its ``run``.
"""

from __future__ import annotations

from ..config import ExperimentConfig
from .data_chapter import DataConfig

EXPERIMENTS: dict[str, type[ExperimentConfig]] = {cls.EXPERIMENT: cls for cls in (DataConfig,)}

__all__ = ["EXPERIMENTS", "DataConfig"]
