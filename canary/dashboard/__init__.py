"""The live web view of the fleet's rollouts (`canary dashboard`): pages, streams, operator buttons."""
