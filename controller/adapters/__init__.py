"""Adapters: the only code that talks to backends. One module per backend SDK; each observes live
state in batched reads and applies exactly one action at a time. They decide nothing."""
