"""``python -m ragstream.cli``: the same command as ``ragstream``."""

from ragstream.cli import main

main()
