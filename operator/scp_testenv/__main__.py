import sys

from scp_testenv.cli import main

sys.exit(main())
