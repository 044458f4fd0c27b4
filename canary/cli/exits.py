"""The exit statuses of canary's commands (specs/cli.md fixes them)."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_ROLLED_BACK = 3
