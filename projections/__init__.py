"""care-episodes, the read side (see issue: projections)."""
