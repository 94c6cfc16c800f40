"""Pure planning: desired resources from a release, pairing with live state, per-kind diff rules,
actions with reasons, ordering. Nothing here performs I/O; ``now`` and file readers are passed in."""
