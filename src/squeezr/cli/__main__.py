"""``python -m squeezr.cli``: the ``squeezr`` command, e.g. under ``torchrun -m squeezr.cli``."""

from squeezr.cli import main

raise SystemExit(main())
