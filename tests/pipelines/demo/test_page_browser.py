"""The demo's page opened in a real headless Chromium (the system's package; ``make browser``
installs it where CI needs it): every image loads, and a screenshot is saved.

The browser is driven through its DevTools protocol over a WebSocket (aiohttp, which Ray
installs): open ``file://.../index.html``, wait for the load, ask each ``<img>`` whether it
decoded (``complete`` and a non-zero ``naturalWidth``), capture the whole page.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pipelines.demo.page import write_page
from tests.pipelines.demo.conftest import page_summary

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine: make browser installs it")]

IMAGES = "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight])"


async def _cdp(ws_url: str, page_url: str, shot: Path) -> list:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 10_000))

        async def call(method: str, **params):
            n = next(ids)
            await ws.send_json({"id": n, "method": method, "params": params})
            while True:
                msg = json.loads((await ws.receive(timeout=60)).data)
                if msg.get("id") == n:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg["result"]

        await call("Page.enable")
        await call("Page.navigate", url=page_url)
        deadline = time.time() + 60
        while True:
            state = await call("Runtime.evaluate", expression="document.readyState", returnByValue=True)
            if state["result"]["value"] == "complete":
                break
            assert time.time() < deadline, "the page did not finish loading in 60 s"
            await asyncio.sleep(0.2)
        images = (await call("Runtime.evaluate", expression=IMAGES, returnByValue=True))["result"]["value"]
        png = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        shot.write_bytes(base64.b64decode(png["data"]))
        return images


def _open(page: Path, shot: Path, profile: Path) -> list:
    proc = subprocess.Popen([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        ws_browser = None
        while ws_browser is None:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, f"Chromium exited with {proc.returncode}"
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                ws_browser = found.group(1)
            assert time.time() < deadline, "Chromium did not open its DevTools port"
        port = re.search(r"ws://[^:]+:(\d+)/", ws_browser).group(1)
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        return asyncio.run(_cdp(target["webSocketDebuggerUrl"], page.as_uri(), shot))
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_every_image_of_the_page_loads_in_chromium(synthetic_world, demo_out, tmp_path):
    page = write_page(demo_out, synthetic_world, page_summary(), count=4)
    shot = demo_out / "page" / "screenshot.png"
    images = _open(page, shot, tmp_path / "profile")
    assert len(images) == 2 + 4, images  # two curves, four val images
    for src, complete, width, height in images:
        assert complete and width > 30 and height > 20, (src, complete, width, height)
    from PIL import Image

    with Image.open(shot) as im:  # the whole page, taller than one screen
        assert im.width >= 1000 and im.height > 900
    # a page whose picture is missing is caught the same way (the check can fail)
    (demo_out / "page" / "val_pq.png").unlink()
    broken = _open(page, tmp_path / "broken.png", tmp_path / "profile2")
    assert [src for src, complete, width, _ in broken if not width] == ["page/val_pq.png"]
