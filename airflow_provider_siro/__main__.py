"""``python -m airflow_provider_siro``: the provider's shell commands (``ledger list|show|forget|settle``);
see :mod:`airflow_provider_siro.cli.ledger`."""

from airflow_provider_siro.cli.ledger import main

raise SystemExit(main())
