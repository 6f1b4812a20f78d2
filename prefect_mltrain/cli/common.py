"""What every `prefect-mltrain` command shares."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.server.stack import ServerInfo, ensure_server, is_healthy, use_server
from prefect_mltrain.settings import MltrainSettings


def connect() -> None:
    """Point this process (and what it starts) at the Prefect server: `PREFECT_API_URL`, or the
    embedded one, started if need be."""
    _use(ensure_server())


def _use(info: ServerInfo) -> None:
    use_server(info)
    if "prefect" in sys.modules:  # imported (to check a job file) before the server was known
        from prefect_mltrain._compat.prefect_settings import refresh_from_environment

        refresh_from_environment()


def running_server() -> ServerInfo | None:
    """The Prefect server `connect` would use, if it answers now; starts nothing."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return ServerInfo(api_url=configured, pid=None, started=False) if is_healthy(configured) else None
    state = MltrainSettings().home_dir / "prefect-server.json"  # written by `server.stack.ensure_server`
    if state.exists():
        api_url = json.loads(state.read_text())["api_url"]
        if is_healthy(api_url):
            return ServerInfo(api_url=api_url, pid=None, started=False)
    return None


def block_loader() -> Any:
    """How a command checks the saved blocks a job file names, before it starts anything.

    A Prefect server that answers now is asked (`resolve_block`). With none, and none ever run
    under the project home (its `prefect/` folder, where `ensure_server` keeps the database),
    no block can have been saved: every name is refused (`_nothing_saved`). Otherwise (the
    home's server is stopped) None: the names are checked once `connect` has started it.
    """
    info = running_server()
    if info is not None:
        _use(info)
        from prefect_mltrain.blocks._load import resolve_block

        return resolve_block
    if not os.environ.get("PREFECT_API_URL") and not (MltrainSettings().home_dir / "prefect").exists():
        return _nothing_saved
    return None


def _nothing_saved(value: Any, block_cls: type[Any], parameter: str) -> Any:
    raise ConfigurationError(
        f"`{parameter}`={value!r} names no saved {block_cls.__name__} block: none is saved yet (no Prefect "
        f"server has run under {MltrainSettings().home_dir}). Fix: save one with "
        f"`{block_cls.__name__}(...).save({value!r})`."
    )
