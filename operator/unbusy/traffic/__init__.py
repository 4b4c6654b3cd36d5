"""Pure traffic decisions: canary rollouts (state machine, analysis verdicts, the weights they route)."""
