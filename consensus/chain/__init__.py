"""The chain as a node holds it: the LevelDB store, connecting and reverting blocks, fork choice."""
