"""Rollouts: their configuration, their state machine and the per-step controller."""
