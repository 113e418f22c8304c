import sys

from deploy.viewer.server import main

sys.exit(main())
