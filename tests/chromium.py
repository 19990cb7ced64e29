"""Render an HTML file in Debian's headless chromium and report what a viewer's browser saw:
console messages, page errors, every request (anything but the file itself is a leak), and a
PNG screenshot. Spoken to over the DevTools protocol (aiohttp's websocket client)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class Rendered:
    console: list[str] = field(default_factory=list)
    """Console messages and log entries of level warning or error (CSP violations land here)."""
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    """Every URL the page asked for, the file itself included."""
    png: bytes = b""
    text: str = ""
    """document.body.innerText, to check what was drawn."""
    svg_shapes: int = 0


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(page: Path, png: Path) -> Rendered:
    binary = chromium()
    assert binary, "chromium is not installed (make test installs Debian's chromium)"
    profile = tempfile.mkdtemp(prefix="fireproof-chromium-")
    process = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1200,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = asyncio.run(_connect(_devtools_url(process), page.resolve().as_uri()))
        png.write_bytes(result.png)
        return result
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


async def _connect(url: str, page_uri: str) -> Rendered:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        return await _drive(ws, page_uri)


def _devtools_url(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    for line in process.stderr:
        if match := re.search(r"DevTools listening on (ws://\S+)", line):
            return match.group(1)
    raise AssertionError("chromium exited before its DevTools endpoint was up")


async def _drive(ws: Any, page_uri: str) -> Rendered:
    ids = itertools.count(1)
    result = Rendered()
    pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
    loaded = asyncio.Event()

    async def reader() -> None:
        async for message in ws:
            data = message.json()
            if "id" in data and data["id"] in pending:
                pending.pop(data["id"]).set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.consoleAPICalled":
                args = " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params["args"]
                )
                result.console.append(f"{params['type']}: {args}")
            elif method == "Runtime.exceptionThrown":
                result.errors.append(str(params["exceptionDetails"].get("text")))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("warning", "error"):
                result.console.append(f"{params['entry']['level']}: {params['entry']['text']}")
            elif method == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
            elif method == "Page.loadEventFired":
                loaded.set()

    async def call(method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        number = next(ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending[number] = future
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await ws.send_json(message)
        reply = await asyncio.wait_for(future, 30)
        assert "error" not in reply, reply
        return dict(reply.get("result", {}))

    task = asyncio.create_task(reader())
    try:
        target = await call("Target.createTarget", url="about:blank")
        attached = await call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        sid = attached["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            await call(f"{domain}.enable", sid)
        await call("Page.navigate", sid, url=page_uri)
        await asyncio.wait_for(loaded.wait(), 30)
        await asyncio.sleep(0.5)  # late console messages and requests
        shot = await call("Page.captureScreenshot", sid, format="png", captureBeyondViewport=True)
        result.png = base64.b64decode(shot["data"])
        text = await call("Runtime.evaluate", sid, expression="document.body.innerText")
        result.text = str(text["result"].get("value", ""))
        shapes = await call(
            "Runtime.evaluate", sid, expression="document.querySelectorAll('svg circle').length"
        )
        result.svg_shapes = int(shapes["result"].get("value", 0))
    finally:
        task.cancel()
    return result
