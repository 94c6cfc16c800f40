"""Reading manifests: YAML with positions (``loader``), repo-level validation (``validate``),
git (``git``)."""
