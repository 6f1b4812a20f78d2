"""Re-read Prefect's process-wide settings after this process changed its environment.

Prefect 3 reads the environment once, at import, into `prefect.context.GLOBAL_SETTINGS_CONTEXT`:
a plain script that imports our flows and then finds (or starts) the embedded server has to
make Prefect see `PREFECT_API_URL` in every thread, its log and event workers included (a
`temporary_settings` block covers only the calling context). `refresh_global_settings_context`
is what Prefect itself calls after its plugins change the environment; it is undocumented.
"""

from __future__ import annotations


def refresh_from_environment() -> None:
    """Make `prefect.settings.get_current_settings()` reflect `os.environ` again, in all threads."""
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
