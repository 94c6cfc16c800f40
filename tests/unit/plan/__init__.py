"""Unit tests of controller.plan (a package, so its module names never clash with tests/integration)."""
