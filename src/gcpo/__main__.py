import sys

from gcpo.cli import main

sys.exit(main())
