import sys

from runner.daemon import main

sys.exit(main())
