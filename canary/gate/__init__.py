"""The verdict gate: canary's synthetic analysis served to Argo Rollouts, Flagger and CI over HTTP."""
