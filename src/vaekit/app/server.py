"""The live explorer's web app: a Starlette app over a :class:`~vaekit.app.state.LiveState`, served by uvicorn.

Routes (all JSON unless said otherwise; errors are ``{"error": "one line"}``
with status 400, or 413 for an upload too large):

* ``GET /``: the page (``static/index.html``); ``/static/...``: its script and style;
* ``GET /api/info``: run, plane, classes (and their means on the plane), slider units;
* ``GET /api/points``: the scatter, ``{"x": [...], "y": [...], "labels": [...]}``;
* ``GET /api/decode?x=..&y=..&offset=UNIT:VALUE...``: the decoded image, ``image/png``
  at the model's size;
* ``POST /api/interpolate``: ``{"from": END, "to": END, "steps": n, "method": "linear"|"slerp",
  "offsets": {unit: value}}``, END being ``{"x": .., "y": ..}`` (a plane point, offsets
  added) or ``{"class": name}`` (a class mean); answers ``n`` images as data URLs;
* ``POST /api/encode?invert=0|1``: the body is an image file; answers where it lands and its
  reconstruction.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import webbrowser
from importlib import resources
from typing import Any, Mapping

import numpy as np

from vaekit.app.state import MAX_UPLOAD_BYTES, LiveState
from vaekit.errors import ConfigError, DataError, VaekitError, one_line

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Test images on the scatter by default.
DEFAULT_LIMIT = 5000


def static_dir() -> str:
    """The folder of the page's files (package data)."""
    return str(resources.files("vaekit.app") / "static")


def _number(params: Mapping[str, Any], name: str) -> float:
    value = params.get(name)
    if value is None or value == "":
        raise ConfigError(f"{name}: missing (give a number)", param=name)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}", param=name) from None


def _offsets(items: Any) -> dict[int, float]:
    """Slider offsets from ``["UNIT:VALUE", ...]`` (query) or ``{"UNIT": VALUE}`` (JSON)."""
    if items is not None and not isinstance(items, (Mapping, list, tuple)):
        raise ConfigError(f"offset: expected UNIT:VALUE pairs, got {items!r}"[:200], param="offset")
    pairs = items.items() if isinstance(items, Mapping) else (str(item).partition(":")[::2] for item in items or ())
    offsets = {}
    for unit, value in pairs:
        try:
            offsets[int(unit)] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"offset: expected UNIT:VALUE numbers, got {unit!r}:{value!r}", param="offset") from None
    return offsets


def _end(state: LiveState, end: Any, offsets: dict[int, float], which: str) -> np.ndarray:
    """One end of an interpolation: ``{"class": name}`` or ``{"x": .., "y": ..}``."""
    if not isinstance(end, Mapping):
        raise ConfigError(f"{which}: expected {{\"class\": NAME}} or {{\"x\": X, \"y\": Y}}, got {end!r}"[:200])
    if "class" in end:
        return state.class_mean(str(end["class"]))
    return state.latent(_number(end, "x"), _number(end, "y"), offsets)


def create_app(state: LiveState):
    """The Starlette app serving ``state`` (see the module docs for the routes)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    static = static_dir()

    async def index(request: Request) -> Response:
        return FileResponse(os.path.join(static, "index.html"), headers={"Cache-Control": "no-cache"})

    async def info(request: Request) -> Response:
        return JSONResponse(state.info())

    async def points(request: Request) -> Response:
        return JSONResponse(state.points())

    def decode_sync(params) -> bytes:
        z = state.latent(_number(params, "x"), _number(params, "y"), _offsets(params.getlist("offset")))
        return state.decode_png(z)

    async def decode(request: Request) -> Response:
        png = await _off_loop(decode_sync, request.query_params)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    def interpolate_sync(body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ConfigError("interpolate: expected a JSON object")
        offsets = _offsets(body.get("offsets") or {})
        z_from = _end(state, body.get("from"), offsets, "from")
        z_to = _end(state, body.get("to"), offsets, "to")
        return state.interpolate(z_from, z_to, steps=body.get("steps", 8), method=str(body.get("method", "linear")))

    async def interpolate(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            raise ConfigError("interpolate: the request body is not JSON") from None
        return JSONResponse(await _off_loop(interpolate_sync, body))

    async def encode(request: Request) -> Response:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_UPLOAD_BYTES:
            return _too_large(f"{int(size):,} bytes")
        # Read at most one byte past the limit: a body without a length (chunked) is never held whole.
        chunks, received = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            received += len(chunk)
            if received > MAX_UPLOAD_BYTES:
                return _too_large(f"more than {MAX_UPLOAD_BYTES:,} bytes")
        invert = request.query_params.get("invert", "0") in ("1", "true", "yes")
        # The page sends the file's name URL-encoded (HTTP headers are ASCII).
        name = urllib.parse.unquote(request.headers.get("x-file-name") or "") or "uploaded image"
        return JSONResponse(await _off_loop(state.encode_upload, b"".join(chunks), invert, name[:200]))

    def _too_large(size: str) -> Response:
        return JSONResponse({"error": f"uploaded image: {size}, more than the {MAX_UPLOAD_BYTES // 2**20} MiB "
                                      "accepted"}, status_code=413)

    async def user_error(request: Request, error: Exception) -> Response:
        status = 413 if isinstance(error, DataError) and "MiB accepted" in str(error) else 400
        return JSONResponse({"error": one_line(error)}, status_code=status)

    async def http_error(request: Request, error: HTTPException) -> Response:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/points", points),
        Route("/api/decode", decode),
        Route("/api/interpolate", interpolate, methods=["POST"]),
        Route("/api/encode", encode, methods=["POST"]),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={VaekitError: user_error, HTTPException: http_error})


async def _off_loop(function, *args):
    """Run a blocking call (the model) in a worker thread, keeping the server responsive."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)


def _state_for(run_or_path: Any, limit: int | None, device: str, precision: str, data_dir: Any) -> LiveState:
    from vaekit.analysis.explorer import Explorer
    from vaekit.runs import Run

    if isinstance(run_or_path, LiveState):
        return run_or_path
    if isinstance(run_or_path, Explorer):
        return LiveState(run_or_path)
    run = run_or_path if isinstance(run_or_path, Run) else \
        Run.open(run_or_path, device=device, precision=precision, data_dir=data_dir)
    return LiveState(Explorer(run, split="test", limit=limit))


def serve(run_or_path: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, limit: int | None = DEFAULT_LIMIT,
          open_browser: bool = False, device: str = "auto", precision: str = "auto", data_dir: Any = None,
          log_level: str = "warning", announce=print) -> None:
    """Serve the live explorer of a run until interrupted (Ctrl-C).

    Parameters
    ----------
    run_or_path
        A run directory or anything :meth:`vaekit.runs.Run.open` opens, or an
        opened :class:`~vaekit.runs.Run`, :class:`~vaekit.analysis.explorer.Explorer`
        or :class:`LiveState`.
    host, port
        Where to listen; ``127.0.0.1`` keeps the explorer on this machine.
    limit
        Test images encoded for the scatter (the first ``limit``; None: all).
    open_browser
        Open the page in the default web browser once the server listens.
    device, precision, data_dir
        Passed to :meth:`~vaekit.runs.Run.open` when a path is given.
    announce
        Called with the page's URL once the model is ready (default: print).
    """
    import uvicorn

    sock = _bind(host, int(port))  # refused in one line before the model is loaded
    try:
        state = _state_for(run_or_path, limit, device, precision, data_dir)
        server = uvicorn.Server(uvicorn.Config(create_app(state), log_level=log_level, access_log=False))
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{sock.getsockname()[1]}/"

        def when_ready() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                announce(f"live explorer of {state.info()['run']} ({len(state.codes):,} {state.codes.split} "
                         f"images, latent dim {state.latent_dim}): {url}  (Ctrl-C stops it)")
                if open_browser:
                    webbrowser.open(url)

        threading.Thread(target=when_ready, daemon=True).start()
        server.run(sockets=[sock])
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), or one-line :class:`ConfigError`."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be from 0 to 65535, got {port}", param="port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}", param="host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}", param="port") from None
    return sock
