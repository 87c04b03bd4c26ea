"""The composition root of `alertd run`: wiring (`wiring`), one async context manager per
resource (`resources`), signals and the run itself (`run`), logging and systemd notify."""
