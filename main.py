"""Run peachdw from a checkout: `python main.py sync` works like `peachdw sync`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from peachdw.cli import main

if __name__ == "__main__":
    main()
