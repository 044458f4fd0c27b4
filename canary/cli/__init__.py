"""The `canary` command: one module per group of subcommands, each with a register() function."""
