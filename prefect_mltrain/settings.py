"""Runtime knobs of prefect-mltrain, read from `PREFECT_MLTRAIN_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MltrainSettings(BaseSettings):
    """Settings for prefect-mltrain; every field can be set with `PREFECT_MLTRAIN_<NAME>`.

    Create it where it is used (`MltrainSettings()`), so a changed environment variable is
    seen without a restart.
    """

    model_config = SettingsConfigDict(env_prefix="PREFECT_MLTRAIN_", extra="ignore")

    home: Path = Field(
        default=Path("~/.prefect-mltrain"),
        description="Project home: the local Prefect server's database, MLflow's store, "
        "built environments and job run directories live under it.",
    )
    snapshot_max_mb: float = Field(
        default=300.0,
        gt=0,
        description="Largest source snapshot a job may take, in MB (Azure ML's limit is 300 MB).",
    )
    server_port: int = Field(default=4200, ge=1, le=65535, description="Port of the local Prefect server.")
    mlflow_port: int = Field(
        default=5000, ge=1, le=65535, description="Port of the local MLflow tracking server and UI."
    )
    warm_compute: bool = Field(
        default=False,
        description="Run flows that use the default `DaskCompute()` on the home's warm local Dask "
        "cluster (started once, kept between flows, stopped by `server stop`); false (the "
        "default): a new LocalCluster per flow. Off by default: concurrent flows from different "
        "folders would share its workers' working folder and import paths.",
    )
    warm_workers: int = Field(
        default=0, ge=0, description="Worker processes of the warm local Dask cluster; 0: one per CPU core."
    )
    warm_threads: int = Field(default=1, ge=1, description="Threads of each warm worker process.")
    installer: str = Field(
        default="auto",
        pattern="^(auto|uv|pip)$",
        description="Installer for virtualenv environments: `uv`, `pip`, or `auto` (uv, else pip).",
    )

    @property
    def home_dir(self) -> Path:
        """The project home, expanded and created."""
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def envs_dir(self) -> Path:
        """Where built environments are cached, one folder per content hash."""
        return self.home_dir / "envs"

    @property
    def runs_dir(self) -> Path:
        """Where job runs keep their snapshot, outputs and logs."""
        return self.home_dir / "runs"

    @property
    def mlflow_dir(self) -> Path:
        """Where the default MLflow SQLite store and artifact root live."""
        return self.home_dir / "mlflow"
