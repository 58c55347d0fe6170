"""Tests for age_tf.evaluate.baselines: the rows every CNN must beat."""

import numpy as np
import pytest

from age_tf.data import prepared as prepared_lib
from age_tf.evaluate import baselines, report


@pytest.fixture(scope="module")
def result(prepared):
    return baselines.compute(prepared[0], bootstrap=50)


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    """1,500 synthetic rows (small images): enough test faces for a clear answer."""
    from age_tf.data import prepare
    from age_tf.synthetic import synth

    root = tmp_path_factory.mktemp("larger")
    synth.generate(synth.SynthConfig(num_images=1500, seed=5, min_size=40, max_size=56, workers=2),
                   str(root / "raw"))
    prepare.prepare(prepare.PrepareConfig(mat=str(root / "raw" / "imdb.mat"),
                                          images_dir=str(root / "raw" / "imdb_crop"),
                                          out_dir=str(root / "data"), sample_fraction=1.0,
                                          workers=2))
    return baselines.compute(str(root / "data"), bootstrap=200)


def test_median_row_is_the_training_median(prepared, result):
    train, _ = prepared_lib.load_manifest(prepared[0], "train")
    test, _ = prepared_lib.load_manifest(prepared[0], "test")
    median = np.median(train["age"])
    assert result["median"]["value"] == median
    assert result["median"]["mae_years"] == pytest.approx(np.mean(np.abs(test["age"] - median)))
    assert np.isnan(result["median"]["plcc"])  # a constant has no correlation


def test_ridge_on_pixels_learns_the_rendered_age_cues(larger):
    # The synthetic faces' look depends on age: even a linear model on pixels picks it up.
    ridge, median = larger["ridge"], larger["median"]
    assert ridge["plcc_ci95"][0] > 0.2 and ridge["srocc_ci95"][0] > 0.2
    assert ridge["mae_years"] < median["mae_years"]
    assert ridge["alpha"] in baselines.ALPHAS


def test_table2_shows_baselines_with_undefined_correlations_as_dashes(result):
    text = report.table2_markdown([], baselines.table_rows(result))
    assert "| training median | baseline |" in text and "| — |" in text
    assert "| ridge on pixels | baseline |" in text and "A CNN row that does not beat them" in text


def test_baselines_against_rendered_ages(prepared, synth_dir):
    import os

    r = baselines.compute(prepared[0], bootstrap=20,
                          ground_truth=os.path.join(synth_dir, "ground_truth.csv"))
    assert np.isnan(r["median"]["rendered"]["plcc"])
    assert r["median"]["rendered"]["mae_years"] > 0
    assert -1 <= r["ridge"]["rendered"]["plcc"] <= 1
    text = report.table2_markdown([], baselines.table_rows(r))
    assert "rendered age: MAE" in text and "planted errors" in text
