"""``python -m lrpbook.metrics`` runs the ``lrpbook-eval`` command line."""

from lrpbook.metrics.cli import main

raise SystemExit(main())
