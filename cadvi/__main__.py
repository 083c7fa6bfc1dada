"""``python -m cadvi``: the ``cadvi`` command, also what ``accelerate launch -m cadvi train run ...`` runs."""

import sys

from cadvi.cli import main

sys.exit(main())
