"""Run peachdw from a checkout: `.venv/bin/python main.py sync` works like `peachdw sync`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

try:
    from peachdw.cli import main
except ModuleNotFoundError as missing:
    sys.exit(
        f"Error: {missing.name} is not installed for {sys.executable}. Run `make install` "
        "and use .venv/bin/python main.py (or activate .venv first)."
    )

if __name__ == "__main__":
    main()
