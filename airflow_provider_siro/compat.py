"""The one place that knows which Airflow is installed: 2.11, or 3.0 to 3.3 with their Task SDK.

Airflow 3 moved the names a provider builds on into ``airflow.sdk``, and moved some of them again
between its minor versions (``BaseHook`` and ``conf`` reached ``airflow.sdk`` only in 3.1 and 3.2). Where
each name lives in each version is what ``apache-airflow-providers-common-compat`` tracks for the
official providers (``airflow.providers.common.compat.sdk``); this module hands its answers to the rest
of the provider, so every other module imports these names from here and is one code path.

A name is imported the first time it is asked for (PEP 562), so a DAG file that imports the operator
pays for the operator's base class and nothing else.

To a type checker the names are the newest Airflow's real classes (the ``TYPE_CHECKING`` block below),
so a mistake against Airflow's API is caught there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

_BASE_VERSION = Version(Version(AIRFLOW_VERSION).base_version)
AIRFLOW_V_3_0_PLUS = _BASE_VERSION.major >= 3
"""True on Airflow 3.x (the Task SDK), False on 2.11."""
AIRFLOW_V_3_3_PLUS = _BASE_VERSION.release[:2] >= (3, 3)
"""True from Airflow 3.3 on (the task state store and ``ResumableJobMixin``, AIP-103)."""

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    # Airflow 3's Asset; on 2.11 its Dataset.
    "Asset",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "Context",
    "ObjectStoragePath",
    "PokeReturnValue",
    # Airflow 3.3's mixin; below 3.3 common-compat's stand-in, which starts a new job on every try.
    "ResumableJobMixin",
    "XCom",
    "conf",
    "mask_secret",
]
_FROM_COMMON_COMPAT = frozenset(__all__[3:])
"""What ``airflow.providers.common.compat.sdk`` finds for the installed Airflow."""

if TYPE_CHECKING:
    from airflow.sdk import (
        Asset,
        BaseHook,
        BaseOperator,
        BaseOperatorLink,
        BaseSensorOperator,
        Context,
        ObjectStoragePath,
        PokeReturnValue,
        ResumableJobMixin,
    )
    from airflow.sdk.configuration import conf
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.sdk.log import mask_secret
    from airflow.sdk.types import Logger as Logger  # for annotations only: a hook's or task's self.log


def __getattr__(name: str) -> Any:
    if name not in _FROM_COMMON_COMPAT:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow.providers.common.compat import sdk

    value = getattr(sdk, name)
    globals()[name] = value
    return value
