"""The `alertd` command: `main` parses the arguments and runs the command's module, one module
per command group (`cmd_*`), each declaring its parser and running through the same services
the daemon uses."""
