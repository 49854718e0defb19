"""The apply stage: plan as data, then a thin executor (after fluxcd/pkg ``ssa``).

    objects --stamp--> desired --discovery--> paths --observe--> live + inventory
            --plan--> ChangeSet --validate (dry-run)--> apply (tiers) --> prune
            --> inventory --> health --> ApplyResult

``plan``, ``refs``, ``drift`` and ``health.check`` are pure; ``kube`` is the only
module that imports ``kubernetes``. ``engine.apply_unit`` is the entry point.
"""
