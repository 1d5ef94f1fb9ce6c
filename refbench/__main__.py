import sys

from refbench.cli import main

if __name__ == "__main__":  # also imported, not run, by the fork server's children
    sys.exit(main())
