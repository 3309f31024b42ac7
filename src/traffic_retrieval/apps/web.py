"""The search page: a local web app over an encoded gallery, for operators who type a description and look.

The gallery is encoded once at start-up; a query is one text encoding and one search. The
server answers only two kinds of request that touch data: ``/api/search`` (parameters checked,
errors as 4xx JSON) and ``/images/{name}``, which looks ``name`` up in the gallery's name
table, so no user text ever becomes part of a file path. It answers only requests addressed to a
Host name it knows (``allowed_hosts``), so that a web page cannot reach it through a DNS name of
its own rebound to 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Collection, Iterator, Literal, Optional, Sequence
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ..core.fileio import UserError
from ..core.metadata import Filter
from ..core.vocab import Vocabulary
from ..retrieval.gallery import Gallery
from ..retrieval.models import LoadedModel
from ..retrieval.pipeline import QuerySettings, answer

WEB = Path(__file__).with_name("web_static")
MAX_QUERY = 500  # characters; the text encoder reads 77 tokens anyway
MAX_K = 100
log = logging.getLogger(__name__)


LOOPBACK = ("127.0.0.1", "localhost", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::")


def allowed_hosts(bind: str, extra: Sequence[str] = ()) -> frozenset[str]:
    """The Host names a server bound to ``bind`` answers: the address itself, the loopback names when
    it is a loopback address or every address, and ``extra`` (``--allowed-host``; "*" allows any)."""
    names = {bind, *extra} | (set(LOOPBACK) if bind in LOOPBACK + EVERY_ADDRESS else set())
    return frozenset(name.lower() for name in names)


def host_name(header: str) -> str:
    """The name in a Host header, without its port: "localhost:8000" -> "localhost", "[::1]:8000" -> "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    gallery: Gallery, loaded: LoadedModel, vocab: Vocabulary, settings: QuerySettings = QuerySettings(),
    max_k: int = MAX_K, max_query: int = MAX_QUERY, hosts: Collection[str] = allowed_hosts("127.0.0.1"),
    where: Filter = Filter(),
) -> FastAPI:
    """The web app over an already encoded gallery (no I/O here beyond serving its files), answering
    requests whose Host is one of ``hosts`` and 400 to any other. ``where`` (serve's --camera, --after,
    --before) restricts every request; a request's own camera and time filter narrows it further."""
    if settings.fusion is not None and settings.fusion.adapt:
        gallery.mean()  # the pass over the gallery that centring needs, at start-up rather than in a first query
    app = FastAPI(title="traffic-retrieval", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def known_hosts_only(request: Request, call_next):
        if "*" not in hosts and host_name(request.headers.get("host", "")) not in hosts:
            return _error(400, "unknown Host header: this server answers " + ", ".join(sorted(hosts)))
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "bad request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # logged here, never shown
        log.exception("error answering %s", request.url.path)
        return _error(500, "internal error")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    @app.get("/api/info")
    def info() -> dict:
        meta = gallery.metadata
        return {"images": len(gallery), "model": loaded.name, "vehicle_prompt": settings.vehicle_prompt,
                "max_k": max_k, "max_query": max_query, "metadata": meta.known if meta is not None else 0,
                "cameras": sorted({str(c) for c in meta.camera if c})[:1000] if meta is not None else [],
                "filter": where.describe()}

    @app.get("/api/search")
    def search(
        q: str = Query(..., min_length=1, max_length=max_query, description="the description"),
        kind: Literal["auto", "vehicle", "pedestrian"] = "auto",
        k: int = Query(10, ge=1, le=max_k),
        prompt: bool = Query(True, description="append the vehicle prompt to vehicle queries"),
        camera: Optional[str] = Query(None, max_length=2000, description="cameras, comma-separated"),
        after: Optional[str] = Query(None, max_length=64, description="ISO 8601: taken at or after"),
        before: Optional[str] = Query(None, max_length=64, description="ISO 8601: taken before"),
    ) -> dict:
        if not q.strip():
            raise HTTPException(422, "q: empty query")
        start = time.perf_counter()
        asked = replace(settings, topk=k, vehicle_prompt=settings.vehicle_prompt if prompt else "")
        try:
            chosen = where.both(Filter.parse(camera, after, before))
            result = answer(loaded, gallery, vocab, q, kind, asked, chosen)
        except UserError as e:  # a bad timestamp, or a filter on a gallery without metadata
            raise HTTPException(422, str(e).replace("--", "", 1)) from None
        return {
            "query": result.query, "kind": result.kind, "filter": kind, "where": chosen.describe(),
            "text": result.text, "prompt": prompt,
            "ms": round(1000 * (time.perf_counter() - start), 2),
            "results": [{"rank": h.rank, "name": h.name, "score": round(h.score, 4), "url": f"/images/{quote(h.name)}"}
                        for h in result.hits],
        }

    @app.get("/images/{name}")
    def image(name: str) -> FileResponse:
        path = gallery.path(name)
        if path is None:
            raise HTTPException(404, "no such gallery image")
        return FileResponse(path, headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread (port 0: a free one) and yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10)
