import sys

from twinloop.cli import main

sys.exit(main())
