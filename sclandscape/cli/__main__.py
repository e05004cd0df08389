"""``python -m sclandscape.cli``: the command line."""

import sys

from sclandscape.cli.commands import main

sys.exit(main())
