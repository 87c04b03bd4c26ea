"""`python -m daemon` is the `alertd` command."""

from daemon.cli.main import main

raise SystemExit(main())
