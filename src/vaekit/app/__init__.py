"""The live explorer: a local web app over a trained model (``vaekit explore``).

:func:`serve` opens a run and serves the page until interrupted;
:func:`create_app` builds the web app (a Starlette app) for tests or for
another server; :class:`LiveState` holds what the page shows and decodes.
"""

from vaekit.app.server import (
    DEFAULT_HOST,
    DEFAULT_LIMIT,
    DEFAULT_PORT,
    create_app,
    serve,
)
from vaekit.app.state import LiveState, Plane

__all__ = ["DEFAULT_HOST", "DEFAULT_LIMIT", "DEFAULT_PORT", "LiveState", "Plane", "create_app", "serve"]
