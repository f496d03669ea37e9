"""``python -m rlrm`` is the same as the ``rlrm`` command."""

import sys

from rlrm.cli import main

sys.exit(main())
