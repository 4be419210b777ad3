"""What the framework adapters (LlamaIndex, LangChain) share, one module per job.

- :mod:`.settings` -- the adapters' setting names (model loading plus the scoring options) and the stored,
  JSON-friendly form of their values; the settings that describe an existing scorer.
- :mod:`.scorer_slot` -- :class:`~.scorer_slot.ScorerSlot`: one adapter's scorer, rebuilt when its settings
  change, optionally pinned to an already loaded model.
- :mod:`.fields` -- the settings as pydantic fields: :data:`~.fields.ScorerConfig` (the base both
  frameworks' classes share) and the chunk retrievers' :func:`~.fields.selection_fields`.
- :mod:`.documents` -- what goes into and comes out of the frameworks' documents: metadata copies,
  first-stage scores, evidence metadata.
- :mod:`.chunk_selection` -- the chunk retrievers' helpers: :func:`~.chunk_selection.select_many` (several
  queries over one encoding of the chunks) and the pickle-safe :class:`~.chunk_selection.ChunkCache`.
- :mod:`.docs_tables` -- the generated option tables in docs/*.md
  (``python -m qrhead_integrations.adapters.docs_tables`` rewrites them).
"""
