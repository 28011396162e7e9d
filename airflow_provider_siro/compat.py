"""The one place that knows which Airflow is installed: 2.11, or 3.x with its Task SDK.

Airflow 3 moved the names a provider builds on into ``airflow.sdk``; Airflow 2.11 has them at their
older homes. Every module of the provider imports them from here, so the rest of the code is one code
path. A name is imported the first time it is asked for (PEP 562), so a DAG file that imports the
operator pays for the operator's base class and nothing else, as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION

AIRFLOW_V_3_0_PLUS = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3
"""True on Airflow 3.x (the Task SDK), False on 2.11."""

_AIRFLOW_3: dict[str, tuple[str, str]] = {
    "AirflowException": ("airflow.sdk.exceptions", "AirflowException"),
    "AirflowFailException": ("airflow.sdk.exceptions", "AirflowFailException"),
    "AirflowSensorTimeout": ("airflow.sdk.exceptions", "AirflowSensorTimeout"),
    "BaseHook": ("airflow.sdk", "BaseHook"),
    "BaseOperator": ("airflow.sdk", "BaseOperator"),
    "BaseOperatorLink": ("airflow.sdk", "BaseOperatorLink"),
    "BaseSensorOperator": ("airflow.sdk", "BaseSensorOperator"),
    "ObjectStoragePath": ("airflow.sdk", "ObjectStoragePath"),
    "PokeReturnValue": ("airflow.sdk", "PokeReturnValue"),
    "XCom": ("airflow.sdk.execution_time.xcom", "XCom"),
    "conf": ("airflow.sdk", "conf"),
    "mask_secret": ("airflow.sdk.log", "mask_secret"),
}
_AIRFLOW_2: dict[str, tuple[str, str]] = {
    "AirflowException": ("airflow.exceptions", "AirflowException"),
    "AirflowFailException": ("airflow.exceptions", "AirflowFailException"),
    "AirflowSensorTimeout": ("airflow.exceptions", "AirflowSensorTimeout"),
    "BaseHook": ("airflow.hooks.base", "BaseHook"),
    "BaseOperator": ("airflow.models.baseoperator", "BaseOperator"),
    "BaseOperatorLink": ("airflow.models.baseoperatorlink", "BaseOperatorLink"),
    "BaseSensorOperator": ("airflow.sensors.base", "BaseSensorOperator"),
    "ObjectStoragePath": ("airflow.io.path", "ObjectStoragePath"),
    "PokeReturnValue": ("airflow.sensors.base", "PokeReturnValue"),
    "XCom": ("airflow.models.xcom", "XCom"),
    "conf": ("airflow.configuration", "conf"),
    "mask_secret": ("airflow.utils.log.secrets_masker", "mask_secret"),
}
_WHERE = _AIRFLOW_3 if AIRFLOW_V_3_0_PLUS else _AIRFLOW_2

__all__ = ["AIRFLOW_V_3_0_PLUS", "AIRFLOW_VERSION", *sorted(_WHERE)]

if TYPE_CHECKING:
    pass


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
