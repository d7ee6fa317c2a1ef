"""`python -m metabench` is the `metabench` command."""

import sys

from metabench.cli import main

sys.exit(main())
