"""age-tf-serve: one long-running process answering ages over HTTP.

The model and the face detector are loaded once. Two surfaces:
  - TF Serving's REST API for the served model (what TF clients speak):
      GET  /v1/models/age            status
      GET  /v1/models/age/metadata   signatures and the model card
      POST /v1/models/age:predict    {"instances": [{"b64": face crop bytes} | pixels, ...]}
                                      -> {"predictions": [{"age", "age_low", "age_high"}]}
    errors in TF Serving's form, {"error": "..."};
  - POST /v1/analyze: a photo (multipart upload, or JSON {"image": {"b64": ...}}) -> every
    face with its box, landmarks, confidence, age and interval, and the card's summary
    (what deepface's /analyze answers, and what age-tf-predict prints); with
    ?thresholds=18,25 (&decision_error=0.05&decision_band=5) each face's decision at each
    threshold too, and the cuts with the error they promise;
  - GET / : a page to try it in a browser (serve/page.html, no external script or font).

Bounded: a request body over --max_upload_mb is refused (413) before it is read whole; a
photo over --max_megapixels is refused from its header (400); at most --queue_size requests
wait (503 beyond); each has --timeout seconds. Concurrent face crops go through the model
together (micro-batching: one model call for whatever arrived within --batch_wait_ms, at
most --batch_size faces). Nothing a request sends is written to disk. One log line per
request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from age_tf import decisions, export_format, progress
from age_tf.data import pipeline
from age_tf.serve import photos
from age_tf.serve.serve_config import ServeConfig  # noqa: F401  (its flags)
from age_tf.serve.served_model import AgeModel

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
MAX_INSTANCES = 256  # face crops in one :predict request


class RequestError(ValueError):
    """A bad request: answered with `status` and the message, the server carries on."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Batcher:
    """Face crops from concurrent requests -> one model call (micro-batching).

    Requests put (crops, future) on a queue; one task takes whatever waits (up to
    batch_size crops, within batch_wait_ms of the first), runs the model once in a worker
    thread and hands each request its rows.
    """

    def __init__(self, model: AgeModel, executor, batch_size: int, wait_ms: float):
        self.model, self.executor = model, executor
        self.batch_size, self.wait = batch_size, wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()
        self.calls = 0  # model calls made (the tests see requests share them)

    async def ages(self, crops: np.ndarray) -> dict:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((crops, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            parts = [await self.queue.get()]
            count = len(parts[0][0])
            deadline = loop.time() + self.wait
            while count < self.batch_size:
                try:
                    part = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                except (TimeoutError, ValueError):
                    break
                parts.append(part)
                count += len(part[0])
            batch = np.concatenate([c for c, _ in parts])
            try:
                out = await loop.run_in_executor(self.executor, self.model, batch,
                                                 self.batch_size)
                self.calls += 1
            except Exception as e:  # noqa: BLE001 (every waiting request is told)
                for _, f in parts:
                    if not f.done():
                        f.set_exception(e)
                continue
            start = 0
            for crops, f in parts:
                if not f.done():
                    f.set_result({k: v[start:start + len(crops)] for k, v in out.items()})
                start += len(crops)


def _b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(f"{where}: 'b64' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"{where}: not base64 ({e})") from e


def _face_from_bytes(data: bytes, size: int, max_megapixels: float, where: str) -> np.ndarray:
    """A face crop's file bytes -> the model's input, as age-tf-predict --faces=given reads a
    file (same decoding and resize)."""
    try:
        image = photos.decode_photo(data, max_megapixels)
    except ValueError as e:
        raise RequestError(f"{where}: {e}") from e
    return pipeline.resize(tf.constant(image), size).numpy().astype(np.float32)


def _face_from_pixels(value, size: int, where: str) -> np.ndarray:
    try:
        pixels = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise RequestError(f"{where}: not an array of numbers ({e})") from e
    if pixels.shape != (size, size, 3):
        raise RequestError(f"{where}: pixels of shape {list(pixels.shape)}; the model takes "
                           f"[{size}, {size}, 3] RGB values in 0-255 (or send {{\"b64\": the "
                           "face file}})")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise RequestError(f"{where}: pixel values must be finite and in 0-255")
    return pixels


def _instances(body: dict) -> list:
    """TF Serving's row format ({"instances": [...]}) or columnar ({"inputs": ...})."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object with 'instances'")
    items = body.get("instances", body.get("inputs"))
    if isinstance(items, dict):  # {"inputs": {"image_bytes": [...]}} / {"images": [...]}
        items = next(iter(items.values()), None)
    if not isinstance(items, list) or not items:
        raise RequestError("'instances' must be a non-empty list of {\"b64\": ...} face "
                           "crops or [size, size, 3] pixel arrays")
    if len(items) > MAX_INSTANCES:
        raise RequestError(f"{len(items)} instances; at most {MAX_INSTANCES} per request")
    return items


MAX_THRESHOLDS = 16  # decisions a request may ask for


def _face_json(face: photos.Face, cuts=()) -> dict:
    def r(v):
        return None if v is None else round(float(v), 3)

    out = {"box": [r(v) for v in face.box], "confidence": r(face.confidence),
           "landmarks": {k: [r(v[0]), r(v[1])] for k, v in face.landmarks.items()},
           "age": r(face.age), "age_low": r(face.age_low), "age_high": r(face.age_high)}
    if cuts:
        out["decisions"] = {f"{c.threshold:g}": str(decisions.decide([face.age], c)[0])
                            for c in cuts}
    return out


class AgeServer:
    """The loaded model and detector, and the handlers of every route."""

    def __init__(self, cfg: ServeConfig, model: AgeModel | None = None, detector=None):
        self.cfg = cfg
        self.model = model or AgeModel(cfg.model)
        self.detector = detector or photos.FaceDetector()
        # One thread runs the model, one decodes and detects: TensorFlow and MTCNN use
        # every core inside one call; more threads would only contend.
        self.model_thread = concurrent.futures.ThreadPoolExecutor(1, "model")
        self.photo_thread = concurrent.futures.ThreadPoolExecutor(1, "photo")
        self.batcher = Batcher(self.model, self.model_thread, cfg.batch_size, cfg.batch_wait_ms)
        self.waiting = 0
        self.summary = (export_format.card_summary(self.model.card) if self.model.card
                        else {"card": None})
        with open(PAGE, encoding="utf-8") as f:
            self.page_html = f.read()

    # --- the aiohttp application ----------------------------------------------------
    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=self.max_bytes, middlewares=[self._guard()])
        name = self.cfg.model_name
        app.router.add_get("/", self.page)
        app.router.add_get("/favicon.ico", self.no_icon)  # browsers ask; not a 404 line each
        app.router.add_get(f"/v1/models/{name}", self.status)
        app.router.add_get(f"/v1/models/{name}/metadata", self.metadata)
        app.router.add_post(f"/v1/models/{name}:predict", self.predict)
        app.router.add_post("/v1/analyze", self.analyze)

        task = web.AppKey("batcher", asyncio.Task)

        async def start_batcher(app):
            app[task] = asyncio.get_running_loop().create_task(self.batcher.run())

        async def stop_batcher(app):
            app[task].cancel()

        app.on_startup.append(start_batcher)
        app.on_cleanup.append(stop_batcher)
        return app

    def _middleware_response(self, status: int, message: str):
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    @property
    def max_bytes(self) -> int:
        return int(self.cfg.max_upload_mb * 2**20)

    def _guard(self):
        """The middleware every request passes: size, queue and time limits, errors in TF
        Serving's form, one log line."""
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            start = time.monotonic()
            try:
                if request.content_length and request.content_length > self.max_bytes:
                    raise RequestError(f"the body is {request.content_length / 2**20:.1f} MB, over "
                                       f"--max_upload_mb={self.cfg.max_upload_mb:g}", 413)
                if self.waiting >= self.cfg.queue_size:
                    raise RequestError(f"busy: {self.waiting} requests in progress "
                                       f"(--queue_size={self.cfg.queue_size}); retry later", 503)
                self.waiting += 1
                try:
                    response = await asyncio.wait_for(handler(request), self.cfg.timeout)
                finally:
                    self.waiting -= 1
            except RequestError as e:
                response = self._middleware_response(e.status, str(e))
            except TimeoutError:
                response = self._middleware_response(
                    504, f"no answer within --timeout={self.cfg.timeout:g} s")
            except web.HTTPRequestEntityTooLarge as e:
                response = self._middleware_response(
                    413, f"the body is over --max_upload_mb={self.cfg.max_upload_mb:g} ({e.text})")
            except web.HTTPException as e:
                response = self._middleware_response(e.status, e.reason)
            except Exception as e:  # noqa: BLE001 (one bad request must not stop the server)
                logging.exception("%s %s failed", request.method, request.path)
                response = self._middleware_response(500, f"internal error: {type(e).__name__}: {e}")
            # The access log: one line per request on stdout (and in the detailed log).
            progress.say(f"{request.remote} {request.method} {request.path_qs[:200]} "
                         f"{response.status} {1000 * (time.monotonic() - start):.0f} ms")
            return response

        return guard

    # --- routes ---------------------------------------------------------------------
    async def page(self, request):
        from aiohttp import web

        return web.Response(text=self.page_html, content_type="text/html")

    async def no_icon(self, request):
        from aiohttp import web

        return web.Response(status=204)

    async def status(self, request):
        from aiohttp import web

        return web.json_response({"model_version_status": [{
            "version": "1", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]})

    async def metadata(self, request):
        from aiohttp import web

        s = self.model.image_size
        outputs = {k: {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}]}}
                   for k in ("age", "age_low", "age_high")}
        signatures = {
            export_format.IMAGES_SIGNATURE: {
                "inputs": {"images": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [
                    {"size": "-1"}, {"size": str(s)}, {"size": str(s)}, {"size": "3"}]}}},
                "outputs": outputs, "method_name": "tensorflow/serving/predict"},
            export_format.BYTES_SIGNATURE: {
                "inputs": {"image_bytes": {"dtype": "DT_STRING",
                                           "tensor_shape": {"dim": [{"size": "-1"}]}}},
                "outputs": outputs, "method_name": "tensorflow/serving/predict"},
        }
        return web.json_response({
            "model_spec": {"name": self.cfg.model_name, "version": "1"},
            "metadata": {"signature_def": {"signature_def": signatures}},
            "model_card": self.model.card})

    async def _json(self, request) -> dict:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"the body is not JSON ({e})") from e

    async def predict(self, request):
        from aiohttp import web

        items = _instances(await self._json(request))
        size, mp = self.model.image_size, self.cfg.max_megapixels
        loop = asyncio.get_running_loop()

        def crops():
            out = []
            for i, item in enumerate(items):
                where = f"instances[{i}]"
                if isinstance(item, dict) and "b64" in item:
                    out.append(_face_from_bytes(_b64(item["b64"], where), size, mp, where))
                else:
                    out.append(_face_from_pixels(item, size, where))
            return np.stack(out)

        batch = await loop.run_in_executor(self.photo_thread, crops)
        out = await self.batcher.ages(batch)
        keys = [k for k in ("age", "age_low", "age_high") if k in out]
        return web.json_response({"predictions": [
            {k: round(float(out[k][i]), 4) for k in keys} for i in range(len(batch))]})

    async def _photo_bytes(self, request) -> bytes:
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.filename or part.name in ("image", "file", "photo"):
                    data = bytearray()
                    while chunk := await part.read_chunk():  # bounded, whatever it claims
                        data += chunk
                        if len(data) > self.max_bytes:
                            raise RequestError(f"the upload is over --max_upload_mb="
                                               f"{self.cfg.max_upload_mb:g}", 413)
                    return bytes(data)
            raise RequestError("the form has no file field (send the photo as 'image')")
        if request.content_type == "application/json":
            body = await self._json(request)
            image = body.get("image") if isinstance(body, dict) else None
            if isinstance(image, dict) and "b64" in image:
                return _b64(image["b64"], "image")
            if isinstance(image, str):
                return _b64(image, "image")
            raise RequestError("JSON bodies carry the photo as {\"image\": {\"b64\": ...}}")
        return await request.read()  # the photo's bytes as the body

    def _cuts(self, request) -> list:
        """The decision cuts a request asks for (?thresholds=..&decision_error=..), checked."""
        query = request.rel_url.query
        if "thresholds" not in query:
            return []
        try:
            thresholds = decisions.parse_thresholds(query["thresholds"].split(","))
            error = float(query.get("decision_error", decisions.DEFAULT_ERROR))
            band = float(query["decision_band"]) if "decision_band" in query else None
            if len(thresholds) > MAX_THRESHOLDS:
                raise ValueError(f"--thresholds: at most {MAX_THRESHOLDS} a request")
            return self.model.decision_cuts(thresholds, error, band)
        except ValueError as e:
            raise RequestError(str(e).replace("--", "")) from e

    async def analyze(self, request):
        from aiohttp import web

        cuts = self._cuts(request)  # before the photo is read: a bad query costs nothing
        data = await self._photo_bytes(request)
        loop = asyncio.get_running_loop()

        def find():
            try:
                image = photos.decode_photo(data, self.cfg.max_megapixels)
            except ValueError as e:
                raise RequestError(f"image: {e}") from e
            return image, photos.find_faces("upload", image, self.detector)

        image, faces = await loop.run_in_executor(self.photo_thread, find)
        shape = image.shape
        # A batch of crops at a time (a crowd's crops at once would grow with its faces),
        # each batch through the shared model calls.
        for start in range(0, len(faces), self.cfg.batch_size):
            part = faces[start:start + self.cfg.batch_size]
            crops = await loop.run_in_executor(self.photo_thread, photos.face_crops, image,
                                               part, self.model, self.model.crop_margin)
            photos.set_ages(part, await self.batcher.ages(crops))
        del image
        answer = {"width": int(shape[1]), "height": int(shape[0]),
                  "faces": [_face_json(f, cuts) for f in faces],
                  "interval_coverage": self.model.coverage, "model": self.summary}
        if cuts:
            answer["decisions"] = [c.summary() for c in cuts]
        return web.json_response(answer)


def serve(cfg: ServeConfig) -> None:
    """Loads the model and detector, then answers until interrupted."""
    from aiohttp import web

    server = AgeServer(cfg)
    for note in server.model.notes():
        progress.say(note)
    progress.say(f"serving {server.model.path} on http://{cfg.host}:{cfg.port}/ (page), "
                 f"/v1/models/{cfg.model_name}:predict, /v1/analyze; Ctrl-C stops")
    web.run_app(server.app(), host=cfg.host, port=cfg.port, print=None)
