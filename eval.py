"""`python eval.py ...`: thin shim over :func:`scraplab.cli.eval.main` (Hydra app; see configs/eval.yaml)."""
from scraplab.cli.eval import main

if __name__ == "__main__":
    main()
