"""The demo shop service with switchable faults, used by the demo and the tests."""
