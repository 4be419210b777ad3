"""Run the app with uvicorn: in the foreground (``qrhead serve``) or in a background thread (tests,
notebooks, benchmarks)."""

from __future__ import annotations

import threading
import time
from typing import Any

from .config import require_extra


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
               access_log: bool = False, **uvicorn_options: Any) -> None:
    """Serve ``app`` until interrupted. ``access_log`` is off by default (it records client addresses)."""
    require_extra("serve", "qrhead serve")
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, **uvicorn_options)


class BackgroundServer:
    """uvicorn serving ``app`` in a daemon thread; ``port=0`` takes a free port.

        with BackgroundServer(create_app(scorer)) as server:
            cohere.ClientV2(api_key="-", base_url=server.url).rerank(...)
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                 access_log: bool = False, **uvicorn_options: Any):
        require_extra("serve", "BackgroundServer")
        import uvicorn

        self.host = host
        self.config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                                     **uvicorn_options)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="qrhead-serve-uvicorn", daemon=True)
        self.port = port

    @property
    def url(self) -> str:
        """``http://host:port``: the ``base_url`` of Cohere clients."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> BackgroundServer:
        """Start and wait until the server accepts connections (its app started: model loaded)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped while starting (see its log)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {timeout} s")
            time.sleep(0.02)
        sockets = [s for server in self.server.servers for s in server.sockets]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to exit (in-flight requests finish) and wait for the thread."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
