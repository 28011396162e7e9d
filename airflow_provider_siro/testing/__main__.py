"""``python -m airflow_provider_siro.testing``: the ``siro-offline`` command (``serve``, ``upload``)."""

from airflow_provider_siro.testing.cli import main

raise SystemExit(main())
