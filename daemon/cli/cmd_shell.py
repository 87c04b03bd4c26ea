"""`alertd completion bash|zsh` and `alertd man`: shell completion and the man page, both
generated from the command's own parser, so they list every command and option there is.
docs/operations.md ("Shell completion and man page") installs them."""

from __future__ import annotations

import argparse

from daemon import __version__
from daemon.cli.common import Invocation, SubParsers

ENVIRONMENT = r""".TP
.B ALERTD_CONFIG
The configuration file, when \-\-config is not given.
.TP
.B ALERTD_URL
The alertd to ask through its HTTP API, when \-\-url is not given (tickets, alerts,
deliveries, outbox, sync history, rules test; other commands run on this machine).
.TP
.B ALERTD_TOKEN_FILE
With ALERTD_URL or \-\-url: a file holding an API token of that alertd."""
SEE_ALSO = r"""The documentation in docs/ of the alertd repository: configuration.md,
operations.md, http\-api.md, rules.md, console.md."""


def register(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    completion = commands.add_parser("completion", parents=[common],
                                     help="print the shell completion script (bash or zsh)")
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(handler=print_completion, secret_sections=())
    man = commands.add_parser("man", parents=[common], help="print the man page (troff)")
    man.set_defaults(handler=print_man_page, secret_sections=())


# shtab and argparse_manpage are imported by these two commands only: `alertd run` keeps
# every module it imports for its whole life (tests/system/test_idle_imports.py).


def print_completion(inv: Invocation) -> int:
    import shtab

    print(shtab.complete(inv.args.root_parser, inv.args.shell), end="")
    return 0


def print_man_page(inv: Invocation) -> int:
    from argparse_manpage.manpage import Manpage

    page = Manpage(inv.args.root_parser)
    page.source = f"alertd {__version__}"
    page.manual = "alertd manual"
    page.description = "RMM alerts into tickets, kept in step"
    page.add_section("environment", ">", ENVIRONMENT)
    page.add_section("see also", ">", SEE_ALSO)
    print(str(page))
    return 0
