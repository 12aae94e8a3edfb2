"""Run an ASGI app on the chosen server, in this process.

Both servers run the app in the current process (one event loop), so a
``kill`` of the PID stops everything, state is never split across workers,
and ``maxine bench http`` can run its raw-ASGI reference on exactly the same
stack. Why one process and why granian by default: docs/performance.md.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from .settings import Settings

log = logging.getLogger("maxine")


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def one_blas_thread() -> None:
    """Keep numpy's BLAS (OpenBLAS) on the thread that calls it. By default it starts a
    thread per core and keeps them spinning after each product: advanced-ml's batched
    re-scores through v18's 192-wide layers are large enough for it to go parallel, and
    on two cores its threads took the core the server and its clients need — 70 µs of
    server CPU per advanced-ml discovery instead of 36 (docs/performance-history.md, "Fourteenth
    session"). Serving runs small products; one thread is the right size for them."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def run(app, settings: Settings) -> None:
    configure_logging(settings)
    one_blas_thread()
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: reachable from other machines", settings.host)
    if settings.server == "granian":
        _run_granian(app, settings)
    else:
        _run_uvicorn(app, settings)


def _run_uvicorn(app, settings: Settings) -> None:
    import uvicorn

    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=settings.access_log, loop="uvloop", http="httptools", lifespan="on")


def _run_granian(app, settings: Settings) -> None:
    import uvloop
    from granian.asgi import LifespanProtocol
    from granian.constants import Interfaces
    from granian.server.embed import Server

    native = settings.interface == "rsgi" and hasattr(app, "__rsgi__")

    async def serve() -> None:
        lifespan = None
        if native:  # RSGI has no lifespan of its own: run the ASGI one around the server
            lifespan = LifespanProtocol(app)
            await lifespan.startup()
            if lifespan.interrupt:
                raise RuntimeError(f"application startup failed: {lifespan.exc!r}")
            app.state = lifespan.state
        server = Server(app, address=settings.host, port=settings.port,
                        interface=Interfaces.RSGI if native else Interfaces.ASGI,
                        log_enabled=True, log_level=settings.log_level, log_access=settings.access_log,
                        backlog=1024)
        # Granian calls its embedded mode experimental; we chose it by measurement
        # (docs/performance.md), so its start-up warning is noise for our users.
        logging.getLogger("_granian").addFilter(lambda record: "experimental" not in record.getMessage())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stop)
        log.info("Maxine listening on http://%s:%d (granian, %s)", settings.host, settings.port,
                 "RSGI" if native else "ASGI")
        try:
            await server.serve()
        finally:
            if lifespan is not None:
                await lifespan.shutdown()

    uvloop.run(serve())
