"""age-tf-serve, started on a free loopback port: TF Serving's REST surface, /v1/analyze, the
page, and hostile requests (each refused with a reason while the server keeps answering)."""

import asyncio
import base64
import io
import json
import os
import pathlib
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from age_tf.data import prepared as prepared_lib
from age_tf.serve import photos, predict, server

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.integration


def _call(url, data=None, headers=None, method=None):
    """(status, JSON body) of one request."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post_json(url, body):
    return _call(url, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _multipart(url, data: bytes, name="photo.jpg"):
    boundary = "agetfboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\""
            f"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return _call(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def _grace_bytes() -> bytes:
    with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
        return f.read()


def test_status_and_metadata_speak_tf_serving(served):
    url, _ = served
    status, body = _call(f"{url}/v1/models/age")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = _call(f"{url}/v1/models/age/metadata")
    assert status == 200 and body["model_spec"]["name"] == "age"
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "serve_bytes"}
    assert body["model_card"]["model"]["backbone"] == "mobilenet_v2"  # the card itself


def test_predict_on_base64_crops_equals_age_tf_predict_given(served, trained_run):
    url, _ = served
    manifest, images_dir = prepared_lib.load_manifest(trained_run[1], "test")
    paths = [os.path.join(images_dir, p) for p in manifest["path"][:6]]
    instances = [{"b64": base64.b64encode(pathlib.Path(p).read_bytes()).decode()} for p in paths]
    status, body = _post_json(f"{url}/v1/models/age:predict", {"instances": instances})
    assert status == 200, body
    given = predict.predict_files(photos.AgeModel(trained_run[0]), paths)
    for got, want in zip(body["predictions"], given):
        for key in ("age", "age_low", "age_high"):
            assert abs(got[key] - want[key]) < 0.01


def test_analyze_on_a_real_photo_equals_age_tf_predict(served, trained_run):
    url, _ = served
    status, body = _multipart(f"{url}/v1/analyze", _grace_bytes())
    assert status == 200, body
    grace = photos.read_photo(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    want = photos.estimate(grace, photos.AgeModel(trained_run[0]))
    assert len(body["faces"]) == len(want) == 1
    face = body["faces"][0]
    assert abs(face["age"] - want[0].age) < 0.01
    assert abs(face["age_low"] - want[0].age_low) < 0.01
    assert np.allclose(face["box"], want[0].box, atol=0.01)
    assert set(face["landmarks"]) >= {"left_eye", "right_eye", "nose"}
    assert body["model"]["backbone"] == "mobilenet_v2" and body["model"]["synthetic"]
    # The same photo as base64 JSON.
    status, again = _post_json(f"{url}/v1/analyze",
                               {"image": {"b64": base64.b64encode(_grace_bytes()).decode()}})
    assert status == 200 and abs(again["faces"][0]["age"] - face["age"]) < 1e-6
    # Decisions at thresholds, as age-tf-predict --thresholds gives them.
    status, decided = _multipart(f"{url}/v1/analyze?thresholds=25,18&decision_error=0.1",
                                 _grace_bytes())
    assert status == 200, decided
    assert [c["threshold"] for c in decided["decisions"]] == [18, 25]
    assert decided["decisions"][0]["error"] == 0.1
    assert set(decided["faces"][0]["decisions"]) == {"18", "25"}
    status, bad = _multipart(f"{url}/v1/analyze?thresholds=18,x", _grace_bytes())
    assert status == 400 and "thresholds" in bad["error"]


def _png_bomb() -> bytes:
    """A 30000 x 30000 PNG of a few hundred KB (900 MP once decoded)."""
    buf = io.BytesIO()
    Image.new("L", (30000, 30000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_hostile_requests_get_a_4xx_with_a_reason_and_the_server_keeps_answering(served):
    url, _ = served
    grace = _grace_bytes()
    tries = {
        "png bomb": (_multipart, f"{url}/v1/analyze", _png_bomb(), 400, "megapixels"),
        "50 MB upload": (_multipart, f"{url}/v1/analyze", os.urandom(50 * 2**20), 413,
                         "max_upload_mb"),
        "empty body": (_multipart, f"{url}/v1/analyze", b"", 400, "empty"),
        "not an image": (_multipart, f"{url}/v1/analyze", b"hello, this is text" * 10, 400,
                         "not a JPEG or PNG"),
        "truncated jpeg": (_multipart, f"{url}/v1/analyze", grace[: len(grace) // 2], 400,
                           "damaged"),
    }
    for name, (send, where, data, code, reason) in tries.items():
        status, body = send(where, data)
        assert status == code and reason in body["error"], (name, status, body)
    # TF Serving's error form for a bad :predict request.
    status, body = _post_json(f"{url}/v1/models/age:predict", {"instances": "nope"})
    assert status == 400 and "instances" in body["error"]
    status, body = _post_json(f"{url}/v1/models/age:predict", {"instances": [[[1, 2, 3]]]})
    assert status == 400 and "pixels of shape" in body["error"]
    status, body = _call(f"{url}/v1/models/age:predict", b"{not json",
                         {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in body["error"]
    status, body = _call(f"{url}/v1/models/age")  # still answering
    assert status == 200


def test_concurrent_requests_all_get_their_own_answers(served, trained_run):
    url, _ = served
    manifest, images_dir = prepared_lib.load_manifest(trained_run[1], "test")
    body = {"instances": [{"b64": base64.b64encode(pathlib.Path(images_dir, p).read_bytes())
                           .decode()} for p in manifest["path"][:2]]}
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        _post_json(f"{url}/v1/models/age:predict", body))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in results] == [200] * 8
    # The same answer every time (to float rounding: a micro-batch's composition moves the
    # features, and so the interval's learned scale, in the last digits).
    first = results[0][1]["predictions"]
    for _, b in results:
        for got, want in zip(b["predictions"], first):
            assert all(abs(got[k] - want[k]) < 0.01 for k in ("age", "age_low", "age_high"))


def test_the_batcher_answers_waiting_requests_with_one_model_call():
    calls = []

    def model(batch, batch_size):  # row i -> age i's first pixel, to check who gets what
        calls.append(len(batch))
        return {"age": batch[:, 0, 0, 0].copy()}

    async def three_requests():
        batcher = server.Batcher(model, None, batch_size=32, wait_ms=50)
        task = asyncio.get_running_loop().create_task(batcher.run())
        crops = [np.full((n, 2, 2, 3), v, np.float32) for n, v in ((2, 1.0), (1, 2.0), (3, 3.0))]
        out = await asyncio.gather(*(batcher.ages(c) for c in crops))
        task.cancel()
        return out

    out = asyncio.run(three_requests())
    assert calls == [6]  # one call for the three requests' six crops
    assert [o["age"].tolist() for o in out] == [[1.0, 1.0], [2.0], [3.0, 3.0, 3.0]]


def test_the_page_is_served_without_external_resources(served):
    url, _ = served
    with urllib.request.urlopen(f"{url}/", timeout=30) as r:
        page = r.read().decode()
    assert "v1/analyze" in page and "<canvas" in page
    assert "http://" not in page and "https://" not in page  # no external script or font


def test_the_python_api_answers_as_the_server(served, trained_run):
    from age_tf import AgeModel

    url, _ = served
    model = AgeModel.load(trained_run[0])
    path = str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    faces = photos.estimate(path, model)
    assert faces[0].file == path  # named by the path given
    _, body = _multipart(f"{url}/v1/analyze", _grace_bytes())
    assert len(faces) == len(body["faces"]) == 1
    assert abs(faces[0].age - body["faces"][0]["age"]) < 0.01
    crop = photos.crop_face(photos.read_photo(cbook.get_sample_data(
        "grace_hopper.jpg", asfileobj=False)), faces[0].box, model.crop_margin, model.image_size)
    assert abs(model.predict_faces(crop[None])["age"][0] - faces[0].age) < 0.01
