"""The former name of canary.local.procs, kept so that existing imports go on working."""

from canary.local.procs import (
    ManagedProcess,
    free_port,
    install_signal_handlers,
    pid_alive,
    running,
    stop_all,
)

__all__ = [
    "ManagedProcess",
    "free_port",
    "install_signal_handlers",
    "pid_alive",
    "running",
    "stop_all",
]
