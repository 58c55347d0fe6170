"""SavedModel export with two serving signatures, both returning age and its interval in
years, and the model card inside."""

from __future__ import annotations

import hashlib
import os
import shutil

import keras
import tensorflow as tf
from absl import logging

from age_tf import export_format, fileio, labels
from age_tf.data import pipeline, prepared
from age_tf.export_format import BYTES_SIGNATURE, IMAGES_SIGNATURE
from age_tf.train import card as card_module
from age_tf.train import intervals, models
from age_tf.train.run_dir import RunDir
from age_tf.train.train_config import (  # noqa: F401  (the export's flags)
    FILE_FORMATS,
    FORMATS,
    QUANTIZATIONS,
    ExportConfig,
    TrainConfig,
)


def interval_fn(calibration: dict | None):
    """(age [N], pooled features [N, D] or None) -> {"age", "age_low", "age_high"} in graph
    ops (TFLite builtins only), as intervals.interval computes it; with no calibration, just
    {"age"}."""
    if not calibration:
        return lambda age, features=None: {"age": age}
    low_end, high_end = calibration.get("age_range") or (0.0, None)
    normalized = calibration.get("method") == intervals.NORMALIZED
    if normalized:
        weights = tf.constant(calibration["scale_weights"], tf.float32)
        bias, q = float(calibration["scale_bias"]), float(calibration["quantile"])
        floor = float(calibration.get("scale_min", intervals.MIN_SCALE))
    else:
        edges = tf.constant(calibration["edges"], tf.float32, shape=[len(calibration["edges"])])
        half = tf.constant(calibration["half_widths"], tf.float32)

    def with_interval(age, features=None):
        if high_end is not None:  # no age, nor interval end, beyond the training ages
            age = tf.clip_by_value(age, float(low_end), float(high_end))
        if normalized:
            # intervals.scale_inputs: the features, then the age / 50 and its square.
            a = age / 50.0
            x = tf.concat([tf.cast(features, tf.float32), a[:, None], (a * a)[:, None]], axis=1)
            z = tf.linalg.matvec(x, weights) + bias
            # exp - 1, not expm1: ONNX has no Expm1 (and z is far from 0 here).
            width = q * tf.maximum(tf.exp(z) - 1.0, floor)
        else:
            # Bin = number of edges <= age (numpy's searchsorted, side="right").
            bins = tf.reduce_sum(tf.cast(age[:, None] >= edges[None, :], tf.int32), axis=1)
            width = tf.gather(half, bins)
        high = age + width if high_end is None else tf.minimum(age + width, float(high_end))
        return {"age": age, "age_low": tf.maximum(age - width, float(low_end)), "age_high": high}

    return with_interval


def feature_views(model: keras.Model, calibration: dict | None):
    """(features, head) views of the model when its interval reads the pooled features
    (intervals.NORMALIZED), else None. Built once, outside any traced function."""
    if (calibration or {}).get("method") != intervals.NORMALIZED:
        return None
    return models.feature_extractor(model), models.head_model(model)


def served_years(model: keras.Model, calibration: dict | None, views):
    """images -> {"age", "age_low", "age_high"} in years, as every export serves them: one
    backbone pass (the interval's scale reads the same pooled features as the head)."""
    outputs = interval_fn(calibration)

    def years(images):
        if views is None:
            return outputs(labels.to_years(tf.cast(model(images, training=False), tf.float32)))
        extract, head = views
        f = extract(images, training=False)
        age = tf.reshape(tf.cast(head(f), tf.float32), [-1])
        return outputs(labels.to_years(age), f)

    return years


def export_saved_model(model: keras.Model, image_size: int, export_dir: str,
                       calibration: dict | None = None, card: dict | None = None) -> str:
    """Writes a SavedModel to export_dir (replacing an earlier export atomically).

    Signatures (both also return 'age_low' and 'age_high' [N] years, the calibrated
    interval, when `calibration` is given):
      serving_default(images): float32 [N, S, S, 3] pixels in [0, 255] -> {'age': [N] years}.
      serve_bytes(image_bytes): string [N] encoded JPEG/PNG -> {'age': [N] years}; decoding,
        resizing and normalization happen in the graph, exactly as in the input pipeline.

    Args:
      calibration: intervals.calibrate() of the run.
      card: the model card, written to <export_dir>/assets/model_card.json.

    Returns:
      export_dir.
    """
    size = image_size
    years = served_years(model, calibration, feature_views(model, calibration))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serve_images(images):
        # A loaded signature does not enforce its declared shape: without this, faces of
        # another size are answered with ages of nothing in particular.
        tf.debugging.assert_equal(
            tf.shape(images)[1:], tf.constant([size, size, 3]),
            message=f"images must be [N, {size}, {size}, 3] float pixels: resize the face "
                    f"crops to {size} px, or send encoded images to {BYTES_SIGNATURE}")
        return years(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            lambda data: pipeline.resize(pipeline.decode(data), size),
            image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        # Through serve_images: the model's graph is traced and stored once, not once per
        # signature (serving_default itself stays one flat graph, as TFLite converts it).
        return serve_images(tf.cast(images, tf.float32))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(IMAGES_SIGNATURE, serve_images)
    archive.add_endpoint(BYTES_SIGNATURE, serve_bytes)
    export_dir = export_dir.rstrip("/")
    tmp, old = f"{export_dir}.tmp", f"{export_dir}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    # No gradient functions: a served model is never differentiated, and tracing one per op
    # type took 12 of the 32 s an EfficientNet-B3 export took.
    archive.write_out(tmp, verbose=False, options=tf.saved_model.SaveOptions(
        experimental_custom_gradients=False))
    if card is not None:
        # The card records the bytes it describes: serving refuses a model changed since.
        card = {**card, "model_sha256": export_format.saved_model_sha256(tmp)}
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        card_module.write(card, export_format.card_path(tmp))
    # Swap in the new export; a crash in between leaves export.old, never half an export.
    if os.path.exists(export_dir):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(export_dir, old)
    os.replace(tmp, export_dir)
    shutil.rmtree(old, ignore_errors=True)
    return export_dir


def export_run(cfg: ExportConfig) -> str:
    """Writes the run's SavedModel (with its card), or a TFLite or ONNX file (card beside it).

    Returns:
      The path written.
    """
    cfg.validate()
    run = RunDir(cfg.model_dir)
    calibration = run.read_calibration()
    if cfg.format == "savedmodel":
        model = keras.models.load_model(run.model_keras)  # the trained model itself
        size = run.read_config()["model"]["image_size"]
        return export_saved_model(model, size, run.export, calibration,
                                  card_module.build(run, calibration))
    if not os.path.exists(os.path.join(run.export, "saved_model.pb")):
        raise ValueError(f"--model_dir={cfg.model_dir!r} has no SavedModel to convert; run "
                         f"age-tf-export --model_dir={cfg.model_dir} first")
    out = cfg.file_path()
    if cfg.format == "onnx":
        model = keras.models.load_model(run.model_keras)  # the trained model itself
        data = onnx_bytes(model, TrainConfig.from_run(run).model.image_size, calibration)
        return _write_file_with_card(out, data, run, calibration, "onnx", cfg.quantize)
    representative = (representative_images(run, cfg.calibration_images, cfg.data_dir)
                      if cfg.quantize == "int8" else None)
    data = tflite_bytes(run.export, cfg.quantize, representative)
    return _write_file_with_card(out, data, run, calibration, "tflite", cfg.quantize)


def _write_file_with_card(out: str, data: bytes, run: RunDir, calibration: dict | None,
                          fmt: str, quantize: str) -> str:
    """Writes a one-file model and its card (<out>.json, with the file's SHA-256)."""
    with fileio.atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    card = {**card_module.build(run, calibration), "format": fmt, "quantize": quantize,
            "file_bytes": len(data), "file_sha256": hashlib.sha256(data).hexdigest()}
    card.pop("model_sha256", None)  # the SavedModel's, not this file's
    card_module.write(card, export_format.card_path(out))
    logging.info("wrote %s (%.1f MB, %s) and its card %s.json", out, len(data) / 1e6,
                 quantize, out)
    return out


def exact_gelu(x):
    """GELU as 0.5 x (1 + erf(x / sqrt 2)): Keras' exact GELU, written with Erf, which ONNX
    has (Keras' own form converts to Erfc, which onnxruntime refuses)."""
    return 0.5 * x * (1.0 + tf.math.erf(x * tf.constant(0.7071067811865476, x.dtype)))


def onnx_bytes(model: keras.Model, image_size: int, calibration: dict | None) -> bytes:
    """The model with its interval, float images [N, S, S, 3] -> age, age_low, age_high in
    years, as an ONNX graph (opset 17). The model's exact-GELU layers are switched to the
    Erf form, in place (the same function: the SavedModel and its ONNX agree to 0.01 years
    in the tests).

    Raises:
      ValueError: tf2onnx is not installed (names the extra to install).
    """
    try:
        import tf2onnx
    except ImportError as e:
        raise ValueError("--format=onnx needs tf2onnx: pip install 'age_tf[onnx]'") from e
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if getattr(getattr(layer, "activation", None), "__name__", "") == "gelu":
            layer.activation = exact_gelu

    views = feature_views(model, calibration)

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32,
                                                name="images")])
    def serve(images):
        # The interval's constants made inside the graph: captured eager tensors would become
        # inputs of the ONNX graph.
        return served_years(model, calibration, views)(images)

    # Frozen first: every captured tensor (weights, and constants such as EfficientNet's
    # normalization statistics) becomes part of the graph, not an input of it.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    graph = frozen.graph.as_graph_def()
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs]
    names = sorted(concrete.structured_outputs)  # the order tf.nest flattens a dict in
    proto, _ = tf2onnx.convert.from_graph_def(graph, input_names=inputs, output_names=outputs,
                                              opset=17)
    for output, name in zip(proto.graph.output, names):  # the signature's names, not TF's
        _rename_output(proto.graph, output.name, name)
    return proto.SerializeToString()


def _rename_output(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for output in graph.output:
        if output.name == old:
            output.name = new


def tflite_bytes(export_dir: str, quantize: str = "none", representative=None) -> bytes:
    """A SavedModel's serving_default signature as a TFLite flatbuffer (the same outputs).

    Args:
      quantize: none, float16, or int8 (then `representative` yields {"images": batch}).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(export_dir,
                                                         signature_keys=[IMAGES_SIGNATURE])
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None:
            raise ValueError("int8 quantization needs representative images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
    return converter.convert()


def representative_images(run: RunDir, count: int, data_dir: str | None = None):
    """Training images through the input pipeline (as the model saw them), one at a time.

    Raises:
      FileNotFoundError: the run's data folder is not there (says to pass --data_dir).
    """
    cfg = TrainConfig.from_run(run)
    data_dir = data_dir or cfg.data_dir
    if not prepared.PreparedDir(data_dir).exists():
        raise FileNotFoundError(
            f"{data_dir}: the run's prepared data is not there (int8 calibrates on its training "
            "images); pass --data_dir=<where it is now>")
    manifest, images_dir = prepared.load_manifest(data_dir, "train")
    manifest = manifest.sample(n=min(count, len(manifest)), random_state=0)
    ds = pipeline.InputPipeline(manifest, images_dir, cfg.evaluation_pipeline(1),
                                cfg.model.image_size, training=False).dataset()

    def gen():
        for images, _ in ds:
            yield {"images": tf.cast(images, tf.float32)}

    return gen
