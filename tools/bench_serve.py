"""Load test of age-tf-serve on loopback, bounded in count and time (it stops by itself).

  python tools/bench_serve.py --model=runs/demo/runs/mobilenet_v2_full [--requests=200]
      [--clients=8] [--time_limit=900]

Starts age-tf-serve in its own process, sends --requests /v1/analyze uploads from --clients
concurrent clients (photos: matplotlib's grace_hopper.jpg at a few sizes, one face each),
and reports errors, p50/p99 latency, throughput and the server's peak memory (VmHWM). The
baseline, measured in the same run: age-tf-predict's own path in one process (photos.py:
read, detect, crop, model) over the same photos one after the other.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time

import numpy as np
from absl import app, flags
from matplotlib import cbook
from PIL import Image

MODEL = flags.DEFINE_string("model", None, "A run directory, export/ folder or .tflite file.",
                            required=True)
REQUESTS = flags.DEFINE_integer("requests", 200, "Requests in all.")
CLIENTS = flags.DEFINE_integer("clients", 8, "Concurrent clients.")
TIME_LIMIT = flags.DEFINE_float("time_limit", 900, "Seconds before the test stops anyway.")


def photos() -> list[bytes]:
    """Four JPEGs of one face at 0.3-2 MP."""
    face = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    out = []
    for scale in (1.0, 1.5, 2.0, 2.5):
        buf = io.BytesIO()
        face.resize((round(face.width * scale), round(face.height * scale))).save(buf, "JPEG",
                                                                                  quality=90)
        out.append(buf.getvalue())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_gb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


async def load(url: str, data: list[bytes], n: int, clients: int, deadline: float):
    import aiohttp

    latencies, errors, queue = [], [], asyncio.Queue()
    for i in range(n):
        queue.put_nowait(data[i % len(data)])

    async def client(session):
        while not queue.empty() and time.monotonic() < deadline:
            body = queue.get_nowait()
            form = aiohttp.FormData()
            form.add_field("image", body, filename="photo.jpg")
            start = time.monotonic()
            async with session.post(f"{url}/v1/analyze", data=form) as r:
                result = await r.json()
                if r.status != 200 or len(result.get("faces", [])) != 1:
                    errors.append((r.status, str(result)[:200]))
            latencies.append(time.monotonic() - start)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        start = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return latencies, errors, time.monotonic() - start


def baseline(data: list[bytes], n: int) -> float:
    """Photos per second through age-tf-predict's path in this process (model and detector
    loaded once, as one age-tf-predict run over n photos)."""
    from age_tf.serve import photos as photos_lib

    model = photos_lib.AgeModel(MODEL.value)
    detector = photos_lib.FaceDetector()
    photos_lib.estimate_photo("warm", photos_lib.decode_photo(data[0]), model, detector)
    start = time.monotonic()
    for i in range(n):
        photos_lib.estimate_photo(str(i), photos_lib.decode_photo(data[i % len(data)]), model,
                                  detector)
    return n / (time.monotonic() - start)


def main(argv):
    del argv
    import urllib.request

    data = photos()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "age_tf.cli.serve", f"--model={MODEL.value}",
                               f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIME_LIMIT.value
        while True:  # the model and detector load
            try:
                urllib.request.urlopen(f"{url}/v1/models/age", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit("age-tf-serve did not start")
                time.sleep(0.5)
        asyncio.run(load(url, data, CLIENTS.value, CLIENTS.value, deadline))  # warm up
        latencies, errors, seconds = asyncio.run(
            load(url, data, REQUESTS.value, CLIENTS.value, deadline))
        peak = peak_gb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    lat = np.array(latencies) * 1000
    rate = len(latencies) / seconds
    base = baseline(data, min(REQUESTS.value, 40))
    print(f"{len(latencies)} of {REQUESTS.value} requests from {CLIENTS.value} clients in "
          f"{seconds:.1f} s, {len(errors)} errors{': ' + str(errors[:3]) if errors else ''}")
    print(f"latency p50 {np.percentile(lat, 50):.0f} ms, p99 {np.percentile(lat, 99):.0f} ms; "
          f"throughput {rate:.2f} photos/s; server peak {peak:.2f} GB")
    print(f"baseline, age-tf-predict's path in one process: {base:.2f} photos/s; server / "
          f"baseline {rate / base:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
