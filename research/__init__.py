"""Research code of qrhead-integrations: the ranking-quality study and the needle test.

Not part of the installed package (``pyproject.toml`` packages only ``qrhead_integrations*`` and
``llama_index*``): a plain package at the repository root, run from there with the package installed::

    python -m research collect --set scifact-test --queries 60     # store every head's masses (resumable)
    python -m research study --out docs/results/study-smollm2.json  # every variant, offline
    python -m research needle --essays ../shared/data/pg-essays --detect-out retrieval.json --out needle.json

- :mod:`research.collect`: every head's per-token masses per query, stored once (``MassStore``);
- :mod:`research.study`: every scoring variant evaluated offline from the store (passage scores through
  the engine's :mod:`qrhead_integrations.engine.aggregate`);
- :mod:`research.sets`: the study's named detection and evaluation sets;
- :mod:`research.needle`: needle in a haystack, copy-paste retrieval heads and head masking;
- :mod:`research.cli`: the command line (``python -m research``).

It builds on the library (``qrhead_integrations``: engine, ``eval`` data readers, metrics, first stages)
and never the other way round.
"""
