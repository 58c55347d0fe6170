"""The heads: each loss against a hand computation, each decoding on hand-made outputs, and
each head trained, exported and served (SavedModel and TFLite) as the Keras model answers."""

import dataclasses
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from age_tf import labels
from age_tf.serve import served_model
from age_tf.train import export, heads, models

W = heads.LossWeights()
AGES_3 = [20.0, 0.4, 107.0]  # a mid age, a baby (rounds to 0), past the last class (-> 100)
CLASSES_3 = [20, 0, 100]


def _logits(seed=0, n=101):
    return np.random.default_rng(seed).normal(0, 2, (3, n)).astype(np.float32)


def _loss(name, raw):
    y = tf.constant(labels.to_label(np.array(AGES_3, np.float32)))
    return heads.HEADS[name].loss(y, tf.constant(raw), W).numpy()


def _softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def test_regression_loss_is_the_absolute_error_in_label_units():
    raw = np.array([0.25, 0.1, 1.0], np.float32)
    expected = [abs(0.25 - 0.2), abs(0.1 - 0.004), abs(1.0 - 1.07)]
    np.testing.assert_allclose(_loss("regression", raw), expected, atol=1e-5)


def test_classification_loss_is_cross_entropy_on_the_whole_year():
    z = _logits(1)
    expected = []
    for row, k in zip(z.tolist(), CLASSES_3):
        expected.append(-math.log(_softmax(row)[k]))
    np.testing.assert_allclose(_loss("classification", z), expected, rtol=1e-5, atol=1e-5)


def test_dldl_loss_is_kl_to_a_gaussian_plus_l1_on_the_expectation():
    z = _logits(2)
    expected = []
    for row, k in zip(z.tolist(), CLASSES_3):
        g = [math.exp(-(a - k) ** 2 / (2 * 2.0 ** 2)) for a in range(101)]
        t = [v / sum(g) for v in g]
        p = _softmax(row)
        kl = sum(ti * (math.log(ti) - math.log(pi)) for ti, pi in zip(t, p) if ti > 0)
        mean = sum(a * pi for a, pi in enumerate(p))
        expected.append(kl + 1.0 * abs(mean - k))
    np.testing.assert_allclose(_loss("dldl", z), expected, rtol=1e-5, atol=1e-5)


def test_mean_variance_loss_is_pan_et_al():
    z = _logits(3)
    expected = []
    for row, k in zip(z.tolist(), CLASSES_3):
        p = _softmax(row)
        mean = sum(a * pi for a, pi in enumerate(p))
        variance = sum((a - mean) ** 2 * pi for a, pi in enumerate(p))
        expected.append(-math.log(p[k]) + 0.2 * (mean - k) ** 2 / 2 + 0.05 * variance)
    np.testing.assert_allclose(_loss("mean_variance", z), expected, rtol=1e-5, atol=1e-4)


def test_ordinal_loss_is_binary_cross_entropy_over_the_ranks():
    z = _logits(4, 100)
    expected = []
    for row, k in zip(z.tolist(), CLASSES_3):
        total = 0.0
        for rank, logit in enumerate(row):
            p = 1 / (1 + math.exp(-logit))
            total -= math.log(p) if rank < k else math.log(1 - p)  # "older than rank"
        expected.append(total)
    np.testing.assert_allclose(_loss("ordinal", z), expected, rtol=1e-5, atol=1e-4)


def test_expected_age_decodes_the_softmax_expectation():
    z = np.full((3, 101), -50.0, np.float32)
    z[0, 30] = 50.0  # all mass on 30
    z[1, 20] = z[1, 40] = 50.0  # half on 20, half on 40
    z[2] = 0.0  # uniform over 0..100
    years = labels.to_years(np.asarray(heads.ExpectedAge()(z)))
    np.testing.assert_allclose(years, [30.0, 30.0, 50.0], atol=1e-4)


def test_ranks_passed_counts_the_positive_rank_logits():
    z = np.where(np.arange(100)[None, :] < np.array([[37], [0], [100]]), 1.5, -0.5)
    years = labels.to_years(np.asarray(heads.RanksPassed()(z.astype(np.float32))))
    np.testing.assert_allclose(years, [37.0, 0.0, 100.0], atol=1e-4)


def test_rank_logits_share_one_weight_vector():
    layer = heads.RankLogits(100)
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    out = np.asarray(layer(x))
    # Every face's logits differ from rank to rank by the biases alone: the ranks cannot cross.
    np.testing.assert_allclose(out - out[:, :1], np.tile(np.asarray(layer.bias) -
                                                         np.asarray(layer.bias)[0], (4, 1)),
                               atol=1e-5)
    assert [w.shape for w in layer.weights] == [(8, 1), (100,)]


def test_distribution_interval_takes_the_central_mass():
    probs = np.zeros((2, 101))
    probs[0, [10, 20, 30]] = [0.02, 0.96, 0.02]  # both tails inside 5%: one age
    probs[1, [10, 20, 30]] = [0.1, 0.8, 0.1]  # 10% in each tail: both ends kept
    low, high = heads.distribution_interval(probs, 0.9)
    assert low.tolist() == [20.0, 10.0] and high.tolist() == [20.0, 30.0]


def test_an_unknown_head_is_refused_naming_the_flag():
    with pytest.raises(ValueError, match="--head"):
        models.ModelConfig(head="softmax", weights="none").validate()


def test_every_head_builds_with_its_output_and_the_served_age():
    for name in heads.HEADS:
        model = models.build_model(models.ModelConfig(head=name, image_size=32, weights="none",
                                                      head_units=(8,)))
        raw = models.raw_model(model)
        x = np.zeros((2, 32, 32, 3), np.float32)
        assert np.asarray(model(x)).shape == (2,)
        width = {"regression": None, "ordinal": 100}.get(name, 101)
        assert np.asarray(raw(x)).shape == ((2,) if width is None else (2, width))


# Each head through the path users run: trained on the prepared demo-like set (head-only on
# cached features), exported as SavedModel and float32 TFLite, served within 0.01 years of
# the Keras model. Regression's chain is test_served's and the tiny experiment's test trains
# and evaluates an ordinal run (trained, exported, evaluated through the protocol); each
# head's layers are built and decoded in the tests above: the chains in the slow tier (the
# default suite's 10 minutes).
@pytest.mark.integration
@pytest.mark.parametrize("head", [
    pytest.param("regression", marks=pytest.mark.slow),
    pytest.param("classification", marks=pytest.mark.slow),
    pytest.param("ordinal", marks=pytest.mark.slow),
    pytest.param("dldl", marks=pytest.mark.slow),
    pytest.param("mean_variance", marks=pytest.mark.slow)])
def test_each_head_trains_exports_and_serves_as_trained(head, prepared, tiny_config, tmp_path):
    from age_tf.data import pipeline
    from age_tf.data import prepared as prepared_lib
    from age_tf.train import training

    data_dir = prepared[0]
    model_dir = str(tmp_path / "run")
    cfg = tiny_config(data_dir, model_dir, model={"head": head, "tune": "head"},
                      feature_cache=True, epochs=2, steps_per_epoch=6, learning_rate=3e-3)
    result = training.train_and_evaluate(cfg)
    assert np.isfinite(result["val"]["mae_years"])
    card = json.load(open(os.path.join(model_dir, "export", "assets", "model_card.json")))
    assert card["model"]["head"] == head and card["model"]["loss"]

    manifest, images_dir = prepared_lib.load_manifest(data_dir, "test")
    faces = np.stack([pipeline.resize(pipeline.decode(tf.io.read_file(
        os.path.join(images_dir, p))), 32).numpy() for p in manifest["path"][:12]])
    faces = faces.astype(np.float32)
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    low, high = json.load(open(os.path.join(model_dir, "intervals.json")))["age_range"]
    expected = np.clip(labels.to_years(np.asarray(model(faces), np.float64)), low, high)

    saved = served_model.AgeModel(model_dir)
    np.testing.assert_allclose(saved.ages(faces), expected, atol=0.01)
    tflite = str(tmp_path / "model.tflite")
    export.export_run(export.ExportConfig(model_dir=model_dir, format="tflite", out=tflite))
    np.testing.assert_allclose(served_model.AgeModel(tflite).ages(faces), expected, atol=0.01)


def test_experiment_runs_name_a_head_and_full_runs_start_from_their_own_head(tmp_path):
    from age_tf import experiment

    cfg = experiment.ExperimentConfig(out_dir=str(tmp_path), runs=(
        "mobilenet_v2_head", "mobilenet_v2_head@classification", "mobilenet_v2_full@classification"))
    runs = experiment.run_configs(cfg)
    assert list(runs) == ["mobilenet_v2_head", "mobilenet_v2_head_classification",
                          "mobilenet_v2_full_classification"]
    assert [rc.model.head for rc in runs.values()] == ["regression", "classification",
                                                       "classification"]
    # Its layers are the classification head's: it starts from that run, not regression's.
    assert runs["mobilenet_v2_full_classification"].init_from == \
        runs["mobilenet_v2_head_classification"].model_dir
    with pytest.raises(ValueError, match="--runs.*softmax"):
        experiment.run_configs(dataclasses.replace(cfg, runs=("mobilenet_v2_head@softmax",)))
    with pytest.raises(ValueError, match="--head=ordinal"):
        experiment.run_configs(dataclasses.replace(cfg, runs=("mobilenet_v2_head",
                                                              "mobilenet_v2_full@ordinal")))


@pytest.mark.parametrize("head", ["classification", "dldl", "ordinal"])
def test_labels_past_the_last_class_are_refused_not_clipped(head, prepared, tiny_config,
                                                            tmp_path):
    """A prepared set with a label of 120 (age-tf-prepare --max_age goes to 150): the heads
    with classes 0-100 refuse it before any work, naming the file and the fixes (they
    trained it as a 100 and served intervals up to 120 before); regression takes it."""
    import pandas as pd

    from age_tf.data import prepare
    from age_tf.errors import DataError
    from age_tf.train import training

    data_dir = str(tmp_path / "data")
    prepare.copy_prepared(prepared[0], data_dir, skip=())
    train = pd.read_csv(os.path.join(data_dir, "train.csv"))
    train.loc[:2, "age"] = 120
    train.to_csv(os.path.join(data_dir, "train.csv"), index=False)
    cfg = tiny_config(data_dir, str(tmp_path / "run"), model={"head": head})
    with pytest.raises(DataError, match=r"train\.csv: 3 label\(s\) above 100 \(oldest 120\), but "
                                        rf"--head={head} has classes 0-100 only; prepare with "
                                        r"--max_age=100, or train --head=regression"):
        training.train_and_evaluate(cfg)
    training.check_head_ages(dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, head="regression")), {"train": train})


def test_the_benchmark_refuses_a_class_head_with_ages_past_its_classes():
    from age_tf import benchmark

    with pytest.raises(ValueError, match="--heads=dldl: .* classes 0-100, and --max_age=101 "
                                         "keeps older faces; pass --max_age=100"):
        benchmark.BenchmarkConfig(out_dir="x", heads=("regression", "dldl")).validate()
    benchmark.BenchmarkConfig(out_dir="x", heads=("regression", "dldl"), max_age=100).validate()
