"""``python -m lrpbook.metrics`` runs the ``lrpbook-eval`` command line."""

from lrpbook.metrics.cli import console_main

raise SystemExit(console_main())
