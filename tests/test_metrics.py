"""Metrics against hand-computed confusion matrices, the Table 1 selection rule, and figures."""

from __future__ import annotations

import numpy as np
import pytest

from galseg.metrics import confusion, detection, per_galaxy_table, pooled_iou, scores, table1, table1_markdown


def test_confusion_and_every_metric_by_hand():
    truth = np.array([[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]], dtype=bool)
    pred = np.array([[[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]], dtype=bool)
    counts = confusion(truth, pred)
    np.testing.assert_array_equal(counts, [[3, 2, 1, 6]])  # TP FP FN TN
    s = scores(counts)
    assert s["accuracy"][0] == pytest.approx(9 / 12)
    assert s["precision"][0] == pytest.approx(3 / 5)
    assert s["recall"][0] == pytest.approx(3 / 4)
    assert s["jaccard"][0] == pytest.approx(3 / 6)
    assert s["dice"][0] == pytest.approx(6 / 9)


def test_empty_masks_give_undefined_not_zero_or_one():
    empty = np.zeros((1, 3, 3), bool)
    some = empty.copy()
    some[0, 1, 1] = True
    both_empty = scores(confusion(empty, empty))
    assert both_empty["accuracy"][0] == pytest.approx(1.0)
    assert all(np.isnan(both_empty[m][0]) for m in ("precision", "recall", "jaccard", "dice"))
    missed = scores(confusion(some, empty))  # volunteers mark arms, the model none
    assert (
        np.isnan(missed["precision"][0])
        and missed["recall"][0] == pytest.approx(0)
        and missed["jaccard"][0] == pytest.approx(0)
    )
    invented = scores(confusion(empty, some))  # the model marks arms, volunteers none
    assert invented["precision"][0] == pytest.approx(0) and np.isnan(invented["recall"][0])
    assert invented["jaccard"][0] == pytest.approx(0)


def test_jaccard_matches_an_independent_computation_on_random_masks():
    rng = np.random.default_rng(4)
    truth = rng.random((50, 16, 16)) < rng.random((50, 1, 1))
    pred = rng.random((50, 16, 16)) < rng.random((50, 1, 1))
    ours = scores(confusion(truth, pred))["jaccard"]
    for t, p, j in zip(truth, pred, ours, strict=True):
        union = len(set(zip(*np.nonzero(t), strict=True)) | set(zip(*np.nonzero(p), strict=True)))
        inter = len(set(zip(*np.nonzero(t), strict=True)) & set(zip(*np.nonzero(p), strict=True)))
        assert j == pytest.approx(inter / union) if union else np.isnan(j)


def test_table1_averages_only_where_both_mark_arms():
    # four galaxies at th=3: both arms (J=1/2 and J=1), volunteers only, neither
    counts = np.array([[1, 1, 0, 2], [2, 0, 0, 2], [0, 0, 3, 1], [0, 0, 0, 4]])
    per = per_galaxy_table(np.array(["a", "b", "c", "d"]), 3, "train_size", counts)
    row = table1(per)[0]
    assert row["N_TEST"] == 4 and row["N_BOTH_ARMS"] == 2
    assert row["SHARE_BOTH_NONE"] == pytest.approx(0.25)
    assert row["JACCARD_MEAN"] == pytest.approx(0.75)
    assert row["JACCARD_STD"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    assert row["PRECISION_MEAN"] == pytest.approx(0.75)
    assert row["ACCURACY_MEAN"] == pytest.approx((0.75 + 1.0) / 2)
    assert row["POOLED_IOU"] == pytest.approx(3 / 7)
    assert (
        "| train_size | 3 | 4 | 2 | 25% | 0.88 ± 0.18 | 0.75 ± 0.35 | 0.75 ± 0.35 | 0.429 |"
        in table1_markdown(table1(per))
    )
    d = detection(per)[0]
    assert (d["TP"], d["FP"], d["FN"], d["TN"]) == (2, 0, 1, 1)
    assert d["RECALL"] == pytest.approx(2 / 3) and d["PRECISION"] == pytest.approx(1.0)


def test_the_detection_auc_tells_a_detector_from_a_head_that_marks_every_galaxy():
    # four galaxies the volunteers marked (TP or FN > 0), four they did not; every galaxy has a
    # marked pixel at the cut, so recall is perfect for both heads and only the ranking differs
    counts = np.array([[5, 1, 0, 94]] * 4 + [[0, 3, 0, 97]] * 4)
    ids = np.array([f"g{i}" for i in range(8)])
    detector = per_galaxy_table(
        ids, 3, "train_size", counts, np.array([0.9, 0.8, 0.95, 0.7, 0.6, 0.55, 0.65, 0.52])
    )
    bulges = per_galaxy_table(
        ids, 3, "train_size", counts, np.array([0.9, 0.6, 0.7, 0.5, 0.95, 0.52, 0.8, 0.45])
    )
    assert detection(detector)[0]["RECALL"] == pytest.approx(1.0)
    assert detection(bulges)[0]["RECALL"] == pytest.approx(1.0)
    assert detection(detector)[0]["AUC"] == pytest.approx(1.0)
    assert detection(bulges)[0]["AUC"] == pytest.approx(0.5)  # 8 of the 16 pairs ranked right
    assert np.isnan(detection(per_galaxy_table(ids, 3, "train_size", counts))[0]["AUC"])  # no probabilities
    assert np.isnan(detection(per_galaxy_table(ids[:4], 3, "train_size", counts[:4], np.ones(4)))[0]["AUC"])


def test_pooled_iou_differs_from_the_per_image_mean():
    counts = np.array([[1, 9, 0, 0], [90, 10, 0, 0]])  # a poor small galaxy, a good big one
    assert pooled_iou(counts) == pytest.approx(91 / 110)
    assert np.nanmean(scores(counts)["jaccard"]) == pytest.approx((0.1 + 0.9) / 2)


def test_ring_ranking_intervals_bracket_the_mean_and_shrink_to_a_point_when_galaxies_agree():
    from astropy.table import Table

    from galseg.metrics import ring_ranking

    spread = ring_ranking(Table({"RING_AUC": [0.6, 0.7, 0.8, 0.9, np.nan], "BRIGHTNESS_RING_AUC": [0.5] * 5}))
    assert spread["N_RING"] == 4 and spread["RING_AUC"] == pytest.approx(0.75)
    assert 0.6 <= spread["RING_AUC_LO"] < 0.75 < spread["RING_AUC_HI"] <= 0.9
    assert spread["BEATS_BRIGHTNESS_LO"] == pytest.approx(1.0)
    assert spread["BEATS_BRIGHTNESS_HI"] == pytest.approx(1.0)
    same = ring_ranking(Table({"RING_AUC": [0.7] * 6, "BRIGHTNESS_RING_AUC": [0.8, 0.6] * 3}))
    assert same["RING_AUC_LO"] == pytest.approx(0.7) and same["RING_AUC_HI"] == pytest.approx(0.7)
    assert same["BEATS_BRIGHTNESS_LO"] < 0.5 < same["BEATS_BRIGHTNESS_HI"]
