"""``python -m scraplab.cli SUBCOMMAND ...`` = the ``scraplab`` console script."""
import sys

from scraplab.cli.main import main

sys.exit(main())
