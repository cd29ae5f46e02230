"""python -m tools.cairn_fault: the same as scripts/cairn-fault."""
import sys

from .cli import main

sys.exit(main())
