"""QRHeadScorer: calibrated QRHead passage scores from one forward over passages and query.

For a query q and passages d_1..d_N in one prompt, head h gives passage i the attention mass
``mean over q's tokens of sum over d_i's tokens`` of its post-softmax attention. A passage's score is
the (weighted) mean of that mass over the selected heads, minus the same mass for the null query "N/A"
(calibration). The passages' prompt prefix is encoded once into a KV cache; the real and the null query
(and any further query, see :meth:`QRHeadScorer.encode`) run on top of it without changing it.

Data path of ``rank(query, passages)`` (docs/architecture.md): arguments checked -> :func:`~.layout.plan_layout`
(truncation, windows, prompts; no model yet) -> per window :class:`~.kv.PrefixCache` (the passages'
forward) -> a query pass and a null pass on it (:class:`~.capture.AttentionPass`) -> per-token masses ->
:func:`~.aggregate.passage_scores` -> :func:`~.ranking.rank_passages`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .aggregate import HeadMasses, head_weights, passage_scores, passage_sums, per_head_filtered
from .capture import CapturePlan
from .errors import QRHeadTypeError, QRHeadValueError
from .evidence import Evidence, evidence_sentences
from .heads import HeadSet, HeadSpec, ModelShape, config_fingerprint, normalize_model_name, resolve_heads
from .kv import PrefixCache
from .layout import Layout, WindowPrompt, plan_layout
from .lexical import passage_bm25
from .loading import input_device, load_model
from .options import OPTION_NAMES, ScoringOptions
from .placement import ranked_order
from .prompt import Passage, PromptTemplate, check_passages, resolve_template, safe_tokenizer
from .ranking import RankedPassage, check_evidence, check_first_stage_scores, check_query, check_top_k, rank_passages

logger = logging.getLogger("qrhead_integrations")

__all__ = ["EncodedPassages", "HeadMasses", "QRHeadScorer", "RankedPassage"]

_KEEP = object()


class EncodedPassages:
    """Passages encoded once; score any number of queries against them.

    Returned by :meth:`QRHeadScorer.encode`. Each query costs one short forward (its own tokens, and the
    null query's once for all queries) over the cached passages. Safe to share between threads: queries
    on one object run one at a time and give the same results as sequential calls.
    """

    def __init__(self, scorer: QRHeadScorer, layout: Layout, heads: HeadSet, *, keep_cache: bool = True,
                 order: tuple[int, ...] | None = None, replan: Callable[[list[int]], Layout] | None = None) -> None:
        self.scorer = scorer
        self.layout = layout
        self.heads = heads
        self.keep_cache = keep_cache
        self.plan = scorer._plan_for(heads)
        self._caches: dict[int, PrefixCache] = {}
        self._null: dict[tuple[int, str], np.ndarray] = {}
        self._lock = threading.RLock()
        # placement "ranked": the order this layout was planned for, how to plan another, the last other one
        self._order = order
        self._replan = replan
        self._other: tuple[tuple[int, ...], EncodedPassages] | None = None

    # --- views ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layout)

    @property
    def passages(self) -> tuple[Passage, ...]:
        return self.layout.passages

    @property
    def truncated(self) -> list[bool]:
        return list(self.layout.truncated)

    @property
    def window_of(self) -> list[int]:
        return list(self.layout.window_of)

    @property
    def windows(self) -> tuple[WindowPrompt, ...]:
        return self.layout.prompts

    @property
    def query_room(self) -> int:
        return self.layout.query_room

    @property
    def same_for_every_query(self) -> bool:
        """True when the passages fit one prompt whole (no windows, nothing cut to fit the budget): then any
        query that fits the reserved room is scored exactly as a single ``scorer.rank(query, passages)``
        would score it. When False (long inputs), the windows were planned for the reserved room and can
        differ from a single call's."""
        return self.layout.whole

    def _for(self, query: str, first_stage_scores: list[float] | None = None) -> EncodedPassages:
        """The encoding that scores ``query``: this one, or (placement ``"ranked"``, where the prompt order
        follows the query's first-stage scores) the one planned for the query's order; the last such one
        is kept (with its cache when ``keep_cache``), so repeated queries with one order share it."""
        if self._replan is None:
            return self
        order = tuple(self.scorer.placement_for(query, self.layout.originals, first_stage_scores) or ())
        if order == self._order:
            return self
        with self._lock:
            if self._other is None or self._other[0] != order:
                sub = EncodedPassages(self.scorer, self._replan(list(order)), self.heads, keep_cache=self.keep_cache,
                                      order=order, replan=self._replan)
                self._other = (order, sub)
            return self._other[1]

    # --- per-token masses -------------------------------------------------------------------------
    def _cache(self, k: int, wp: WindowPrompt) -> PrefixCache:
        cache = self._caches.get(k)
        if cache is None:
            s = self.scorer
            cache = PrefixCache(s.model, self.plan, wp.null_prompt.prefix, s.device)
            if self.keep_cache:
                self._caches[k] = cache
        return cache

    def _pass(self, cache: PrefixCache, wp: WindowPrompt, query: str, groups: Sequence[str]) -> dict[str, np.ndarray]:
        """``group -> [heads, prefix_len]`` token masses of one window for ``query``."""
        s = self.scorer
        prompt = wp.prompt(s.tokenizer, query, s.prompt_template, s.options.null_query)
        start = prompt.suffix_start
        if prompt.prefix != wp.null_prompt.prefix:
            # The tokenizer merged text across the prefix boundary differently for this query: encode
            # this prompt's own prefix (exact, only slower).
            logger.debug("prefix differs for this query; encoding it separately")
            cache = PrefixCache(s.model, self.plan, prompt.prefix, s.device)
        q0, q1 = prompt.query_span
        rows = {"query": slice(q0 - start, q1 - start), "suffix": slice(0, len(prompt) - start)}
        done = cache.run(prompt.suffix, {g: rows[g] for g in groups})
        return {g: _prefix_masses(self.plan, done.masses[g], len(prompt), start) for g in groups}

    def token_masses(self, query: str, groups: Sequence[str] | None = None
                     ) -> list[tuple[WindowPrompt, dict[str, tuple[np.ndarray, np.ndarray | None]]]]:
        """Per window: ``group -> (real, null)`` per-token masses ``[heads, prefix_len]`` of the captured
        heads (the analysis view; ``null`` is None without calibration). ``groups``: row sets to read
        (default: the scorer's ``query_rows``)."""
        query = check_query(query)
        self._check_room(query)
        return self._for(query)._token_masses(query, groups)

    def _token_masses(self, query: str, groups: Sequence[str] | None
                      ) -> list[tuple[WindowPrompt, dict[str, tuple[np.ndarray, np.ndarray | None]]]]:
        s = self.scorer
        groups = tuple(groups or (s.effective_options.query_rows,))
        out = []
        with self._lock:
            for k, wp in enumerate(self.layout.prompts):
                cache = self._cache(k, wp)
                real = self._pass(cache, wp, query, groups)
                null: dict[str, np.ndarray | None] = {g: None for g in groups}
                if s.options.calibrate:
                    missing = [g for g in groups if (k, g) not in self._null]
                    if missing:
                        for g, v in self._pass(cache, wp, s.options.null_query, missing).items():
                            self._null[(k, g)] = v
                    null = {g: self._null[(k, g)] for g in groups}
                out.append((wp, {g: (real[g], null[g]) for g in groups}))
                del cache  # kept in self._caches only with keep_cache
        return out

    def _check_room(self, query: str) -> None:
        n = self.scorer.count_tokens(query)
        if n > self.layout.query_room:
            raise QRHeadValueError(
                f"query has {n} tokens but these passages were encoded with room for {self.layout.query_room} "
                "(raise the scorer's max_query_tokens)")

    # --- scores -----------------------------------------------------------------------------------
    def score(self, query: str) -> list[float]:
        """Calibrated QRHead score of each passage, in input order."""
        query = check_query(query)
        self._check_room(query)
        return self._for(query)._score(query)[0]

    def _score(self, query: str) -> tuple[list[float], list[tuple[WindowPrompt, np.ndarray]]]:
        """Scores on this encoding's layout, and per window the calibrated, head-combined per-token mass
        (for evidence)."""
        s = self.scorer
        opts = s.effective_options
        weights = head_weights(self.heads, opts.head_reduction)
        n = len(self.layout)
        total = np.zeros(n)
        combined = []
        for wp, masses in self._token_masses(query, None):
            real, null = masses[opts.query_rows]
            values = passage_scores(real, null, wp.null_prompt.passage_spans, weights, opts.token_filter)
            total[list(wp.indices)] += values
            combined.append((wp, weights @ (real if null is None else real - null)))
        total = total * self.layout.scale / len(self.layout.placements)
        return [float(v) for v in total], combined

    def _evidence(self, combined: list[tuple[WindowPrompt, np.ndarray]], indices: Sequence[int],
                  top: int) -> dict[int, tuple[Evidence, ...]]:
        """Evidence sentences of the passages at input positions ``indices`` (first placement's prompt)."""
        s = self.scorer
        out: dict[int, tuple[Evidence, ...]] = {}
        wanted = set(indices)
        for wp, tokens in combined:
            if wp.placement != self.layout.placements[0]:
                continue
            starts = wp.passage_token_starts(s.tokenizer, s.prompt_template)
            for pos, j in enumerate(wp.indices):
                if j in wanted:
                    a, b = wp.null_prompt.passage_spans[pos]
                    out[j] = evidence_sentences(wp.passages[pos].text, starts[pos], tokens[a:b], top)
        return out

    def head_masses(self, query: str) -> HeadMasses:
        """Per-head masses of every passage (input order), for detection and analysis."""
        query = check_query(query)
        self._check_room(query)
        return self._for(query)._head_masses(query)

    def _head_masses(self, query: str) -> HeadMasses:
        s = self.scorer
        opts = s.effective_options
        h, n = len(self.heads), len(self.layout)
        real = np.zeros((h, n))
        null = np.zeros((h, n)) if opts.calibrate else None
        filtered = np.zeros((h, n)) if opts.token_filter is not None else None
        for wp, masses in self._token_masses(query, None):
            r, nl = masses[opts.query_rows]
            spans = wp.null_prompt.passage_spans
            idx = list(wp.indices)
            real[:, idx] += passage_sums(r, spans)
            if null is not None:
                null[:, idx] += passage_sums(nl, spans)
            if filtered is not None:
                filtered[:, idx] += per_head_filtered(r, nl, spans)
        k = len(self.layout.placements)
        scale = self.layout.scale
        return HeadMasses(self.heads, real * scale / k, None if null is None else null * scale / k,
                          np.ones(n), self.truncated, self.window_of,
                          None if filtered is None else filtered * scale / k)

    def score_batch(self, queries: Iterable[str], *, show_progress: bool | None = None) -> list[list[float]]:
        """:meth:`score` for many queries over these passages; a progress bar when ``show_progress``
        (default: the scorer's setting)."""
        from tqdm.auto import tqdm

        queries = list(queries)
        show = self.scorer.options.show_progress if show_progress is None else show_progress
        return [self.score(q) for q in tqdm(queries, desc="qrhead score", unit="query", disable=not show)]

    def rank(self, query: str, top_k: int | None = None,
             first_stage_scores: Sequence[float] | None = None, *, evidence: int = 0) -> list[RankedPassage]:
        """Passages best first (ties keep input order; with ``candidate_order="ranked"``, the placement's order);
        fused with the first stage if configured.
        ``evidence=N``: each result carries its N sentences with the most of the heads' mass."""
        check_top_k(top_k)
        fs = check_first_stage_scores(first_stage_scores, len(self.layout))
        return self._rank(query, top_k, fs, evidence)

    def _rank(self, query: str, top_k: int | None, fs: list[float] | None, evidence: int) -> list[RankedPassage]:
        query = check_query(query)
        self._check_room(query)
        passages = self.layout.originals or self.layout.passages  # every order's layout holds the same ones
        options, fs = self.scorer.first_stage_for(query, passages, fs)
        enc = self._for(query, fs)  # "ranked" places by exactly the scores the ranking fuses with
        scores, combined = enc._score(query)
        layout = enc.layout
        ranked = rank_passages(passages, scores, options, top_k=top_k, truncated=layout.truncated,
                               window_of=layout.window_of, first_stage_scores=fs, scored=layout.passages,
                               tie_order=enc._order)
        if evidence:
            found = enc._evidence(combined, [r.index for r in ranked], evidence)
            ranked = [dataclasses.replace(r, evidence=found.get(r.index, ())) for r in ranked]
        return ranked


class QRHeadScorer:
    """Scores passages for a query with a decoder LM's query-focused retrieval heads.

    Build it with :meth:`from_pretrained` (hub id, local folder, ``.gguf`` file, packaged model name,
    or ``None`` for the embedded default) or :meth:`from_model` (reuse a loaded model). Options
    (:class:`~.options.ScoringOptions`) are fixed at construction; :meth:`with_options` gives a new scorer
    on the same weights. One scorer may be shared by many threads.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        heads: HeadSpec = None,
        *,
        options: ScoringOptions | None = None,
        model_name: str | None = None,
        **option_values: Any,
    ) -> None:
        opts = options if options is not None else ScoringOptions()
        if not isinstance(opts, ScoringOptions):
            raise QRHeadTypeError(f"options must be a ScoringOptions, not {type(opts).__name__}")
        if option_values:
            opts = opts.replace(**option_values)
        if not getattr(tokenizer, "is_fast", False):
            raise QRHeadValueError("QRHeadScorer needs a fast tokenizer (exact passage spans need offsets)")
        object.__setattr__(self, "options", opts)
        self.model = model
        self.tokenizer = tokenizer
        self._tok = safe_tokenizer(tokenizer)
        self.shape = ModelShape.from_config(model.config)
        self.model_name = model_name or getattr(model, "name_or_path", None) or getattr(
            model.config, "_name_or_path", None
        ) or type(model).__name__
        self.heads = resolve_heads(heads, self.shape, self.model_name)
        #: The options as applied: every ``"auto"`` (and ``fusion_weight=None``) resolved from the head set's
        #: recommendation, e.g. the authors' scoring variant for their published sets (the fusion applies
        #: with given first-stage scores or the ``first_stage`` one computes: :meth:`first_stage_for`).
        recommended = self.heads.info.get("recommended_options") or {}
        self.effective_options = opts.resolved(recommended)
        if self.effective_options.first_stage and opts.fusion == "auto" and recommended.get("fusion") is None:
            logger.info("first_stage=%r: head set %r recommends no fusion; fusing linearly (QRHead share %.2f)",
                        self.effective_options.first_stage, self.heads.name, self.effective_options.fusion_weight)
        self.prompt_template: PromptTemplate = resolve_template(self.effective_options.template, tokenizer)
        self.device = input_device(model)  # where input ids go (the embedding's device under a device map)
        self._plans: dict[tuple, CapturePlan] = {}
        self._plan = self._plan_for(self.heads)
        self._check_head_provenance()

    # --- options are read-only ------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name in OPTION_NAMES:
            return getattr(self.__dict__["options"], name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in OPTION_NAMES or name == "options":
            raise AttributeError(f"scorer options are fixed: use scorer.with_options({name}=...) for a new scorer "
                                 "on the same weights")
        object.__setattr__(self, name, value)

    def first_stage_for(self, query: str, passages: Sequence[Passage],
                        first_stage_scores: list[float] | None) -> tuple[ScoringOptions, list[float] | None]:
        """The options and first-stage scores a ranking of ``passages`` fuses with: the caller's
        ``first_stage_scores`` when given; else what the ``first_stage`` option computes (``"bm25"``: BM25
        over these passages, title and text, for ``query``; ``"order"``: ``None``, which fusion reads as
        the input order); else no fusion (the heads alone). The same for every entry point."""
        opts = self.effective_options
        if first_stage_scores is not None:
            return opts, first_stage_scores
        if opts.first_stage == "bm25":
            return opts, passage_bm25(query, passages)
        if opts.first_stage == "order":
            return opts, None
        return dataclasses.replace(opts, fusion=None), None

    def placement_for(self, query: str, passages: Sequence[Passage],
                      first_stage_scores: list[float] | None = None) -> list[int] | None:
        """Placement ``"ranked"``: the input positions best first by the scores a ranking fuses with (the
        caller's ``first_stage_scores``, else BM25 over ``passages``; with ``first_stage="order"`` the input
        order), equal scores by content. None for the other placements (they follow the input order)."""
        opts = self.effective_options
        if opts.candidate_order != "ranked":
            return None
        if first_stage_scores is not None:
            return ranked_order(first_stage_scores, passages)
        if opts.first_stage == "order":
            return list(range(len(passages)))
        return ranked_order(passage_bm25(query, passages), passages)

    def with_options(self, *, heads: HeadSpec = _KEEP, **changes: Any) -> QRHeadScorer:
        """A new scorer on the same model and tokenizer with some options (or the heads) changed."""
        options = self.options.replace(**changes)
        return QRHeadScorer(self.model, self.tokenizer, self.heads if heads is _KEEP else heads,
                            options=options, model_name=self.model_name)

    def _check_head_provenance(self) -> None:
        """Warn when a head set records another model or another scoring variant."""
        hs = self.heads
        if hs.model and normalize_model_name(hs.model) != normalize_model_name(self.model_name):
            logger.warning("head set %r was detected for %s, not for %s: its heads may not be retrieval heads "
                           "of this model (detect heads for it with `qrhead detect`)", hs.name, hs.model,
                           self.model_name)
        recorded = hs.info.get("config_fingerprint")
        if recorded and recorded != config_fingerprint(self.model.config):
            logger.warning("head set %r was detected on a model with a different configuration "
                           "(fingerprint %s, this model %s)", hs.name, recorded,
                           config_fingerprint(self.model.config))
        variant = hs.info.get("variant")
        if isinstance(variant, dict):
            mine = self.effective_options.variant
            differ = {k: (v, mine.get(k)) for k, v in variant.items() if k in mine and mine[k] != v}
            if differ:
                text = ", ".join(f"{k}={v!r} (this scorer: {m!r})" for k, (v, m) in differ.items())
                logger.warning("head set %r was detected with %s: re-detect it with these options for the "
                               "heads that fit them", hs.name, text)

    def _plan_for(self, heads: HeadSet) -> CapturePlan:
        key = heads.heads
        plan = self._plans.get(key)
        if plan is None:
            ids = self._plans[next(iter(self._plans))].module_ids if self._plans else None
            plan = CapturePlan.build(self.model, heads, module_ids=ids)
            self._plans[key] = plan
        return plan

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str] | None = None,
        heads: HeadSpec = None,
        *,
        device: str | torch.device | None = None,
        device_map: str | dict[str, Any] | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        options: ScoringOptions | None = None,
        **option_values: Any,
    ) -> QRHeadScorer:
        """Load ``model`` (cached process-wide) and build a scorer; ``option_values`` are
        :class:`~.options.ScoringOptions` fields (validated before the model is loaded)."""
        opts = (options or ScoringOptions()).replace(**option_values) if option_values else options
        loaded = load_model(
            model, device=device, device_map=device_map, dtype=dtype,
            attn_implementation=attn_implementation, revision=revision,
            trust_remote_code=trust_remote_code, model_kwargs=model_kwargs,
        )
        return cls(loaded.model, loaded.tokenizer, heads, options=opts, model_name=loaded.name)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, heads: HeadSpec = None, **options: Any) -> QRHeadScorer:
        """Reuse an already loaded model (e.g. the generator's): no weights are copied or moved."""
        return cls(model, tokenizer, heads, **options)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.options.to_dict().items() if v != getattr(ScoringOptions(), k)}
        extra = "".join(f", {k}={v!r}" for k, v in changed.items())
        return f"QRHeadScorer(model={self.model_name!r}, heads={self.heads.name!r} ({len(self.heads)}){extra})"

    # --- public API ---------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the scorer reads it (special-token text counts as plain text)."""
        return self._tok.count(text)

    def context_limit(self) -> int:
        """Tokens one prompt may hold: the model's context, or ``max_context_tokens`` if smaller."""
        text = self.model.config.get_text_config()
        limit = getattr(text, "max_position_embeddings", None) or 1 << 30
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1 << 24:
            limit = min(limit, tok_max)
        if self.options.max_context_tokens is not None:
            limit = min(limit, self.options.max_context_tokens)
        return int(limit)

    def score(self, query: str, passages: Sequence[Any]) -> list[float]:
        """Calibrated QRHead score of each passage, in input order."""
        query = check_query(query)
        items = check_passages(passages)
        if not items:
            return []
        return self._encode(items, [query], keep_cache=False).score(query)

    def rank(self, query: str, passages: Sequence[Any], top_k: int | None = None,
             first_stage_scores: Sequence[float] | None = None, *, evidence: int = 0) -> list[RankedPassage]:
        """Passages best first, each with ``index`` (input position), ``score`` and ``text``.

        The QRHead score is fused (``fusion``) with the first stage: ``first_stage_scores`` when given,
        else what the ``first_stage`` option computes (the embedded default: BM25 over these passages;
        never the input order unless ``first_stage="order"``): :meth:`first_stage_for`. ``evidence=N``: each result carries
        the N sentences of its text that hold the most of the selected heads' mass (``RankedPassage.evidence``,
        character offsets into the passage text).
        """
        query = check_query(query)
        items = check_passages(passages)
        check_top_k(top_k)
        fs = check_first_stage_scores(first_stage_scores, len(items))
        evidence = check_evidence(evidence)
        if not items:
            return []
        return self._encode(items, [query], keep_cache=False, first_stage_scores=fs)._rank(query, top_k, fs, evidence)

    def head_masses(self, query: str, passages: Sequence[Any], heads: HeadSpec = None) -> HeadMasses:
        """Per-head masses for ``heads`` (default: the scorer's heads; ``"all"`` for every head)."""
        query = check_query(query)
        items = check_passages(passages)
        capture = self.heads if heads is None else resolve_heads(heads, self.shape, self.model_name)
        if not items:
            raise QRHeadValueError("no passages")
        return self._encode(items, [query], heads=capture, keep_cache=False).head_masses(query)

    def encode(self, passages: Sequence[Any], heads: HeadSpec = None, *, queries: Sequence[str] | None = None,
               keep_cache: bool = True) -> EncodedPassages:
        """Encode passages once, then call ``.score(query)`` / ``.rank(query)`` for many queries.

        Windows (only when the passages exceed the context) are planned with room for the longest of
        ``queries`` when given, else for ``max_query_tokens`` tokens. ``keep_cache=False`` frees each
        window's cache after use (less memory, the passages are read again for every query).
        """
        items = check_passages(passages)
        if not items:
            raise QRHeadValueError("no passages to encode")
        capture = self.heads if heads is None else resolve_heads(heads, self.shape, self.model_name)
        checked = [check_query(q) for q in queries] if queries is not None else []
        return self._encode(items, checked, heads=capture, keep_cache=keep_cache)

    def score_batch(self, pairs: Iterable[tuple[str, Sequence[Any]]], *,
                    show_progress: bool | None = None) -> list[list[float]]:
        """Score many ``(query, passages)`` pairs, in order; a progress bar when ``show_progress``
        (default: the scorer's setting).

        Consecutive pairs with the same passages (e.g. many questions about one document) share one
        encoding when the passages fit one prompt: they are read once, each further query costs one
        short pass (as with :meth:`encode`). Results equal ``[score(q, p) for q, p in pairs]``.
        """
        from tqdm.auto import tqdm

        checked = self._check_pairs(pairs)
        show = self.options.show_progress if show_progress is None else show_progress
        out: list[list[float]] = []
        with tqdm(total=len(checked), desc="qrhead score", unit="query", disable=not show) as bar:
            for queries, items in _runs(checked):
                if not items:
                    out.extend([] for _ in queries)
                elif len(queries) == 1:
                    out.append(self._encode(items, queries, keep_cache=False).score(queries[0]))
                else:
                    enc = self._encode(items, queries, keep_cache=True)
                    if enc.same_for_every_query:
                        out.extend(enc.score(q) for q in queries)
                    else:  # long inputs: score each query on the layout a single call would plan
                        out.extend(self._encode(items, [q], keep_cache=False).score(q) for q in queries)
                bar.update(len(queries))
        return out

    # --- internals ----------------------------------------------------------------------------
    def _check_pairs(self, pairs: Any) -> list[tuple[str, list[Passage]]]:
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
            raise QRHeadTypeError("pairs must be a list of (query, passages) tuples")
        out = []
        for n, pair in enumerate(pairs):
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise QRHeadTypeError(f"pairs[{n}] must be a (query, passages) tuple, not {type(pair).__name__}")
            q, p = pair
            out.append((check_query(q, f"pairs[{n}] query"), check_passages(p, f"pairs[{n}] passages")))
        return out

    def _encode(self, items: list[Passage], queries: list[str], *, heads: HeadSet | None = None,
                keep_cache: bool, first_stage_scores: list[float] | None = None) -> EncodedPassages:
        """Plan ``items``' layout for ``queries``. Placement ``"ranked"``: planned in the order of the one
        query (with ``first_stage_scores``), else in content order; each query then gets the layout of its
        own order (:meth:`EncodedPassages._for`)."""
        room = max((self.count_tokens(q) for q in queries), default=self.options.max_query_tokens)
        budget = self.context_limit()
        limited = self.options.max_context_tokens is not None and budget == self.options.max_context_tokens
        placement = self.effective_options.candidate_order

        def plan(order: list[int] | None) -> Layout:
            return plan_layout(
                self.tokenizer, items, order=order, template=self.prompt_template,
                null_query=self.options.null_query, candidate_order="reversed" if order is not None else placement,
                budget=budget, query_room=room, max_passage_tokens=self.options.max_passage_tokens,
                query_is_known=bool(queries),
                budget_source="max_context_tokens" if limited else "the model's context length")

        if placement != "ranked":
            return EncodedPassages(self, plan(None), heads or self.heads, keep_cache=keep_cache)
        if len(queries) == 1:
            order = self.placement_for(queries[0], items, first_stage_scores)
        else:
            order = ranked_order([0.0] * len(items), items)
        return EncodedPassages(self, plan(order), heads or self.heads, keep_cache=keep_cache,
                               order=tuple(order or ()), replan=plan)


def _prefix_masses(plan: CapturePlan, per_layer: dict[int, torch.Tensor], total: int, prefix: int) -> np.ndarray:
    """``[heads, prefix]`` masses on the prefix positions, heads in the plan's order. A layer's keys are the
    last ``K`` positions of the prompt (sliding-window layers keep fewer than all of them)."""
    placed = {}
    for layer, mass in per_layer.items():
        keys = mass.shape[1]
        full = torch.zeros((mass.shape[0], total), dtype=torch.float64)
        full[:, total - keys:] = mass.double().cpu()
        placed[layer] = full[:, :prefix]
    return plan.stack(placed).numpy()


def _runs(pairs: list[tuple[str, list[Passage]]]) -> Iterable[tuple[list[str], list[Passage]]]:
    """Consecutive pairs with equal passages, grouped."""
    i = 0
    while i < len(pairs):
        j = i + 1
        while j < len(pairs) and pairs[j][1] == pairs[i][1]:
            j += 1
        yield [q for q, _ in pairs[i:j]], pairs[i][1]
        i = j
