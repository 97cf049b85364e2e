"""``ecmo-serve`` / ``python -m service``: the service under gunicorn, the same command as
scripts/serve and the Dockerfile's CMD::

    gunicorn -c service/gunicorn_conf.py 'service.app:create_app()'

with the config file taken from beside this module, so an installed wheel serves the same way as
a checkout. Settings are the ECMO_* variables (docs/OPERATIONS.md); an installed wheel has no
models beside it, so point ECMO_MODEL_DIR at a model directory. Extra arguments go to gunicorn.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

APP = "service.app:create_app()"
CONFIG = Path(__file__).resolve().with_name("gunicorn_conf.py")


def gunicorn_argv(extra: Sequence[str] = ()) -> list[str]:
    return ["gunicorn", "-c", str(CONFIG), APP, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    # Nothing of the service is imported before gunicorn reads its config (which sets
    # PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported).
    from gunicorn.app.wsgiapp import run

    sys.argv = gunicorn_argv(sys.argv[1:] if argv is None else argv)
    run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
