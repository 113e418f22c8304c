import sys

from renalnode.cli import main

sys.exit(main())
