"""The embedded server's UI talks to that server, whatever port it listens on."""

from __future__ import annotations

import json
import os
import urllib.request


def test_the_ui_advertises_the_api_of_its_own_server():
    api_url = os.environ["PREFECT_API_URL"]  # the session's server, on a free port (not 4200)
    assert not api_url.startswith("http://127.0.0.1:4200/"), "this test needs a server on another port"
    with urllib.request.urlopen(api_url.removesuffix("/api") + "/ui-settings", timeout=10) as response:
        settings = json.load(response)
    assert settings["api_url"] == api_url, settings
