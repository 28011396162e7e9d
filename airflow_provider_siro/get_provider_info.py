"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

Kept free of imports so that Airflow can read it without loading the provider.
"""

from __future__ import annotations

from typing import Any

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "extra"],
    "relabeling": {"host": "Siro API URL", "password": "Access token"},
    "placeholders": {
        "host": "https://api.siro.ai (leave empty for the default)",
        "password": "user-scoped access token; leave empty to mint one from an OAuth app below",
        "org_token": "organization API token (Siro web app > Settings > API)",
        "client_id": "OAuth app client id",
        "client_secret": "OAuth app client secret",
        "user_id": "Siro user id the minted token acts for",
        "scope": "write",
        "api_fields": "auto",
        "auth_host": "https://functions.siro.ai/api-externalApi",
        "app_url": "https://app.siro.ai",
        "max_requests_per_minute": "900",
        "rate_limit_backend": "local, or redis://host:6379/0 to share the budget across machines",
        "rate_limit_redis_conn_id": "a redis connection holding the server's password",
        "rate_limit_on_backend_error": "fail",
    },
}


def _field(label: str, description: str, schema_type: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": [schema_type, "null"], **schema}}


CONN_FIELDS: dict[str, Any] = {
    "org_token": _field(
        "Organization API token",
        "Mints access tokens when no access token is pasted. Sent as Bearer to the org API.",
        "string",
        format="password",
    ),
    "client_id": _field("OAuth client ID", "The OAuth app that mints access tokens.", "string"),
    "client_secret": _field("OAuth client secret", "Secret of that OAuth app.", "string", format="password"),
    "user_id": _field("User ID", "Siro user the minted token acts for (the recordings' owner).", "string"),
    "scope": _field("Scope", "Scope of minted tokens; uploads need write.", "string", enum=["write", "read"]),
    "auth_host": _field("Org API URL", "Base URL of Siro's organization API.", "string"),
    "timeout": _field(
        "Timeout (seconds)", "Per request; an upload's PUT waits this long between bytes.", "number"
    ),
    "max_retries": _field("Max retries", "Retries after 429, 5xx and network errors.", "integer"),
    "retry_backoff": _field(
        "Retry backoff (seconds)", "First wait; doubles per retry, with jitter.", "number"
    ),
    "max_retry_wait": _field("Max wait per retry (seconds)", "Caps backoff and Retry-After.", "number"),
    "api_fields": _field(
        "API field names",
        "auto (default): Siro's current names (fileUrl, contactPhone, contactName), falling back to the "
        "original ones (downloadUrl, customerPhone, customerName) once if Siro refuses them; current or "
        "original pins one.",
        "string",
        enum=["auto", "current", "original"],
    ),
    "newer_field_names": _field(
        "Newer field names (deprecated)",
        "Deprecated: use api_fields. true means api_fields=current, false api_fields=original.",
        "boolean",
    ),
    "allow_insecure_http": _field(
        "Allow plain http://",
        "Only for a trusted non-loopback test server; never for Siro itself.",
        "boolean",
    ),
    "app_url": _field("Siro web app URL", "Base of the links to recordings.", "string"),
    "max_requests_per_minute": _field(
        "Max requests per minute",
        "Pace of API calls, shared by every task on a machine using this credential (900; 0 = off). "
        "Siro allows 1000 per token per minute.",
        "number",
    ),
    "rate_limit_backend": _field(
        "Rate-limit backend",
        "local (one budget per machine) or a Redis/Valkey URL without password (one budget everywhere).",
        "string",
    ),
    "rate_limit_redis_conn_id": _field(
        "Redis connection ID", "A redis connection whose password (and login) the backend uses.", "string"
    ),
    "rate_limit_on_backend_error": _field(
        "When Redis is down",
        "fail the call, or pace by the local budget until Redis answers again.",
        "string",
        enum=["fail", "local"],
    ),
}


SIRO_ASSET_URIS: dict[str, Any] = {
    "schemes": ["siro"],
    "handler": "airflow_provider_siro.utils.assets.sanitize_uri",
    "factory": "airflow_provider_siro.utils.assets.create_asset",
    "to_openlineage_converter": "airflow_provider_siro.utils.assets.convert_asset_to_openlineage",
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider's hooks, operators, sensors, triggers, links, connection form and CLI."""
    return {
        "package-name": "airflow-provider-siro",
        "name": "Siro",
        # Plain text: Airflow 3's Providers page shows it as text and links bare URLs, so reStructuredText
        # link markup would show as "https://siro.aiand wait...". The version and the documentation link
        # come from the package's metadata (its version and its "Documentation" Project-URL).
        "description": "Upload call recordings to Siro, the conversation-intelligence platform, "
        "and wait for their analysis.",
        "integrations": [
            {
                "integration-name": "Siro",
                "external-doc-url": "https://siro.ai",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Siro", "python-modules": ["airflow_provider_siro.hooks.siro"]}],
        "operators": [
            {
                "integration-name": "Siro",
                "python-modules": [
                    "airflow_provider_siro.operators.siro",
                    "airflow_provider_siro.operators.bulk",
                ],
            }
        ],
        "sensors": [{"integration-name": "Siro", "python-modules": ["airflow_provider_siro.sensors.siro"]}],
        "triggers": [{"integration-name": "Siro", "python-modules": ["airflow_provider_siro.triggers.siro"]}],
        "extra-links": ["airflow_provider_siro.links.siro.SiroRecordingLink"],
        # siro://<API host>/<name>: the asset an upload's event names (docs/lineage.rst). Airflow 3
        # reads asset-uris, Airflow 2.11 dataset-uris.
        "asset-uris": [SIRO_ASSET_URIS],
        # `airflow siro ledger ...` on Airflow versions whose providers manager reads "cli" (3.2 and
        # newer; 3.1 and 2.11 ignore it: there the command is `python -m airflow_provider_siro ledger ...`).
        "cli": ["airflow_provider_siro.cli.definition.get_siro_cli_commands"],
        "dataset-uris": [SIRO_ASSET_URIS],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_siro.hooks.siro.SiroHook",
                "hook-name": "Siro",
                "connection-type": "siro",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
