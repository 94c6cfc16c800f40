"""Engine: the glue. Executor (journaled apply), reconciler (one pass per release), controller loop."""
