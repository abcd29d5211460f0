"""Why this digit? (section 9): faithfulness of the maps (deletion, sanity check), cost, latency."""
