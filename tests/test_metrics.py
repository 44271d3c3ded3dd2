"""Tests for defectlib.metrics: hand-computed cases, agreement with scikit-learn,
edge cases and input validation."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

import defectlib.metrics
import defectlib.metrics.image
import defectlib.metrics.pixel
from defectlib.metrics import (
    accumulate_pixel_counts,
    average_precision,
    confusion_counts,
    counts_to_prf,
    image_metrics,
    pixel_counts,
    pixel_precision_recall_f1,
    precision_recall_f1,
    tpr_tnr_acc,
)

THRESHOLDS = [0.1, 0.5, 0.9]
ZERO_DIVISIONS = [0.0, 1.0, np.nan]


def same(a, b):
    """Equal floats, with nan equal to nan."""
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


# --------------------------------------------------------------------------- image


# y_true = 1 1 1 0 0 0 0
# scores = .95 .9 .3 .92 .5 .2 .1
# threshold 0.9: predicted = 1 1 0 1 0 0 0
#   TP = 2 (.95, .9), FN = 1 (.3), FP = 1 (.92), TN = 3 (.5, .2, .1)
#   precision = 2/3, recall = 2/3, F1 = 2*2/(2*2+1+1) = 4/6 = 2/3
#   TPR = 2/3, TNR = 3/4, ACC = (2/3 + 3/4)/2 = (8/12 + 9/12)/2 = 17/24
# threshold 0.5: predicted = 1 1 0 1 1 0 0
#   TP = 2, FN = 1, FP = 2 (.92, .5), TN = 2
#   precision = 2/4 = 1/2, recall = 2/3, F1 = 4/(4+2+1) = 4/7
#   TPR = 2/3, TNR = 2/4, ACC = (2/3 + 1/2)/2 = 7/12
# AP: ranked by score .95(1) .92(0) .9(1) .5(0) .3(1) .2(0) .1(0)
#   recall steps at ranks 1, 3, 5 with precision 1/1, 2/3, 3/5
#   AP = 1/3 * (1 + 2/3 + 3/5) = 1/3 * (15/15 + 10/15 + 9/15) = 34/45
Y_HAND = [1, 1, 1, 0, 0, 0, 0]
S_HAND = [0.95, 0.9, 0.3, 0.92, 0.5, 0.2, 0.1]


def test_hand_computed_threshold_09():
    assert confusion_counts(Y_HAND, S_HAND, threshold=0.9) == {"tp": 2, "fp": 1, "fn": 1, "tn": 3}
    r = precision_recall_f1(Y_HAND, S_HAND, threshold=0.9)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    rates = tpr_tnr_acc(Y_HAND, S_HAND, threshold=0.9)
    assert rates["tpr"] == pytest.approx(2 / 3)
    assert rates["tnr"] == pytest.approx(3 / 4)
    assert rates["acc"] == pytest.approx(17 / 24)


def test_hand_computed_threshold_05():
    assert confusion_counts(Y_HAND, S_HAND) == {"tp": 2, "fp": 2, "fn": 1, "tn": 2}
    r = precision_recall_f1(Y_HAND, S_HAND, threshold=0.5)
    assert (r["precision"], r["recall"]) == (pytest.approx(1 / 2), pytest.approx(2 / 3))
    assert r["f1"] == pytest.approx(4 / 7)
    assert tpr_tnr_acc(Y_HAND, S_HAND)["acc"] == pytest.approx(7 / 12)


def test_hand_computed_average_precision():
    assert average_precision(Y_HAND, S_HAND) == pytest.approx(34 / 45)


def test_acc_is_balanced_not_plain_accuracy():
    # 1 positive (missed), 9 negatives (all right): plain accuracy 9/10,
    # balanced ACC = (TPR + TNR)/2 = (0 + 1)/2 = 0.5
    y = [1] + [0] * 9
    s = [0.1] * 10
    assert tpr_tnr_acc(y, s)["acc"] == 0.5


def test_image_metrics_contents_and_json():
    m = image_metrics(Y_HAND, S_HAND, threshold=0.9)
    assert set(m) == {
        "precision", "recall", "f1", "tp", "fp", "fn", "tn", "ap",
        "tpr", "tnr", "acc", "n", "n_positive", "threshold",
    }
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 3)
    assert (m["n"], m["n_positive"], m["threshold"]) == (7, 3, 0.9)
    assert m["ap"] == pytest.approx(34 / 45)
    assert m["acc"] == pytest.approx(17 / 24)
    for key, value in m.items():
        assert type(value) in (int, float), (key, type(value))
    assert json.loads(json.dumps(m)) == m  # no nan here, so round-trips exactly


def test_image_metrics_nan_is_json_serialisable():
    m = image_metrics([0, 0, 0], np.array([0.1, 0.2, 0.95]), threshold=0.9)
    assert math.isnan(m["ap"]) and math.isnan(m["tpr"]) and math.isnan(m["acc"])
    assert m["tnr"] == pytest.approx(2 / 3)
    text = json.dumps(m)
    assert "NaN" in text
    assert json.loads(text)["fp"] == 1


def test_inputs_accept_bool_lists_and_arrays():
    a = confusion_counts(np.array([True, False, True]), np.array([1, 0, 0]))
    b = confusion_counts([1, 0, 1], [1.0, 0.0, 0.0])
    assert a == b == {"tp": 1, "fp": 0, "fn": 1, "tn": 1}


def _random_case(rng, n):
    y = rng.integers(0, 2, size=n)
    s = rng.random(n)
    # put some scores exactly on the thresholds so the boundary is exercised
    s[rng.random(n) < 0.1] = rng.choice(THRESHOLDS)
    return y, s


@pytest.mark.parametrize("seed", range(40))
def test_image_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))  # small n: some cases have no positives/predictions
    y, s = _random_case(rng, n)
    for threshold in THRESHOLDS:
        y_pred = (s >= threshold).astype(int)
        tn, fp, fn, tp = confusion_matrix(y, y_pred, labels=[0, 1]).ravel()
        assert confusion_counts(y, s, threshold=threshold) == {
            "tp": tp, "fp": fp, "fn": fn, "tn": tn
        }
        for zd in ZERO_DIVISIONS:
            p, r, f, _ = precision_recall_fscore_support(
                y, y_pred, average="binary", zero_division=zd
            )
            ours = precision_recall_f1(y, s, threshold=threshold, zero_division=zd)
            assert same(ours["precision"], p), (threshold, zd)
            assert same(ours["recall"], r), (threshold, zd)
            assert same(ours["f1"], f), (threshold, zd)
        rates = tpr_tnr_acc(y, s, threshold=threshold)
        if 0 < y.sum() < n:
            assert rates["acc"] == pytest.approx(balanced_accuracy_score(y, y_pred))
        else:
            assert math.isnan(rates["acc"])
    if y.any():
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    else:
        assert math.isnan(average_precision(y, s))


def test_random_cases_cover_the_edge_cases():
    # guard against the random test above silently never hitting an edge case
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 30))
        y, s = _random_case(rng, n)
        for threshold in THRESHOLDS:
            c = confusion_counts(y, s, threshold=threshold)
            if c["tp"] + c["fp"] == 0:
                seen.add("none predicted")
            if c["tp"] + c["fn"] == 0:
                seen.add("none present")
            if c["tp"] == 0 and c["fp"] + c["fn"] > 0:
                seen.add("tp zero")
            if np.any(s == threshold):
                seen.add("on threshold")
    assert seen == {"none predicted", "none present", "tp zero", "on threshold"}


def test_no_positives_predicted():
    # y = 1 1 0, nothing reaches 0.9: TP = FP = 0, FN = 2, TN = 1
    y, s = [1, 1, 0], [0.2, 0.3, 0.1]
    for zd in (0.0, 1.0):
        r = precision_recall_f1(y, s, threshold=0.9, zero_division=zd)
        assert r["precision"] == zd  # 0/0
        assert r["recall"] == 0.0  # 0/2
        assert r["f1"] == 0.0  # 2*0/(0+0+2): defined, so not zero_division
    assert math.isnan(precision_recall_f1(y, s, threshold=0.9, zero_division=np.nan)["precision"])


def test_no_positives_present():
    # y = 0 0 0, one false alarm: TP = 0, FP = 1, FN = 0, TN = 2
    y, s = [0, 0, 0], [0.95, 0.3, 0.1]
    r = precision_recall_f1(y, s, threshold=0.9, zero_division=1.0)
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 1.0, 0.0)
    r = precision_recall_f1(y, s, threshold=0.9)
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    rates = tpr_tnr_acc(y, s, threshold=0.9)
    assert math.isnan(rates["tpr"]) and math.isnan(rates["acc"])
    assert rates["tnr"] == pytest.approx(2 / 3)
    assert math.isnan(average_precision(y, s))


def test_no_positives_present_nor_predicted():
    # TP = FP = FN = 0: every ratio is 0/0, so all take zero_division
    y, s = [0, 0], [0.1, 0.2]
    r = precision_recall_f1(y, s, zero_division=1.0)
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)
    r = precision_recall_f1(y, s)
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)


def test_no_negatives_present():
    y, s = [1, 1], [0.1, 0.2]
    rates = tpr_tnr_acc(y, s, threshold=0.15)
    assert rates["tpr"] == 0.5
    assert math.isnan(rates["tnr"]) and math.isnan(rates["acc"])
    assert average_precision(y, s) == 1.0


def test_all_correct():
    y, s = [1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]
    m = image_metrics(y, s, threshold=0.5)
    for key in ("precision", "recall", "f1", "ap", "tpr", "tnr", "acc"):
        assert m[key] == 1.0, key
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 0, 0, 2)


def test_all_wrong():
    y, s = [1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8]
    m = image_metrics(y, s, threshold=0.5)
    for key in ("precision", "recall", "f1", "tpr", "tnr", "acc"):
        assert m[key] == 0.0, key
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 2, 2, 0)
    # ranking: .9(0) .8(0) .2(1) .1(1): precision at the recall steps 1/3 and 2/4
    # AP = 1/2 * (1/3 + 1/2) = 5/12
    assert m["ap"] == pytest.approx(5 / 12)


def test_threshold_boundary_is_inclusive():
    # score exactly 0.9 at threshold 0.9 is predicted defective
    on = confusion_counts([1, 0], [0.9, 0.9], threshold=0.9)
    assert on == {"tp": 1, "fp": 1, "fn": 0, "tn": 0}
    # just below is not
    below = np.nextafter(0.9, 0.0)
    off = confusion_counts([1, 0], [below, below], threshold=0.9)
    assert off == {"tp": 0, "fp": 0, "fn": 1, "tn": 1}


@pytest.mark.parametrize(
    "y, s, match",
    [
        ([], [], "empty"),
        ([1, 0], [0.5], "same length"),
        ([1, 0, 2], [0.1, 0.2, 0.3], "only 0 and 1"),
        ([1, -1], [0.1, 0.2], "only 0 and 1"),
        ([1, 0.5], [0.1, 0.2], "only 0 and 1"),
        ([1, 0], [0.1, np.nan], "NaN"),
        ([1, 0], [0.1, np.inf], "infinite"),
        ([[1, 0]], [[0.1, 0.2]], "1-D"),
        (["a", "b"], [0.1, 0.2], "0/1"),
    ],
)
def test_image_input_errors(y, s, match):
    for func in (confusion_counts, precision_recall_f1, average_precision, tpr_tnr_acc):
        with pytest.raises(ValueError, match=match):
            func(y, s)
    with pytest.raises(ValueError, match=match):
        image_metrics(y, s, threshold=0.5)


def test_option_errors():
    with pytest.raises(ValueError, match="threshold"):
        confusion_counts([1], [0.5], threshold=float("nan"))
    with pytest.raises(ValueError, match="zero_division"):
        precision_recall_f1([1], [0.5], zero_division=2.0)
    with pytest.raises(TypeError):
        confusion_counts([1], [0.5], 0.5)  # threshold is keyword-only
    with pytest.raises(TypeError):
        image_metrics([1], [0.5])  # threshold is required


# --------------------------------------------------------------------------- pixel


# pred (threshold 0.5)      target         outcome
#  .9  .5  .1                1  0  0        TP FP TN
#  .2  .7  .4                1  1  0        FN TP TN
# TP = 2, FP = 1, FN = 1, TN = 2; precision = 2/3, recall = 2/3, F1 = 4/(4+1+1) = 2/3
# threshold 0.8: only .9 is positive -> TP = 1, FP = 0, FN = 2, TN = 3;
# precision = 1, recall = 1/3, F1 = 2/(2+0+2) = 1/2
PRED_HAND = np.array([[0.9, 0.5, 0.1], [0.2, 0.7, 0.4]])
TARGET_HAND = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.uint8)


def test_pixel_hand_computed():
    assert pixel_counts(PRED_HAND, TARGET_HAND) == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    r = pixel_precision_recall_f1(PRED_HAND, TARGET_HAND)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    r = pixel_precision_recall_f1(PRED_HAND, TARGET_HAND, threshold=0.8)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (1, 0, 2, 3)
    assert (r["precision"], r["f1"]) == (1.0, 0.5)
    assert r["recall"] == pytest.approx(1 / 3)


def test_pixel_target_nonzero_is_defect_and_boundary_inclusive():
    # target 255 counts as defect; pred exactly at the threshold counts as positive
    pred = np.array([[0.5, 0.5]])
    target = np.array([[255, 0]], dtype=np.uint8)
    assert pixel_counts(pred, target) == {"tp": 1, "fp": 1, "fn": 0, "tn": 0}
    # binary / boolean predictions work too
    assert pixel_counts(pred >= 0.5, target) == {"tp": 1, "fp": 1, "fn": 0, "tn": 0}


@pytest.mark.parametrize("seed", range(10))
def test_pixel_agrees_with_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    pred = rng.random((3, 9, 7))
    target = (rng.random((3, 9, 7)) < 0.2).astype(np.uint8)
    for threshold in THRESHOLDS:
        y_pred = (pred >= threshold).ravel().astype(int)
        tn, fp, fn, tp = confusion_matrix(target.ravel(), y_pred, labels=[0, 1]).ravel()
        assert pixel_counts(pred, target, threshold=threshold) == {
            "tp": tp, "fp": fp, "fn": fn, "tn": tn
        }
        for zd in ZERO_DIVISIONS:
            p, r, f, _ = precision_recall_fscore_support(
                target.ravel(), y_pred, average="binary", zero_division=zd
            )
            ours = pixel_precision_recall_f1(
                pred, target, threshold=threshold, zero_division=zd
            )
            assert same(ours["precision"], p) and same(ours["recall"], r) and same(ours["f1"], f)


def test_pixel_stack_equals_summed_per_image_counts():
    rng = np.random.default_rng(7)
    pred = rng.random((5, 16, 12))
    target = rng.random((5, 16, 12)) < 0.1
    stack = pixel_counts(pred, target, threshold=0.6)
    summed = {k: sum(pixel_counts(p, t, threshold=0.6)[k] for p, t in zip(pred, target))
              for k in ("tp", "fp", "fn", "tn")}
    assert stack == summed
    assert sum(stack.values()) == 5 * 16 * 12
    assert accumulate_pixel_counts(zip(pred, target), threshold=0.6) == stack
    # micro-average: the stack's F1 is not the mean of per-image F1s
    per_image = [
        pixel_precision_recall_f1(p, t, threshold=0.6)["f1"] for p, t in zip(pred, target)
    ]
    micro = counts_to_prf(stack)["f1"]
    assert micro == pytest.approx(pixel_precision_recall_f1(pred, target, threshold=0.6)["f1"])
    assert micro != pytest.approx(float(np.mean(per_image)))


def test_accumulate_different_sizes_and_generator():
    # image A 1x2: pred 1 1, target 1 0 -> TP 1, FP 1
    # image B 2x2: pred 0 0 / 0 1, target 1 0 / 0 1 -> FN 1, TN 2, TP 1
    # total TP 2, FP 1, FN 1, TN 2
    a = (np.array([[1, 1]]), np.array([[1, 0]]))
    b = (np.array([[0, 0], [0, 1]]), np.array([[1, 0], [0, 1]]))
    counts = accumulate_pixel_counts(x for x in (a, b))
    assert counts == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    r = counts_to_prf(counts)
    assert r["precision"] == pytest.approx(2 / 3) and r["f1"] == pytest.approx(2 / 3)


def test_pixel_edge_cases():
    empty_target = np.zeros((4, 4))
    # no defect present, none predicted: all ratios 0/0 -> zero_division
    r = pixel_precision_recall_f1(np.zeros((4, 4)), empty_target, zero_division=1.0)
    assert (r["precision"], r["recall"], r["f1"], r["tn"]) == (1.0, 1.0, 1.0, 16)
    # no defect present, one false positive: precision 0/1, recall 0/0, F1 0
    pred = np.zeros((4, 4))
    pred[0, 0] = 1
    r = pixel_precision_recall_f1(pred, empty_target, zero_division=1.0)
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 1.0, 0.0)
    # all wrong
    t = np.eye(3)
    r = pixel_precision_recall_f1(1 - t, t)
    assert (r["tp"], r["tn"], r["precision"], r["recall"], r["f1"]) == (0, 0, 0.0, 0.0, 0.0)
    # all correct
    r = pixel_precision_recall_f1(t, t)
    assert (r["precision"], r["recall"], r["f1"], r["fp"], r["fn"]) == (1.0, 1.0, 1.0, 0, 0)


def test_pixel_errors():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        pixel_counts(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        pixel_counts(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="2-D"):
        pixel_counts(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="empty"):
        pixel_counts(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        pixel_counts(np.array([[np.nan, 0.1]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="pair 1.*shape"):
        accumulate_pixel_counts([(np.ones((2, 2)), np.ones((2, 2))),
                                 (np.ones((2, 2)), np.ones((2, 3)))])
    with pytest.raises(ValueError, match="empty"):
        accumulate_pixel_counts([])
    with pytest.raises(ValueError, match="missing"):
        counts_to_prf({"tp": 1, "fp": 0})
    with pytest.raises(ValueError, match="non-negative"):
        counts_to_prf({"tp": 1, "fp": -1, "fn": 0})
    with pytest.raises(ValueError, match="integer"):
        counts_to_prf({"tp": 1.5, "fp": 0, "fn": 0})


def test_outputs_are_python_scalars():
    r = pixel_precision_recall_f1(PRED_HAND, TARGET_HAND)
    for key, value in r.items():
        assert type(value) is (int if key in ("tp", "fp", "fn", "tn") else float), key
    r = counts_to_prf({"tp": np.int64(3), "fp": np.int64(1), "fn": np.int64(0)})
    assert type(r["tp"]) is int and type(r["precision"]) is float
    r = precision_recall_f1(Y_HAND, S_HAND)
    assert all(type(v) in (int, float) for v in r.values())


def test_ap_standard_error_shrinks_with_more_positives_and_rejects_bad_input():
    from defectlib.metrics import ap_standard_error
    assert ap_standard_error(ap=0.8, n_positive=100) == pytest.approx(0.04)
    assert ap_standard_error(ap=0.8, n_positive=25) == pytest.approx(0.08)
    assert ap_standard_error(ap=0.0, n_positive=5) == 0.0 and math.isnan(ap_standard_error(ap=float("nan"), n_positive=5))
    with pytest.raises(ValueError, match="ap must be in"):
        ap_standard_error(ap=1.2, n_positive=5)
    with pytest.raises(ValueError, match="n_positive"):
        ap_standard_error(ap=0.5, n_positive=-1)


def test_public_api():
    assert sorted(defectlib.metrics.__all__) == sorted([
        "confusion_counts", "precision_recall_f1", "average_precision", "ap_standard_error", "tpr_tnr_acc",
        "image_metrics", "pixel_counts", "pixel_precision_recall_f1",
        "accumulate_pixel_counts", "counts_to_prf",
    ])
    for name in defectlib.metrics.__all__:
        assert callable(getattr(defectlib.metrics, name))
