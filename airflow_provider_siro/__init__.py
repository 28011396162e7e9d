"""Apache Airflow provider for Siro, the conversation-intelligence platform."""

from __future__ import annotations

from importlib import metadata

from packaging.version import Version

__version__ = "0.1.0"

__all__ = ["__version__"]

MIN_AIRFLOW_VERSION = "2.11.0"
"""The oldest Airflow the provider runs on; ``pyproject.toml`` declares the same floor."""


def _refuse_an_older_airflow() -> None:
    """Stop at import on an Airflow below the floor, naming both versions, as the official providers do.

    The version is read from the installed distribution rather than ``airflow.__version__``: importing
    Airflow reads its configuration, and the package's offline Siro server (``testing/``) runs without it.
    """
    try:
        installed = metadata.version("apache-airflow")
    except metadata.PackageNotFoundError:
        return  # only the offline server can run without Airflow; everything else fails at its import
    if Version(Version(installed).base_version) < Version(MIN_AIRFLOW_VERSION):
        raise RuntimeError(
            f"airflow-provider-siro {__version__} needs Apache Airflow {MIN_AIRFLOW_VERSION} or newer; "
            f"the installed Airflow is {installed}. Upgrade Airflow to use it."
        )


_refuse_an_older_airflow()
