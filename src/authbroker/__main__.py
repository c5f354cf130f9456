import sys

from authbroker.cli import main

sys.exit(main())
