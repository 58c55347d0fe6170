"""Shared fixtures: a small synthetic IMDB-WIKI set, made once per test session."""

from __future__ import annotations

import os

import pandas as pd
import pytest

REAL_WIKI = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imdb-wiki", "wiki.mat")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """600 rows with every defect kind, duplicates at 10% so dedup is measurable."""
    from age_tf.synthetic import synth

    out = str(tmp_path_factory.mktemp("synth"))
    synth.generate(
        synth.SynthConfig(num_images=600, seed=3, duplicate_rate=0.1, min_size=48, max_size=96,
                          workers=2),
        out,
    )
    return out


@pytest.fixture(scope="session")
def truth(synth_dir):
    return pd.read_csv(os.path.join(synth_dir, "ground_truth.csv"))


@pytest.fixture(scope="session")
def prepared(synth_dir, tmp_path_factory):
    """prepare() over the synthetic set with default parameters (but keep every image)."""
    from age_tf.data import prepare

    out = str(tmp_path_factory.mktemp("prepared"))
    report = prepare.prepare(prepare.PrepareConfig(
        mat=os.path.join(synth_dir, "imdb.mat"), images_dir=os.path.join(synth_dir, "imdb_crop"),
        out_dir=out, sample_fraction=1.0, workers=2))
    return out, report


@pytest.fixture
def real_wiki():
    path = os.path.abspath(REAL_WIKI)
    if not os.path.exists(path):
        pytest.skip(f"real wiki.mat not found at {path}")
    return path


@pytest.fixture(scope="session")
def trained_run(prepared, tmp_path_factory):
    """A tiny finished run (in-process): 32 px MobileNetV2, 2 short epochs."""
    from age_tf.data import pipeline
    from age_tf.train import models, training

    data_dir = prepared[0]
    model_dir = str(tmp_path_factory.mktemp("evalrun") / "run")
    training.train_and_evaluate(training.TrainConfig(
        data_dir=data_dir, model_dir=model_dir,
        model=models.ModelConfig(image_size=32, weights="none", tune="full", bn_momentum=0.9),
        pipeline=pipeline.PipelineConfig(image_size=32, batch_size=16, deterministic=True),
        epochs=2, steps_per_epoch=4, strategy="one_device", log_every=0))
    return model_dir, data_dir
