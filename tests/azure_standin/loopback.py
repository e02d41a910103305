"""The life of a threaded HTTP server on 127.0.0.1 that a stand-in runs for a test."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class LoopbackServer:
    """Serves ``self._server`` (set by a subclass's ``start``) from a daemon thread.

    A subclass's ``start`` builds the server and calls :meth:`_serve`; :meth:`stop`
    shuts it down. ``SCHEME`` is what :attr:`url` starts with. Use as a context manager.
    """

    SCHEME = "http"
    #: How often the serving thread looks whether :meth:`stop` was called: a stop waits
    #: for that look (the ``serve_forever`` default, 0.5 s, made every test's teardown
    #: half a second longer). Requests are answered as they come, whatever its value.
    POLL_SECONDS = 0.02

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None

    def start(self):
        raise NotImplementedError

    def _serve(self, server: ThreadingHTTPServer, name: str) -> None:
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(self.POLL_SECONDS,), name=name,
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"{self.SCHEME}://127.0.0.1:{self._server.server_address[1]}"
