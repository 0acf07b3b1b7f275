import sys

from odenet.cli import main

sys.exit(main())
