"""Tests for defectlib.config: profiles, overrides, strict validation, frozen configs,
notebook parameters, the data chapter's DataConfig, digests and the doctests."""

import doctest
from typing import Any, ClassVar

import pydantic
import pytest

import defectlib.config
from defectlib.config import DEFAULT_PROFILE, PROFILE_NAMES, ExperimentConfig, notebook_config
from defectlib.errors import ConfigError, DefectlibError
from defectlib.experiments.data_chapter import DataConfig


class ToyConfig(ExperimentConfig):
    """A small config with one field of each kind the experiments use."""

    EXPERIMENT: ClassVar[str] = "toy"
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 1, "lr": 0.1, "backbone": "tiny", "size": [16, 16]},
        "converged": {"epochs": 5, "lr": 0.01, "backbone": "resnet18", "size": [64, 64]},
        "paper": {"epochs": 100, "lr": 0.001, "backbone": "resnet50", "size": [512, 1408]},
    }

    epochs: int = 2
    lr: float = 0.5
    backbone: str = "default"
    size: list[int] = [8, 8]
    batch: int = 4  # in no profile: always its default unless overridden


TOY_FIELDS = ["backbone", "batch", "epochs", "lr", "profile", "seed", "size"]

# A namespace as a Jupyter kernel has it before the notebook's `_before = set(globals())`.
KERNEL_NAMES = {
    "__name__": "__main__",
    "__builtins__": object(),
    "_ih": [],
    "_oh": {},
    "_": None,
    "In": ["", "import numpy as np"],
    "Out": {},
    "get_ipython": lambda: None,
    "exit": lambda: None,
    "quit": lambda: None,
    "np": object(),  # a module imported before the parameters cell
    "defectlib": object(),
}


# -- profiles and overrides -------------------------------------------------------------


def test_profile_names_are_the_documented_three():
    assert PROFILE_NAMES == ("smoke", "converged", "paper")
    assert set(ExperimentConfig.PROFILES) == set(PROFILE_NAMES)


def test_the_book_is_built_with_the_converged_profile_and_cpu_is_gone():
    assert DEFAULT_PROFILE == "converged" and DEFAULT_PROFILE in PROFILE_NAMES
    with pytest.raises(ConfigError, match="unknown profile 'cpu'"):
        DataConfig.from_profile("cpu")


def test_cross_validated_configs_hold_out_validation_groups_and_dropped_fields_are_unknown():
    from defectlib.experiments.common import CrossValidatedConfig
    from defectlib.experiments.rec004 import Rec004Config
    from defectlib.experiments.seg000 import Seg000Config
    from defectlib.experiments.seg004 import Seg004Config

    for cls in (Seg000Config, Rec004Config, Seg004Config):
        assert issubclass(cls, CrossValidatedConfig)
        for profile in PROFILE_NAMES:
            cfg = cls.from_profile(profile)
            assert 0 < cfg.val_fraction < 0.5 and cfg.eval_every >= 0 and 0 <= cfg.warmup < 1
        assert not hasattr(cls, "LATE_FIELDS") and not hasattr(cls, "fold_numbers")
        for gone in ("test_folds", "amp", "num_workers"):
            with pytest.raises(ConfigError, match=f"unknown parameter.*{gone}"):
                cls.from_profile("smoke", **{gone: 1})
    for bad in ({"val_fraction": 0.0}, {"val_fraction": 0.5}, {"eval_every": -1}, {"warmup": 1.0}):
        with pytest.raises(ConfigError, match="seg000"):
            Seg000Config.from_profile("smoke", **bad)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_profile_values_applied(profile):
    cfg = ToyConfig.from_profile(profile)
    values = ToyConfig.PROFILES[profile]
    assert cfg.profile == profile
    assert cfg.epochs == values["epochs"]
    assert cfg.lr == values["lr"]
    assert cfg.backbone == values["backbone"]
    assert cfg.size == values["size"]
    # Fields a profile does not name take their defaults.
    assert cfg.batch == 4
    assert cfg.seed == 0


def test_profile_values_differ_between_profiles():
    smoke, paper = ToyConfig.from_profile("smoke"), ToyConfig.from_profile("paper")
    assert smoke.epochs == 1 and paper.epochs == 100
    assert smoke != paper


def test_overrides_win_over_profile_and_defaults():
    cfg = ToyConfig.from_profile("converged", epochs=7, lr=0.25, backbone="vgg", size=[3, 4], batch=9, seed=11)
    assert (cfg.epochs, cfg.lr, cfg.backbone, cfg.size, cfg.batch, cfg.seed) == (7, 0.25, "vgg", [3, 4], 9, 11)
    assert cfg.profile == "converged"


def test_none_override_keeps_profile_value():
    cfg = ToyConfig.from_profile("paper", epochs=None, lr=None, backbone=None, size=None, batch=None, seed=None)
    assert cfg == ToyConfig.from_profile("paper")
    assert cfg.epochs == 100 and cfg.backbone == "resnet50" and cfg.batch == 4 and cfg.seed == 0


def test_none_override_of_unknown_name_is_dropped_silently():
    # None means "not given", so a None parameter never reaches validation.
    assert ToyConfig.from_profile("smoke", nonsense=None) == ToyConfig.from_profile("smoke")


def test_overrides_do_not_mutate_the_profile_table():
    before = {k: dict(v) for k, v in ToyConfig.PROFILES.items()}
    cfg = ToyConfig.from_profile("smoke", size=[1, 2])
    assert cfg.size == [1, 2]
    assert ToyConfig.PROFILES == before
    assert ToyConfig.from_profile("smoke").size == [16, 16]


def test_profile_cannot_be_overridden_by_keyword():
    cfg = ToyConfig.from_profile("smoke", profile="paper")
    assert cfg.profile == "smoke"


def test_parameter_names_sorted():
    assert ToyConfig.parameter_names() == TOY_FIELDS


# -- errors -------------------------------------------------------------------------------


def test_unknown_profile_lists_profiles():
    with pytest.raises(ConfigError) as info:
        ToyConfig.from_profile("gpu")
    message = str(info.value)
    assert "toy" in message and "'gpu'" in message
    for name in PROFILE_NAMES:
        assert name in message


def test_config_error_is_a_defectlib_error_and_value_error():
    with pytest.raises(DefectlibError):
        ToyConfig.from_profile("nope")
    with pytest.raises(ValueError):
        ToyConfig.from_profile("nope")


def test_unknown_parameter_named_and_valid_names_listed():
    with pytest.raises(ConfigError) as info:
        ToyConfig.from_profile("smoke", epoch=3)
    message = str(info.value)
    assert "epoch" in message.split(";")[0]
    assert "valid: " + ", ".join(TOY_FIELDS) in message


def test_several_unknown_parameters_all_named():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) bacth, lrr;"):
        ToyConfig.from_profile("smoke", lrr=1.0, bacth=2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", "3"),  # str for int
        ("epochs", "9"),  # numeric str for int: strict, no coercion
        ("epochs", 2.5),  # float for int
        ("epochs", 2.0),  # integral float for int
        ("epochs", True),  # bool for int
        ("backbone", 3),  # int for str
        ("lr", "0.1"),  # str for float
        ("lr", True),  # bool for float
        ("size", (16, 16)),  # tuple for list
        ("size", 16),  # scalar for list
        ("seed", "0"),
    ],
)
def test_wrong_type_names_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        ToyConfig.from_profile("smoke", **{field: value})
    message = str(info.value)
    assert f"{field}:" in message
    assert repr(value) in message
    assert message.startswith("toy: invalid parameter(s)")


def test_wrong_list_item_type_names_the_item():
    with pytest.raises(ConfigError, match=r"size\.1: .*integer"):
        ToyConfig.from_profile("smoke", size=[1, "2"])


def test_several_wrong_types_all_reported():
    with pytest.raises(ConfigError) as info:
        ToyConfig.from_profile("smoke", epochs="1", backbone=2)
    assert "epochs:" in str(info.value) and "backbone:" in str(info.value)


def test_invalid_profile_value_in_table_is_reported():
    class Broken(ToyConfig):
        EXPERIMENT: ClassVar[str] = "broken"
        PROFILES: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {"epochs": "one"}}

    with pytest.raises(ConfigError, match="epochs"):
        Broken.from_profile("smoke")


def test_int_accepted_for_float_field():
    # config.py turns on pydantic's strict mode; in strict mode pydantic documents that a
    # float field accepts an int (the one numeric widening it keeps) and stores a float.
    cfg = ToyConfig.from_profile("smoke", lr=1)
    assert cfg.lr == 1.0
    assert isinstance(cfg.lr, float)
    assert ToyConfig.from_profile("smoke", lr=1) == ToyConfig.from_profile("smoke", lr=1.0)


def test_direct_construction_is_strict_too():
    with pytest.raises(pydantic.ValidationError):
        ToyConfig(profile="smoke", epochs="3")
    with pytest.raises(pydantic.ValidationError):
        ToyConfig(profile="smoke", unknown=1)


# -- frozen ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("epochs", 3), ("profile", "paper"), ("seed", 1), ("size", [1])])
def test_config_is_frozen(field, value):
    cfg = ToyConfig.from_profile("smoke")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(cfg, field, value)
    assert getattr(cfg, field) == ToyConfig.from_profile("smoke").__dict__[field]


def test_configs_equal_by_value():
    a, b = ToyConfig.from_profile("converged", seed=3), ToyConfig.from_profile("converged", seed=3)
    assert a == b
    assert a is not b


# -- notebook_config ----------------------------------------------------------------------


def notebook(**parameters):
    """A kernel namespace after the parameters cell and papermill's injected cell."""
    before = set(KERNEL_NAMES) | {"_before"}
    namespace = {**KERNEL_NAMES, "_before": before, **parameters}
    return namespace, before


def test_notebook_config_defaults_from_parameters_cell():
    namespace, before = notebook(profile="converged", epochs=None, lr=None, backbone=None, size=None, seed=None)
    assert notebook_config(ToyConfig, namespace, before=before) == ToyConfig.from_profile("converged")


def test_notebook_config_injected_values_win():
    namespace, before = notebook(profile="paper", epochs=3, lr=None, size=[2, 2], seed=5)
    cfg = notebook_config(ToyConfig, namespace, before=before)
    assert cfg == ToyConfig.from_profile("paper", epochs=3, size=[2, 2], seed=5)
    assert cfg.lr == 0.001


def test_notebook_config_ignores_names_present_before_and_underscore_names():
    namespace, before = notebook(profile="smoke", _tmp=42, __x=1, _dilation=3)
    # Names defined before the parameters cell (In, Out, get_ipython, np, ...) are no
    # parameters even though they are not fields of the config.
    assert "In" in namespace and "get_ipython" in namespace and "np" in namespace
    assert notebook_config(ToyConfig, namespace, before=before) == ToyConfig.from_profile("smoke")


def test_notebook_config_misspelt_parameter_fails_clearly():
    namespace, before = notebook(profile="smoke", epochs=None, epcohs=3)
    with pytest.raises(ConfigError) as info:
        notebook_config(ToyConfig, namespace, before=before)
    message = str(info.value)
    assert "unknown parameter(s) epcohs" in message
    assert "valid: " + ", ".join(TOY_FIELDS) in message


def test_notebook_config_module_imported_after_before_is_a_parameter():
    # Anything public defined after `_before` counts, so a stray import is reported too.
    namespace, before = notebook(profile="smoke", pd=object())
    with pytest.raises(ConfigError, match="unknown parameter.* pd"):
        notebook_config(ToyConfig, namespace, before=before)


def test_notebook_config_wrong_type_fails():
    namespace, before = notebook(profile="smoke", epochs="3")
    with pytest.raises(ConfigError, match="epochs"):
        notebook_config(ToyConfig, namespace, before=before)


def test_notebook_config_missing_profile_fails():
    namespace, before = notebook(epochs=3)
    with pytest.raises(ConfigError, match="toy: the notebook defines no 'profile' parameter"):
        notebook_config(ToyConfig, namespace, before=before)


def test_notebook_config_profile_defined_before_does_not_count():
    namespace, before = notebook(epochs=3)
    namespace["profile"] = "smoke"
    with pytest.raises(ConfigError, match="no 'profile'"):
        notebook_config(ToyConfig, namespace, before=before | {"profile"})


def test_notebook_config_unknown_profile_fails():
    namespace, before = notebook(profile="fast")
    with pytest.raises(ConfigError, match="unknown profile 'fast'; choose one of smoke, converged, paper"):
        notebook_config(ToyConfig, namespace, before=before)


def test_notebook_config_does_not_change_the_namespace():
    namespace, before = notebook(profile="smoke", epochs=2)
    copy = dict(namespace)
    notebook_config(ToyConfig, namespace, before=before)
    assert namespace == copy


# -- DataConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_data_config_profiles_valid(profile):
    cfg = DataConfig.from_profile(profile)
    assert cfg.datasets == DataConfig.PROFILES[profile]["datasets"]
    assert cfg.dilations == [0, 5, 9, 13, 15]
    assert cfg.input_size == [224, 224]
    assert cfg.n_folds is None


def test_data_config_smoke_uses_synthetic_data():
    assert DataConfig.from_profile("smoke").datasets == ["synthetic"]


@pytest.mark.parametrize("datasets", [["kolektor"], ["kolektorsdd", "MagneticTile"], []])
def test_data_config_unknown_or_no_dataset_rejected(datasets):
    with pytest.raises(ConfigError, match="datasets") as info:
        DataConfig.from_profile("converged", datasets=datasets)
    # The message lists the known datasets.
    assert "kolektorsdd" in str(info.value) and "magnetictile" in str(info.value)


@pytest.mark.parametrize("dilations", [[0, 4], [2], [0, 5, 10], [-1], [-3]])
def test_data_config_even_or_negative_dilation_rejected(dilations):
    with pytest.raises(ConfigError, match="dilations.*odd"):
        DataConfig.from_profile("converged", dilations=dilations)


@pytest.mark.parametrize("dilations", [[0], [1], [0, 1, 3, 5, 21], []])
def test_data_config_zero_and_odd_dilations_accepted(dilations):
    assert DataConfig.from_profile("converged", dilations=dilations).dilations == dilations


def test_data_config_folds_for_defaults():
    cfg = DataConfig.from_profile("converged")
    assert cfg.folds_for("kolektorsdd") == 3
    assert cfg.folds_for("magnetictile") == 5
    assert DataConfig.from_profile("smoke").folds_for("synthetic") == 3


def test_data_config_folds_for_override():
    cfg = DataConfig.from_profile("converged", n_folds=4)
    assert cfg.folds_for("kolektorsdd") == 4
    assert cfg.folds_for("magnetictile") == 4


def test_data_config_wrong_types():
    with pytest.raises(ConfigError, match="n_folds"):
        DataConfig.from_profile("converged", n_folds="3")
    with pytest.raises(ConfigError, match="datasets"):
        DataConfig.from_profile("converged", datasets="kolektorsdd")
    with pytest.raises(ConfigError, match=r"input_size\.0"):
        DataConfig.from_profile("converged", input_size=[224.0, 224])


def test_data_config_unknown_parameter():
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) dilaton; valid: crop_margin, datasets, dilations"):
        DataConfig.from_profile("converged", dilaton=[9])


# -- digest and to_dict ---------------------------------------------------------------------


def test_to_dict_contains_experiment_and_all_fields():
    cfg = ToyConfig.from_profile("smoke")
    d = cfg.to_dict()
    assert d["experiment"] == "toy"
    assert set(d) == set(TOY_FIELDS) | {"experiment"}
    assert d["size"] == [16, 16] and d["profile"] == "smoke"
    assert DataConfig.from_profile("converged").to_dict()["experiment"] == "data"


def test_digest_stable_for_equal_configs():
    a = ToyConfig.from_profile("converged", seed=2)
    b = ToyConfig(profile="converged", seed=2, **ToyConfig.PROFILES["converged"])
    assert a.digest() == b.digest()
    assert a.digest() == a.digest()
    assert len(a.digest()) == 64 and int(a.digest(), 16) >= 0
    assert DataConfig.from_profile("converged").digest() == DataConfig.from_profile("converged").digest()


def test_digest_differs_for_different_configs():
    base = ToyConfig.from_profile("converged")
    variants = [
        base,
        ToyConfig.from_profile("smoke"),
        ToyConfig.from_profile("converged", epochs=6),
        ToyConfig.from_profile("converged", lr=0.02),
        ToyConfig.from_profile("converged", backbone="resnet34"),
        ToyConfig.from_profile("converged", size=[64, 65]),
        ToyConfig.from_profile("converged", size=[65, 64]),
        ToyConfig.from_profile("converged", batch=5),
        ToyConfig.from_profile("converged", seed=1),
    ]
    digests = [v.digest() for v in variants]
    assert len(set(digests)) == len(digests)


def test_digest_differs_between_experiments_with_same_fields():
    class Other(ToyConfig):
        EXPERIMENT: ClassVar[str] = "other"

    assert Other.from_profile("converged").digest() != ToyConfig.from_profile("converged").digest()


def test_digest_differs_for_data_configs():
    a = DataConfig.from_profile("converged")
    assert a.digest() != DataConfig.from_profile("paper").digest()
    assert a.digest() != DataConfig.from_profile("converged", dilations=[0, 5]).digest()
    assert a.digest() != DataConfig.from_profile("converged", n_folds=3).digest()


def test_doctests():
    result = doctest.testmod(defectlib.config, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
