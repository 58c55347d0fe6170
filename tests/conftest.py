"""Shared fixtures: a small synthetic IMDB-WIKI set, made once per test session, and a tiny
training configuration; the split of the suite into its fast and integration tiers."""

from __future__ import annotations

import os

import pandas as pd
import pytest

# Fixtures that synthesize a release, prepare it or train on it: a test that uses one (or a
# fixture built on one) is in the integration tier; `-m "not integration"` is the fast tier.
INTEGRATION_FIXTURES = {"synth_dir", "prepared", "trained_run", "served"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


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


def _tiny_config(data_dir: str, model_dir: str, *, image_size: int = 32, batch_size: int = 16,
                 cache: str = "", model: dict | None = None, **train):
    """The tests' tiny in-process run: MobileNetV2 at 32 px from random weights, every layer
    trained (BatchNorm momentum 0.9, so short runs validate sensibly), one device. Binned
    intervals unless asked: the learned scale's extra pass over train and val is the
    served runs' to test (trained_run, the demo config), not every tiny run's."""
    from age_tf.data import pipeline
    from age_tf.train import models, train_config

    model_kw = {"image_size": image_size, "weights": "none", "tune": "full", "bn_momentum": 0.9,
                **(model or {})}
    train = {"epochs": 2, "strategy": "one_device", "log_every": 0,
             "interval_method": "binned", **train}
    return train_config.TrainConfig(
        data_dir=data_dir, model_dir=model_dir, model=models.ModelConfig(**model_kw),
        pipeline=pipeline.PipelineConfig(batch_size=batch_size, cache=cache), **train)


@pytest.fixture
def tiny_config():
    """Builds the tiny training config (see _tiny_config); keywords override it."""
    return _tiny_config


@pytest.fixture(scope="session")
def trained_run(prepared, tmp_path_factory):
    """A tiny finished run (in-process): 32 px MobileNetV2, 2 short epochs."""
    from age_tf.train import training

    data_dir = prepared[0]
    model_dir = str(tmp_path_factory.mktemp("evalrun") / "run")
    training.train_and_evaluate(_tiny_config(data_dir, model_dir, steps_per_epoch=4,
                                             interval_method="normalized"))
    return model_dir, data_dir


@pytest.fixture(scope="module")
def served(trained_run):
    """age-tf-serve on a free loopback port (in a thread, its own event loop), serving the
    tiny run: (base URL, the AgeServer)."""
    import asyncio
    import socket
    import threading

    from aiohttp import web

    from age_tf.serve import server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = server.ServeConfig(model=trained_run[0], port=port, max_upload_mb=8)
    age_server = server.AgeServer(cfg)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(age_server.app())
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(60)
    yield f"http://127.0.0.1:{port}", age_server
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
