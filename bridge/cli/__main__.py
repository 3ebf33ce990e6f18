"""`python -m bridge.cli` is the `jamstream` command (tests and scripts run it so)."""

from bridge.cli import main

raise SystemExit(main())
