"""``python -m greedy_compress.cli``: the ``greedy-compress`` command."""

from greedy_compress.cli import main

raise SystemExit(main())
