"""The experiments' shared pieces: choice-checked fields, the resumable fold loop, loss plots."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

import defectlib.experiments.common as common
import defectlib.plots.common as plots_common
from defectlib.experiments.common import all_of, cross_validate, one_of
from defectlib.experiments.seg000 import Seg000Config

from helpers import interrupt_fold_once


class Cell(BaseModel):
    model: one_of(("unet", "fcn"), "model") = "unet"
    models: all_of(("unet", "fcn"), "models") = ["unet"]
    variants: all_of(("a", "b"), "variants", allow_empty=True) = ["a"]


def test_choice_fields_accept_the_choices_and_serialise_as_plain_values():
    cell = Cell(model="fcn", models=["fcn", "unet"], variants=[])
    assert cell.model_dump(mode="json") == {"model": "fcn", "models": ["fcn", "unet"], "variants": []}


@pytest.mark.parametrize(("values", "message"), [
    ({"model": "vgg"}, "unknown model 'vgg'; choose one of unet, fcn"),
    ({"models": ["fcn", "vgg", "x"]}, "unknown or no models ['vgg', 'x']; choose from unet, fcn"),
    ({"models": []}, "unknown or no models []; choose from unet, fcn"),
    ({"variants": ["c"]}, "unknown variants ['c']; choose from a, b"),
])
def test_choice_fields_name_the_bad_value_and_the_choices(values, message):
    with pytest.raises(ValidationError) as info:
        Cell(**values)
    assert message in str(info.value)


def fake_fold(cfg, table, folds, fold, current, *, progress=True):
    """A 'training' that scores every test image by its label, and stores no weights."""
    test = table[folds == fold]
    current.save_artifact(f"fold{fold}", pretrained=np.array("None"))
    return pd.DataFrame({"sample_id": test["sample_id"].to_numpy(), "fold": fold,
                         "label": test["label"].to_numpy(), "score": test["label"].to_numpy() * 0.8})


def test_cross_validate_resumes_and_reads_a_finished_cell_back(isolated, monkeypatch):
    import sys

    module = sys.modules[__name__]
    calls = interrupt_fold_once(monkeypatch, module)
    cfg = Seg000Config.from_profile("smoke")

    def count(samples):
        return {"n": int(len(samples))}

    with pytest.raises(KeyboardInterrupt):
        cross_validate(cfg, module._train_fold, count, desc="test", progress=False)
    result = cross_validate(cfg, module._train_fold, count, desc="test", progress=False, record_pretrained=True)
    assert calls == [0, 1, 1, 2]  # fold 0 was not trained again
    assert result.metrics == {"n": len(result.samples)}
    assert sorted(result.samples["fold"].unique()) == [0, 1, 2] and result.samples["sample_id"].is_unique
    assert result.provenance["device_used"] in ("cpu", "cuda") and result.provenance["pretrained"] == "None"
    from defectlib.allocator import heap_policy  # every cell trains with freed memory retained (glibc)

    assert result.provenance["heap"] == heap_policy()
    again = cross_validate(cfg, module._train_fold, count, desc="test", progress=False)
    assert again.key == result.key and calls == [0, 1, 1, 2]


_train_fold = fake_fold  # what interrupt_fold_once wraps


@pytest.mark.parametrize("module", [common, plots_common])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
