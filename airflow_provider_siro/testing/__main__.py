"""``python -m airflow_provider_siro.testing``: run the offline Siro server."""

from airflow_provider_siro.testing.server import main

raise SystemExit(main())
