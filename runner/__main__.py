import sys

from runner.service import main

sys.exit(main())
