"""``python -m lrpbook.train`` / ``torchrun --nproc_per_node=N -m lrpbook.train``: see :mod:`lrpbook.train.cli`."""

import sys

from lrpbook.train.cli import main

sys.exit(main())
