"""The provider's shell commands: ``python -m airflow_provider_siro ledger ...``, and the same as
``airflow siro ledger ...`` on Airflow versions that load provider CLI commands (see
:mod:`airflow_provider_siro.cli.definition`)."""
