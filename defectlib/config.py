"""Typed experiment configurations with named profiles.

Each experiment declares one :class:`ExperimentConfig` subclass: its fields are its
parameters (typed, with no unknown names allowed) and its ``PROFILES`` table gives the values
of the named profiles:

``smoke``
    Synthetic data, tiny images, seconds per notebook: for tests and CI.
``converged``
    The book's default: real data, at reduced resolution where the paper's would not fit a CPU,
    trained until the validation curves flatten (many CPU-hours for the whole study, counted
    in the book's performance chapter; computed once by ``defectlib grid`` and cached).
``paper``
    The papers' resolutions and lengths, meant for a GPU.

A notebook's papermill parameters are ``profile`` plus any field of its config; a parameter
left at ``None`` takes the profile's value. Unknown names and wrong types raise
:class:`~defectlib.errors.ConfigError` at once, with the list of valid names.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .atomic import to_json
from .errors import ConfigError

PROFILE_NAMES = ("smoke", "converged", "paper")
#: The profile the book is built with.
DEFAULT_PROFILE = "converged"


#: Every config class by its ``EXPERIMENT`` name (filled as the classes are defined).
CONFIG_CLASSES: dict[str, type["ExperimentConfig"]] = {}


class ExperimentConfig(BaseModel):
    """Base class: ``profile`` and ``seed``; subclasses add fields and ``PROFILES``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: Name of the experiment, also its folder under the results root.
    EXPERIMENT: ClassVar[str] = ""
    #: Field values of each named profile (fields not named take their defaults).
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {name: {} for name in PROFILE_NAMES}

    profile: str
    #: The seed of the run (at least 0).
    seed: int = Field(default=0, ge=0)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.EXPERIMENT:
            CONFIG_CLASSES[cls.EXPERIMENT] = cls

    @classmethod
    def parameter_names(cls) -> list[str]:
        return sorted(cls.model_fields)

    @classmethod
    def from_profile(cls, profile: str, /, **overrides: Any):
        """The config of ``profile`` with ``overrides`` applied (``None`` = keep the profile's).

        Raises
        ------
        ConfigError
            For an unknown profile or parameter name, or a value of the wrong type.
        """
        if profile not in cls.PROFILES:
            raise ConfigError(
                f"{cls.EXPERIMENT}: unknown profile {profile!r}; choose one of {', '.join(cls.PROFILES)}"
            )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(overrides) - set(cls.model_fields) - {"profile"})
        if unknown:
            raise ConfigError(
                f"{cls.EXPERIMENT}: unknown parameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(cls.parameter_names())}"
            )
        values = {**cls.PROFILES[profile], **overrides, "profile": profile}
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                for err in exc.errors()
            )
            raise ConfigError(f"{cls.EXPERIMENT}: invalid parameter(s): {problems}") from None

    def to_dict(self) -> dict[str, Any]:
        values = self.model_dump(mode="json")
        return {"experiment": self.EXPERIMENT, **values}

    def digest(self) -> str:
        """SHA-256 of the config's canonical JSON."""
        return hashlib.sha256(to_json(self.to_dict()).encode()).hexdigest()


def config_from_dict(values: Mapping[str, Any]) -> ExperimentConfig:
    """The typed config that :meth:`ExperimentConfig.to_dict` wrote (a run's provenance).

    The config class must be defined (its module imported): a run read back through
    :class:`~defectlib.results.Run` always is.

    Examples
    --------
    >>> from defectlib.experiments.seg000 import Seg000Config
    >>> cfg = Seg000Config.from_profile("smoke", dilation=5)
    >>> config_from_dict(cfg.to_dict()) == cfg
    True
    """
    values = dict(values)
    name = values.pop("experiment", None)
    if name not in CONFIG_CLASSES:
        raise ConfigError(f"unknown experiment {name!r} in a stored config (its config class is defined in "
                          f"defectlib.experiments; import it first); known: {', '.join(sorted(CONFIG_CLASSES))}")
    return CONFIG_CLASSES[name](**values)


def notebook_config(cls: type[ExperimentConfig], namespace: Mapping[str, Any], *, before: set[str]):
    """The config a notebook's parameters describe.

    A notebook records ``_before = set(globals())`` in a cell before its ``parameters`` cell;
    every public name defined after that (the parameters cell and papermill's injected cell)
    is a parameter. So a misspelt ``-p dilaton 9`` is an error, not a silently ignored
    variable.

    Examples
    --------
    >>> class Demo(ExperimentConfig):
    ...     EXPERIMENT = "demo"
    ...     PROFILES = {"smoke": {"size": 8}}
    ...     size: int = 1
    >>> ns = {"In": [], "profile": "smoke", "size": None}
    >>> notebook_config(Demo, ns, before={"In"}).size
    8
    >>> notebook_config(Demo, {**ns, "sise": 3}, before={"In"})
    Traceback (most recent call last):
    ...
    defectlib.errors.ConfigError: demo: unknown parameter(s) sise; valid: profile, seed, size
    """
    params = {k: v for k, v in namespace.items() if k not in before and not k.startswith("_")}
    if "profile" not in params:
        raise ConfigError(f"{cls.EXPERIMENT}: the notebook defines no 'profile' parameter")
    profile = params.pop("profile")
    return cls.from_profile(profile, **params)


def profile_differences(cls: type[ExperimentConfig], profile: str, *, reference: str = "paper", **fields: Any):
    """The fields where ``profile`` differs from ``reference``, for one cell (``fields``).

    Returns a two-column table (``profile``, ``reference``) indexed by field name, values as
    text: what a page's numbers were made with against the papers' settings.

    Examples
    --------
    >>> class Demo(ExperimentConfig):
    ...     EXPERIMENT = "demo"
    ...     PROFILES = {"smoke": {"size": 8}, "paper": {"size": 512}}
    ...     size: int = 1
    >>> profile_differences(Demo, "smoke").to_dict("index")
    {'size': {'smoke': '8', 'paper': '512'}}
    """
    import pandas as pd

    mine = cls.from_profile(profile, **fields).to_dict()
    theirs = cls.from_profile(reference, **fields).to_dict()
    keys = [k for k in mine if k != "profile" and mine[k] != theirs.get(k)]
    def text(value: Any) -> str:
        return "not set" if value is None else str(value)

    return pd.DataFrame({profile: {k: text(mine[k]) for k in keys}, reference: {k: text(theirs.get(k)) for k in keys}},
                        index=pd.Index(keys, name="field"))
