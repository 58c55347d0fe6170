"""Pretrains the stand-in backbones that `--weights=standin` loads (and the demo uses).

Run by hand, for hours on 2 CPU cores; writes age_tf/standin/<backbone>.npz (float16)
and <backbone>.json (the card: this command, corpus, objective, epochs, figures):
  python tools/pretrain_standin.py --backbones=mobilenet_v2 --epochs=12
  python tools/pretrain_standin.py --backbones=efficientnet_b3 --epochs=8
  # then continue it with BatchNorm frozen (the shipped EfficientNet-B3: the 8 epochs above,
  # then 2 at 1e-4, 6 and 8 at 3e-4, each like this; its card keeps every step under "init"):
  python tools/pretrain_standin.py --backbones=efficientnet_b3 --epochs=2 --learning_rate=1e-4 \
      --init=age_tf/standin/efficientnet_b3.npz --freeze_batchnorm

Why EfficientNet-B3 needs the second step: trained with batch statistics, its inference-mode
network gives a few faces features far off the rest, and heads tuned on top extrapolate them
(docs/measurements.md); with BatchNorm frozen the loss sees the network that ships. The card
records the feature norms (pretraining.feature_norms); tests/test_standin.py re-checks them.

Corpus: --num_images synthetic faces of new people (age_tf.standin.pretraining.render_corpus:
another random stream than age-tf-synth's, so no demo person is in it), 10% of the people
held out for validation. Objective: the rendered age (MAE on age/100) plus the person's
traits (gender, beard, hair and skin colour, face shape...; MSE on standardized values,
weight --attribute_weight). Training uses the true rendered ages: no label noise.

Why age is in the objective: the issue asked for traits alone if that reaches the demo's
targets; one pretraining of EfficientNet-B3 costs about an hour here, so there was budget
for one objective, and the traits alone leave wrinkles, eye bags and proportions unlearned.
The consequence, said in the card and the report: head-only tuning starts from features
that already encode age, which ImageNet features do not.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from age_tf import labels
from age_tf.standin import pretraining
from age_tf.train import standin_weights as weights

FLAGS = flags.FLAGS
flags.DEFINE_list("backbones", ["mobilenet_v2", "efficientnet_b3"], "Backbones to pretrain.")
flags.DEFINE_list("epochs", ["12"], "Epochs, one per backbone (or one for all).")
flags.DEFINE_integer("num_images", 30000, "Faces in the corpus.")
flags.DEFINE_integer("seed", 1, "Corpus seed (people, ages, renders).")
flags.DEFINE_integer("image_size", 64, "Input size (the demo's).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam's peak learning rate (cosine decay to 0).")
flags.DEFINE_float("attribute_weight", 0.5, "Weight of the traits' loss beside age's.")
flags.DEFINE_float("val_fraction", 0.1, "Share of the people held out for validation.")
flags.DEFINE_string("init", "", "A .npz this tool wrote: start from its weights (backbone and "
                    "head) instead of random ones; its card is kept in the new card.")
flags.DEFINE_bool("freeze_batchnorm", False,
                  "Train every weight with every BatchNorm layer in inference mode (moving "
                  "statistics fixed), so the network the loss sees is the network that ships. "
                  "Settles a backbone whose batch-statistics and moving-statistics outputs "
                  "disagree (EfficientNet-B3: feature norms ~100x the median on ~1% of faces).")
flags.DEFINE_string("work_dir", "/tmp/age_tf_standin", "Corpus cache and checkpoints.")
flags.DEFINE_string("out_dir", weights.STANDIN_DIR, "Where the weights and cards go.")


def corpus(work_dir: str) -> dict:
    path = os.path.join(work_dir, f"corpus_{FLAGS.num_images}_{FLAGS.seed}_{FLAGS.image_size}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return dict(f)
    t = time.monotonic()
    c = pretraining.render_corpus(FLAGS.num_images, FLAGS.seed, FLAGS.image_size)
    logging.info("rendered %d faces in %.0f s", FLAGS.num_images, time.monotonic() - t)
    os.makedirs(work_dir, exist_ok=True)
    np.savez(path, **c)
    return c


def split(c: dict) -> tuple[dict, dict]:
    people = np.unique(c["identity"])
    rng = np.random.default_rng(FLAGS.seed)
    val_people = rng.choice(people, int(len(people) * FLAGS.val_fraction), replace=False)
    val = np.isin(c["identity"], val_people)
    return ({k: v[~val] for k, v in c.items()}, {k: v[val] for k, v in c.items()})


def dataset(part: dict, mean, std, train: bool) -> tf.data.Dataset:
    targets = {"age": labels.to_label(part["age"][:, None]),
               "attributes": (part["attributes"] - mean) / std}
    ds = tf.data.Dataset.from_tensor_slices((part["images"], targets))
    if train:
        ds = ds.shuffle(len(part["age"]), seed=FLAGS.seed, reshuffle_each_iteration=True)

    def prep(img, y):
        img = tf.cast(img, tf.float32)
        return (tf.image.random_flip_left_right(img) if train else img), y
    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).batch(FLAGS.batch_size).prefetch(2)


def _run_key(backbone: str, epochs: int) -> str:
    """Names a run's checkpoint folder by everything it computes from, so BackupAndRestore
    only ever resumes the same run: an interrupted continuation (--init) is not restored
    into the next one with another starting file, learning rate or epoch count."""
    h = hashlib.sha256(repr((backbone, epochs, FLAGS.num_images, FLAGS.seed, FLAGS.image_size,
                             FLAGS.batch_size, FLAGS.learning_rate, FLAGS.attribute_weight,
                             FLAGS.val_fraction, FLAGS.freeze_batchnorm)).encode())
    if FLAGS.init:
        with open(FLAGS.init, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def pretrain(backbone: str, epochs: int, train: dict, val: dict) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(FLAGS.seed)
    mean, std = train["attributes"].mean(0), train["attributes"].std(0) + 1e-6
    if FLAGS.init:
        model = pretraining.load_pretrain_model(backbone, FLAGS.image_size, FLAGS.init)
        with open(FLAGS.init[:-4] + ".json") as f:
            init_card = json.load(f)
    else:
        model, init_card = pretraining.pretrain_model(backbone, FLAGS.image_size), None
    for layer in weights.nested_backbone(model).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.99  # Keras' 0.999 suits fine-tuning, not training from scratch.
            # Keras 3 runs a non-trainable BatchNormalization in inference mode.
            layer.trainable = not FLAGS.freeze_batchnorm
    steps = epochs * int(np.ceil(len(train["age"]) / FLAGS.batch_size))
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(FLAGS.learning_rate, steps)),
        loss={"age": "mae", "attributes": "mse"},
        loss_weights={"age": 1.0, "attributes": FLAGS.attribute_weight})
    run_dir = os.path.join(FLAGS.work_dir, f"{backbone}-{_run_key(backbone, epochs)}")
    os.makedirs(run_dir, exist_ok=True)
    t = time.monotonic()
    hist = model.fit(
        dataset(train, mean, std, True), validation_data=dataset(val, mean, std, False),
        epochs=epochs, verbose=2,
        callbacks=[keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
                   keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True)])
    seconds = time.monotonic() - t
    path = os.path.join(FLAGS.out_dir, f"{backbone}.npz")
    weights.save(model, path)
    # The figures of what ships (float16, reloaded), not of the float32 model in memory.
    stored = pretraining.load_pretrain_model(backbone, FLAGS.image_size, path)
    val_fig = {**pretraining.age_figures(stored, val),
               "feature_norm": pretraining.feature_norms(stored, val["images"])}
    check = pretraining.check_figures(backbone, FLAGS.image_size, path)
    n_params = int(sum(np.prod(w.shape) for w in weights.nested_backbone(stored).weights))
    card = {
        "backbone": backbone,
        "what": "a stand-in for ImageNet weights: this backbone pretrained on synthetic faces "
                "(age_tf's renderer), not on photographs",
        "command": "python tools/pretrain_standin.py " + " ".join(sys.argv[1:]),
        "corpus": {"images": FLAGS.num_images, "seed": FLAGS.seed, "image_size": FLAGS.image_size,
                   "people": int(len(np.unique(np.r_[train["identity"], val["identity"]]))),
                   "train_images": int(len(train["age"])), "val_images": int(len(val["age"])),
                   "ages": "half IMDB-like, half uniform 0-100, rendered ages (no label noise)",
                   "disjoint_from_demo": "drawn from another random stream than age-tf-synth: "
                                         "no person of any demo set is in it"},
        "objective": {"age": "MAE on rendered age / 100 (weight 1)",
                      "attributes": f"MSE on standardized {list(pretraining.ATTRIBUTES)} "
                                    f"(weight {FLAGS.attribute_weight})",
                      "note": "age is part of the objective, so head-only tuning starts from "
                              "features that already encode age (ImageNet features do not)"},
        "training": {"epochs": epochs, "batch_size": FLAGS.batch_size,
                     "optimizer": f"Adam, cosine decay from {FLAGS.learning_rate}",
                     "augmentation": "horizontal flip", "batchnorm_momentum": 0.99,
                     "batchnorm": "frozen (inference mode)" if FLAGS.freeze_batchnorm
                                  else "trained (batch statistics)",
                     "seconds": round(seconds), "cores": os.cpu_count(),
                     "final_loss": float(hist.history["loss"][-1]),
                     "final_val_loss": float(hist.history["val_loss"][-1])},
        "backbone_params": n_params,
        "dtype": "float16 (arrays whose values do not fit keep float32)",
        "val": val_fig,
        "check": {"seed": pretraining.CHECK_SEED, "images": pretraining.CHECK_IMAGES, **check},
        "init": init_card,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    with open(os.path.join(FLAGS.out_dir, f"{backbone}.json"), "w") as f:
        json.dump(card, f, indent=1)
    logging.info("%s: val %s, check %s, %.0f s", backbone, val_fig, check, seconds)
    return card


def main(_):
    epochs = [int(e) for e in FLAGS.epochs]
    if len(epochs) == 1:
        epochs *= len(FLAGS.backbones)
    if len(epochs) != len(FLAGS.backbones):
        raise app.UsageError("--epochs: give one value, or one per --backbones entry")
    if FLAGS.init:
        missing = [p for p in (FLAGS.init, FLAGS.init[:-4] + ".json") if not os.path.isfile(p)]
        if not FLAGS.init.endswith(".npz") or missing or len(FLAGS.backbones) != 1:
            raise app.UsageError(f"--init={FLAGS.init}: needs one --backbones entry and an .npz "
                                 f"this tool wrote, with its .json card beside it (missing: {missing})")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    train, val = split(corpus(FLAGS.work_dir))
    logging.info("corpus: %d train, %d val images", len(train["age"]), len(val["age"]))
    for backbone, e in zip(FLAGS.backbones, epochs):
        pretrain(backbone, e, train, val)


if __name__ == "__main__":
    app.run(main)
