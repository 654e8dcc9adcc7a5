"""``python -m mambairv2``: the ``mambairv2`` command. Importing this module runs nothing."""
import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
