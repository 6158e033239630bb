import sys

from ascend_overlay.cli import main

sys.exit(main())
