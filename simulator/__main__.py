"""`python -m simulator` = `shangyun simulate`."""
import sys

from .cli import main

sys.exit(main())
