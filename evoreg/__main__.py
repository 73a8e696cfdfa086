"""``python -m evoreg``: the same as the ``evoreg`` command."""

from .cli import main

raise SystemExit(main())
