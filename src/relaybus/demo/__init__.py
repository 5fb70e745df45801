"""``relaybus demo``: a sample project (planner -> writers in parallel -> reviewer) run end to end."""
