"""Train an AAE variant: python train.py --config configs/aae.yaml [key.sub=value ...]"""
import sys

from lightning_aae.cli import main

if __name__ == "__main__":
    sys.exit(main())
