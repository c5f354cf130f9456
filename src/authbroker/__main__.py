"""``python -m authbroker``: the ``authbroker`` command (:func:`authbroker.cli.main`)."""

import sys

from authbroker.cli import main

sys.exit(main())
