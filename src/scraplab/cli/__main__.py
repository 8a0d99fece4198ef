"""``python -m scraplab.cli SUBCOMMAND ...`` = the ``scraplab`` console script."""
import sys

from scraplab.cli.main import main

if __name__ == "__main__":  # importing the module (package walks) must not run the dispatcher
    sys.exit(main())
