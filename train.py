"""`python train.py ...`: thin shim over :func:`scraplab.cli.train.main` (Hydra app; see configs/train.yaml)."""
from scraplab.cli.train import main

if __name__ == "__main__":
    main()
