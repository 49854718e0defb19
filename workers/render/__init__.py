"""Turning a tree into objects: plain directories, kustomize, Helm, SOPS, variables,
and the sealed render cache. ``engine.render_unit`` is the entry point; ``tree`` is
the safe file reader every renderer goes through. Never imports ``apply`` or ``run``."""
