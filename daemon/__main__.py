"""`python -m daemon` is the `alertd` command."""

from daemon.cli import main

raise SystemExit(main())
