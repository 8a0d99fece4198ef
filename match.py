"""`python match.py ...`: thin shim over :func:`scraplab.cli.match.main` (Hydra app; see configs/match.yaml)."""
from scraplab.cli.match import main

if __name__ == "__main__":
    main()
