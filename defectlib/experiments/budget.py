"""What the ``cpu`` profile's cuts cost in accuracy (issue 6).

The ``cpu`` profile fits the study into a few hours on two CPU cores by training at a lower
resolution and for far fewer steps than the ``paper`` profile; it never drops cells of a grid.
Each :class:`BudgetCheck` measures what one such cut costs: it trains one cell of a grid again
with more of the budget restored (twice the resolution, or four times the steps) on **one**
test fold (``test_folds``; trained on all the other folds, as in the full cell), and compares
it with the same test fold of the cell as the profile runs it. One fold is a small sample (a
KolektorSDD fold holds 17 to 18 defective images), so a difference of a few points is noise;
the checks show the direction and the rough size of the cost, not a precise figure.

A cut of another kind, bfloat16 autocast for seed 000's DeepLabv3+ and U-Net in the ``cpu``
profile (:data:`~defectlib.experiments.seg000.CPU_AMP`), is compared on whole cells instead:
:func:`precision_cost` sets each such cell beside the same cell trained in float32, when that run
is in the results cache (the study's committed results hold them: the grid ran in float32 first).

The checks run through each experiment's own ``run`` (the same code path, results cache and
provenance as the grids) and are part of the ``cpu`` profile's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import pandas as pd

from . import rec004, seg000, seg004
from .common import cached_result

__all__ = ["BudgetCheck", "BUDGET_CHECKS", "CPU_CHECKS", "EXPERIMENTS", "checks_for", "budget_table", "precision_cost",
           "recorded", "recorded_times", "run_checks", "study_cells"]

#: The experiments a check can name, with the config class each one's ``run`` takes.
EXPERIMENTS: dict[str, tuple[ModuleType, type]] = {
    "seg000": (seg000, seg000.Seg000Config),
    "rec004": (rec004, rec004.Rec004Config),
    "seg004": (seg004, seg004.Seg004Config),
}


@dataclass(frozen=True)
class BudgetCheck:
    """One cell of a grid, and what to restore of the budget the profile cut.

    ``cell`` selects the grid cell (config overrides of the profile), ``restore`` the larger
    budget (further overrides, e.g. ``{"input_size": [704, 256]}``), ``metrics`` the metrics
    to compare (keys of the experiment's ``cell_metrics``).
    """

    label: str
    experiment: str
    cell: dict
    restore: dict
    metrics: tuple[str, ...] = field(default=("precision", "recall", "f1"))

    def configs(self, profile: str, *, fold: int, amp: bool | None = None):
        """The profile's cell (all folds) and the check's cell (``fold`` only); ``amp``:
        bfloat16 autocast on or off for both (None: the profile's)."""
        _, config_class = EXPERIMENTS[self.experiment]
        arithmetic = {} if amp is None else {"amp": amp}
        base = config_class.from_profile(profile, **self.cell, **arithmetic)
        return base, config_class.from_profile(profile, **self.cell, **self.restore, test_folds=[fold], **arithmetic)


#: The checks of the ``cpu`` profile: each grid's main cut, on a cell that learns something
#: at the cut budget (a cell at chance would show nothing).
CPU_CHECKS: tuple[BudgetCheck, ...] = (
    BudgetCheck("seed 000, proposed network (k=0): input 704×256 instead of 352×128", "seg000",
                {"model": "proposed", "dilation": 0}, {"input_size": [704, 256]},
                ("ap", "f1", "precision", "recall")),
    BudgetCheck("seed 000, proposed network (k=0): 4× the training steps", "seg000",
                {"model": "proposed", "dilation": 0}, {"seg_steps": 2400, "clf_steps": 1200},
                ("ap", "f1", "precision", "recall")),
    BudgetCheck("seed 004, DR on KolektorSDD (no augmentation): 4× the training steps", "rec004",
                {"dataset": "kolektorsdd", "method": "dr", "augment": False}, {"steps": 400},
                ("ap", "acc", "tpr", "tnr")),
    BudgetCheck("seed 004, improved DeepLabv3+ on KolektorSDD: 4× the training steps", "seg004",
                {"dataset": "kolektorsdd", "model": "improved"}, {"steps": 400},
                ("precision", "recall", "f1")),
)  # fmt: skip

#: The checks per profile: ``paper`` cuts nothing; ``smoke`` exercises the code on synthetic data.
BUDGET_CHECKS: dict[str, tuple[BudgetCheck, ...]] = {
    "smoke": (
        BudgetCheck("seed 000, proposed network: 2× the steps", "seg000", {"model": "proposed", "dilation": 0},
                    {"seg_steps": 60, "clf_steps": 40}, ("ap", "f1", "precision", "recall")),
        BudgetCheck("seed 004, DR: 2× the steps", "rec004", {"method": "dr", "augment": False}, {"steps": 12},
                    ("ap", "acc", "tpr", "tnr")),
    ),
    "cpu": CPU_CHECKS,
    "paper": (),
}


def checks_for(profile: str) -> tuple[BudgetCheck, ...]:
    """The budget checks of ``profile`` (none for an unknown or uncut profile)."""
    return BUDGET_CHECKS.get(profile, ())


def _budget(cfg) -> str:
    """The training budget of a config, in words: input size and steps."""
    size = "×".join(str(v) for v in cfg.input_size)
    if hasattr(cfg, "seg_steps"):
        return f"{size}, {cfg.seg_steps} + {cfg.clf_steps} steps"
    return f"{size}, {cfg.steps} steps"


def run_checks(profile: str, checks=None, *, fold: int = 0, amp: bool | None = None,
               progress: bool = True) -> pd.DataFrame:
    """Run (or read from the results cache) every check; one row per check and budget.

    Columns: check, budget ("profile" or "restored"), setting (input size and steps), fold,
    each metric, wall_min (the run's recorded training + testing time per test fold), run
    (the results folder).

    The profile's cell is run in full (it is a cell of the grid, normally cached already) and
    its metrics recomputed on the test fold alone, with the experiment's ``cell_metrics``.
    ``checks=None``: :func:`checks_for` the profile. ``amp``: bfloat16 autocast on or off for
    every check (None: the profile's; False on a CPU without bfloat16, :mod:`defectlib.precision`).
    """
    rows = []
    for check in checks_for(profile) if checks is None else checks:
        module, _ = EXPERIMENTS[check.experiment]
        base_cfg, check_cfg = check.configs(profile, fold=fold, amp=amp)
        base = module.run(base_cfg, progress=progress)
        restored = module.run(check_cfg, progress=progress)
        for budget, cfg, result in (("profile", base_cfg, base), ("restored", check_cfg, restored)):
            samples = result.samples[result.samples["fold"] == fold]
            if samples.empty:
                raise ValueError(f"{result.path}: no test samples of fold {fold}")
            metrics = module.cell_metrics(cfg, samples.reset_index(drop=True))
            wall = result.provenance["wall_time_s"] / 60 / len(cfg.fold_numbers())  # per test fold
            rows.append({"check": check.label, "budget": budget, "setting": _budget(cfg), "fold": fold,
                         **{m: metrics.get(m) for m in check.metrics}, "wall_min": wall,
                         "run": result.path.name})
    return pd.DataFrame(rows)


def budget_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The checks side by side: one row per check and metric, the two budgets as columns."""
    long = rows.melt(id_vars=["check", "budget"], value_vars=[c for c in rows.columns if c not in
                     ("check", "budget", "setting", "fold", "run")], var_name="metric").dropna(subset=["value"])
    wide = long.pivot_table(index=["check", "metric"], columns="budget", values="value", aggfunc="first", sort=False)
    wide["change"] = wide["restored"] - wide["profile"]
    return wide[["profile", "restored", "change"]]


def cell_family(cfg) -> str:
    """The network a cell trains, with its experiment: ``"seg000 unet"``, ``"rec004 dr"``.

    Examples
    --------
    >>> from defectlib.experiments.rec004 import Rec004Config
    >>> cell_family(Rec004Config.from_profile("smoke", method="dr"))
    'rec004 dr'
    """
    name = getattr(cfg, "model", None) or getattr(cfg, "method")
    return f"{cfg.EXPERIMENT} {name}"


def recorded(result) -> dict:
    """What a cached run recorded of itself: wall_min, finished, commit, heap (blanks for None).

    ``heap`` is the allocator policy it trained under (:func:`defectlib.allocator.heap_policy`);
    runs older than that field (commit 549606c) trained with the C library's defaults, "system".
    Wall times of runs under different policies are not comparable as they stand.
    """
    if result is None:
        return {"wall_min": float("nan"), "finished": False, "commit": "", "heap": ""}
    return {"wall_min": result.provenance["wall_time_s"] / 60, "finished": True,
            "commit": result.provenance.get("git", {}).get("commit", "")[:7],
            "heap": result.provenance.get("heap", "system")}


def study_cells(profile: str, checks=None, *, fold: int = 0, amp: bool | None = None) -> list[tuple[str, str, object]]:
    """Every cell the study trains under ``profile``: ``(grid, cell in words, config)``.

    The cells of seed 000's sweep, seed 004's recognition and segmentation grids, and the
    budget checks (``checks=None``: the profile's, on test fold ``fold``). ``amp``: every cell
    with bfloat16 autocast on or off, as the notebooks' ``amp`` parameter trains them (None:
    the profile's).

    Examples
    --------
    >>> cells = study_cells("smoke", amp=False)
    >>> sorted({grid for grid, _, _ in cells})
    ['budget checks', 'seed 000 annotation sweep', 'seed 004 recognition', 'seed 004 segmentation']
    >>> any(cfg.amp for _, _, cfg in cells)
    False
    """
    cells = [("seed 000 annotation sweep", cfg) for cfg in seg000.grid_configs(profile)]
    cells += [("seed 004 recognition", cfg) for cfg in rec004.grid_configs(profile)]
    cells += [("seed 004 segmentation", cfg) for cfg in seg004.grid_configs(profile)]
    checks = checks_for(profile) if checks is None else checks
    cells += [("budget checks", check.configs(profile, fold=fold)[1]) for check in checks]
    if amp is not None:
        cells = [(grid, cfg.model_copy(update={"amp": amp})) for grid, cfg in cells]
    out = []
    for grid, cfg in cells:
        words = {k: v for k, v in cfg.to_dict().items() if k in ("dataset", "model", "method", "augment", "dilation")}
        label = ", ".join(f"{k}={v}" for k, v in words.items()) + ("" if cfg.test_folds is None else f" ({_budget(cfg)})")
        out.append((grid, label, cfg))
    return out


def recorded_times(profile: str, checks=None, *, fold: int = 0, amp: bool | None = None) -> pd.DataFrame:
    """The recorded wall time (training + testing) of every cell of the study's grids under
    ``profile``, and of the budget checks (:func:`study_cells`); nothing is trained.

    One row per cell: grid, cell (its config, in words), family (the network it trains,
    :func:`cell_family`), wall_min, finished (False where the cell is not in the results
    cache), commit (the code version that ran it), heap (the allocator policy it ran under,
    see :func:`recorded`). ``amp``: as :func:`study_cells`.
    """
    memo: dict = {}
    return pd.DataFrame([{"grid": grid, "cell": label, "family": cell_family(cfg),
                          **recorded(cached_result(cfg, memo=memo))}
                         for grid, label, cfg in study_cells(profile, checks, fold=fold, amp=amp)])


def precision_cost(profile: str, *, cells=None, metrics=("f1", "precision", "recall", "ap", "fp", "fn")) -> pd.DataFrame:
    """Every seed-000 cell that ``profile`` trains under bfloat16 autocast beside the same cell
    in float32, over all test folds; nothing is trained. ``cells``: these configs instead of the
    profile's grid (those with ``amp`` on are compared).

    One row per cell and arithmetic: model, dilation, arithmetic ("float32" / "bfloat16"), each
    metric, wall_min (the whole cell's recorded time), finished (False where the run is not in
    the results cache), commit (the code version that ran it), heap (the allocator policy it ran
    under, see :func:`recorded`).
    """
    rows = []
    for cfg in seg000.grid_configs(profile) if cells is None else cells:
        if not cfg.amp:
            continue
        for name, variant in (("float32", cfg.model_copy(update={"amp": False})), ("bfloat16", cfg)):
            result = cached_result(variant)
            m = result.metrics if result else {}
            rows.append({"model": cfg.model, "dilation": cfg.dilation, "arithmetic": name,
                         **{k: m.get(k, float("nan")) for k in metrics},
                         **recorded(result)})
    return pd.DataFrame(rows)
