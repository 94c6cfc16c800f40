"""pipectl: a declarative release controller for data pipelines.

The package is cut by concept (see docs/architecture.md): ``model`` holds pure data,
``source`` reads manifests, ``plan`` and ``rollout`` decide, ``adapters`` talk to backends,
``engine`` glues them, ``cli`` and ``api`` face people.
"""

__version__ = "0.1.0"
