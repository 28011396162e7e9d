"""The measures of ``make bench``, one module each; ``dev/bench.py`` runs them."""
