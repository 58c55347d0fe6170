"""age-tf-serve's page in a real browser: headless Chromium (Debian's package) opens it,
uploads grace_hopper.jpg through the file input, and the face's box and age appear.

Driven over the Chrome DevTools Protocol with aiohttp's websocket client (no Selenium)."""

import asyncio
import base64
import itertools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from matplotlib import cbook

pytest.importorskip("aiohttp")
pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
GRACE = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


class Page:
    """One Chromium tab over the DevTools Protocol: send a command, await its answer."""

    def __init__(self, ws):
        self.ws, self.ids = ws, itertools.count(1)

    async def send(self, method: str, **params) -> dict:
        n = next(self.ids)
        await self.ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads((await self.ws.receive(timeout=60)).data)
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str):
        out = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                              awaitPromise=True)
        return out["result"].get("value")

    async def until(self, expression: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.25)
        raise AssertionError(f"never true in the page: {expression}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _upload_and_read(url: str, screenshot: str) -> dict:
    import aiohttp

    port = _free_port()
    profile = tempfile.mkdtemp(prefix="chromium_")
    browser = subprocess.Popen(  # noqa: ASYNC220 (started once, before any await)
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
         "--window-size=1000,1400", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(120):  # the DevTools endpoint comes up
                try:
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                        tabs = [t for t in await r.json() if t["type"] == "page"]
                        if tabs:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.25)
            async with http.ws_connect(tabs[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                await page.send("Page.navigate", url=url)
                await page.until("document.readyState === 'complete' && "
                                 "!document.getElementById('model').textContent.includes('loading')")
                root = await page.send("DOM.getDocument")
                node = await page.send("DOM.querySelector", nodeId=root["root"]["nodeId"],
                                       selector="#file")
                await page.send("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[GRACE])
                await page.until("document.querySelectorAll('#faces tr.face').length > 0")
                await page.until("document.getElementById('canvas').width > 0")
                found = await page.js("""(() => {
                  const c = document.getElementById('canvas');
                  const rows = [...document.querySelectorAll('#faces tr.face')]
                    .map(r => [...r.children].map(td => td.textContent));
                  return {rows, summary: document.getElementById('summary').textContent,
                          warning: document.getElementById('warning').textContent,
                          model: document.getElementById('model').textContent,
                          width: c.width, height: c.height};
                })()""")
                shot = await page.send("Page.captureScreenshot", format="png",
                                       captureBeyondViewport=True)
                pathlib.Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
                return found
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium; "
                    ".ci/run installs it)")
def test_the_page_shows_the_face_and_its_age_after_an_upload(served, tmp_path):
    url, _ = served
    screenshot = str(tmp_path / "page.png")
    found = asyncio.run(_upload_and_read(f"{url}/", screenshot))
    assert found["summary"] == "1 face(s) found." and (found["width"], found["height"]) == (512, 600)
    _, age, interval, confidence = found["rows"][0]
    assert age.endswith(" years") and 0 <= float(age.split()[0]) <= 120
    assert "-" in interval and float(confidence) > 0.9
    assert "synthetic" in found["warning"].lower()  # the card's warning is shown
    assert "mobilenet_v2" in found["model"]
    assert os.path.getsize(screenshot) > 10_000
    if os.environ.get("AGE_TF_PAGE_SCREENSHOT"):  # docs/serve_page.png is made this way
        shutil.copy(screenshot, os.environ["AGE_TF_PAGE_SCREENSHOT"])
