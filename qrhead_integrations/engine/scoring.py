"""QRHeadScorer: calibrated QRHead passage scores from one forward over passages and query.

For a query q and passages d_1..d_N in one prompt, head h gives passage i the attention mass
``mean over q's tokens of sum over d_i's tokens`` of its post-softmax attention. A passage's score is
the mean of that mass over the selected heads, minus the same mass for the null query "N/A"
(calibration). The passages' prompt prefix is encoded once into a KV cache; the real and the null query
(and any further query, see :meth:`QRHeadScorer.encode`) run on top of it without changing it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .capture import CapturePlan, LayerHeads, attention_module_ids, capturing, run_until_stop
from .fusion import FUSIONS, fuse
from .heads import HeadSet, HeadSpec, ModelShape, config_fingerprint, normalize_model_name, resolve_heads
from .loading import input_device, load_model
from .prompt import (
    DEFAULT_TEMPLATE,
    Passage,
    PromptTemplate,
    TokenizedPrompt,
    as_passage,
    build_prompt,
)
from .windows import plan_windows, window_scales

logger = logging.getLogger("qrhead_integrations")

CandidateOrder = Literal["reversed", "as_given", "both"]
_ORDERS = ("reversed", "as_given", "both")


@dataclass(frozen=True)
class RankedPassage:
    """One passage of a ranking. ``index`` is its position in the caller's input.

    ``score`` is what the ranking is sorted by: the calibrated QRHead score, or the fused score when
    the scorer fuses with the first stage (then ``qrhead_score`` keeps the QRHead part).
    """

    index: int
    score: float
    rank: int
    text: str
    title: str = ""
    truncated: bool = False
    window: int = 0
    qrhead_score: float | None = None
    first_stage_score: float | None = None


@dataclass
class HeadScores:
    """Per-head attention mass of every passage, in input order (for analysis, detection, eval).

    ``real`` and ``null`` are ``[len(heads), N]``; ``scale`` is the per-passage window factor.
    """

    heads: HeadSet
    real: np.ndarray
    null: np.ndarray | None
    scale: np.ndarray
    truncated: list[bool] = field(default_factory=list)
    window: list[int] = field(default_factory=list)

    def rows(self, heads: Iterable[tuple[int, int]] | None = None) -> np.ndarray:
        if heads is None:
            return np.arange(len(self.heads))
        pos = {h: i for i, h in enumerate(self.heads.heads)}
        try:
            return np.array([pos[tuple(h)] for h in heads], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"head {exc.args[0]} was not captured") from None

    def per_head(self, calibrate: bool = True) -> np.ndarray:
        """``[heads, N]`` masses, calibrated (minus the null query's) when asked."""
        mass = self.real
        if calibrate:
            if self.null is None:
                raise ValueError("these scores were computed without the null query")
            mass = mass - self.null
        return mass * self.scale[None, :]

    def scores(self, heads: Iterable[tuple[int, int]] | None = None, calibrate: bool = True) -> np.ndarray:
        """Mean over ``heads`` (default: all captured heads) of the per-head masses."""
        return self.per_head(calibrate)[self.rows(heads)].mean(axis=0)


class _Window:
    """Passages of one prompt, with the prefix KV cache that all queries share."""

    def __init__(self, scorer: QRHeadScorer, indices: list[int], passages: list[Passage]):
        self.scorer = scorer
        self.indices = indices  # input positions, in prompt order
        self.passages = passages  # prompt order
        self.null_prompt = scorer._prompt(passages, scorer.null_query)
        self.prefix = self.null_prompt.input_ids[: self.null_prompt.suffix_start]
        self.cache: Any = None
        self._null_mass: np.ndarray | None = None

    def encode(self, plan: CapturePlan) -> None:
        self.cache = self.scorer._encode_prefix(self.prefix, plan)

    def release(self) -> None:
        self.cache = None

    def mass(self, query: str, plan: CapturePlan) -> np.ndarray:
        """``[heads, n_w]`` attention mass of the capture heads (prompt order) for ``query``."""
        if query == self.scorer.null_query and self._null_mass is not None:
            return self._null_mass
        prompt = self.null_prompt if query == self.scorer.null_query else self.scorer._prompt(self.passages, query)
        if (
            prompt.suffix_start != len(self.prefix)
            or prompt.input_ids[: len(self.prefix)] != self.prefix
            or prompt.passage_spans != self.null_prompt.passage_spans
        ):
            # The tokenizer merged text across the prefix boundary differently for this query:
            # encode this prompt's own prefix (exact, only slower).
            logger.debug("prefix differs for this query; encoding it separately")
            cache = self.scorer._encode_prefix(prompt.input_ids[: prompt.suffix_start], plan)
            out = self.scorer._query_mass(prompt, cache, plan)
        else:
            if self.cache is None:
                self.encode(plan)
            out = self.scorer._query_mass(prompt, self.cache, plan)
        if query == self.scorer.null_query:
            self._null_mass = out
        return out


class EncodedPassages:
    """Passages encoded once; score any number of queries against them.

    Returned by :meth:`QRHeadScorer.encode`. Each query costs one short forward (its own tokens and
    the null query's, the latter once for all queries) over the cached passages.
    """

    def __init__(self, scorer: QRHeadScorer, passages: list[Passage], heads: HeadSet,
                 windows: list[list[int]], truncated: list[bool], keep_cache: bool = True,
                 query_room: int | None = None):
        self.scorer = scorer
        self.query_room = query_room  # longest query (tokens) the windows were planned for
        self.passages = passages
        self.heads = heads
        self.truncated = truncated
        self.plan = scorer._plan(heads)
        self.scale = np.asarray(window_scales(windows, len(passages)))
        self.window_of = [0] * len(passages)
        self.keep_cache = keep_cache
        self._orders = ["reversed", "as_given"] if scorer.candidate_order == "both" else [scorer.candidate_order]
        self.windows: list[tuple[str, _Window]] = []
        for order in self._orders:
            for w, idx in enumerate(windows):
                for i in idx:
                    self.window_of[i] = w
                in_prompt = list(reversed(idx)) if order == "reversed" else list(idx)
                self.windows.append((order, _Window(scorer, in_prompt, [passages[i] for i in in_prompt])))

    def __len__(self) -> int:
        return len(self.passages)

    def head_scores(self, query: str, calibrate: bool | None = None) -> HeadScores:
        query = self.scorer._check_query(query)
        if self.query_room is not None and self.scorer._token_count(query) > self.query_room:
            raise ValueError(
                f"query has {self.scorer._token_count(query)} tokens but these passages were encoded "
                f"with room for {self.query_room} (raise the scorer's max_query_tokens)"
            )
        calibrate = self.scorer.calibrate if calibrate is None else calibrate
        n, h = len(self.passages), len(self.heads)
        real = np.zeros((h, n))
        null = np.zeros((h, n)) if calibrate else None
        for _, window in self.windows:
            real[:, window.indices] += window.mass(query, self.plan)
            if null is not None:
                null[:, window.indices] += window.mass(self.scorer.null_query, self.plan)
            if not self.keep_cache:
                window.release()
        k = len(self._orders)
        return HeadScores(self.heads, real / k, None if null is None else null / k, self.scale,
                          list(self.truncated), list(self.window_of))

    def score(self, query: str) -> list[float]:
        """Calibrated QRHead score of each passage, in input order."""
        return [float(s) for s in self.head_scores(query).scores(calibrate=self.scorer.calibrate)]

    def score_batch(self, queries: Iterable[str], *, show_progress: bool | None = None) -> list[list[float]]:
        """:meth:`score` for many queries over these passages; a progress bar when ``show_progress``
        (default: the scorer's setting)."""
        from tqdm.auto import tqdm

        queries = list(queries)
        show = self.scorer.show_progress if show_progress is None else show_progress
        return [self.score(q) for q in tqdm(queries, desc="qrhead score", unit="query", disable=not show)]

    def rank(self, query: str, top_k: int | None = None,
             first_stage_scores: Sequence[float] | None = None) -> list[RankedPassage]:
        """Passages best first (ties keep input order); fused with the first stage if configured."""
        return self.scorer._ranking(self.passages, self.score(query), top_k, self.truncated, self.window_of,
                                    first_stage_scores)


class QRHeadScorer:
    """Scores passages for a query with a decoder LM's query-focused retrieval heads.

    Build it with :meth:`from_pretrained` (hub id, local folder, ``.gguf`` file, packaged model name,
    or ``None`` for the embedded default) or :meth:`from_model` (reuse a loaded model).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        heads: HeadSpec = None,
        *,
        model_name: str | None = None,
        candidate_order: CandidateOrder = "reversed",
        calibrate: bool = True,
        null_query: str = "N/A",
        max_context_tokens: int | None = None,
        max_passage_tokens: int | None = None,
        max_query_tokens: int = 256,
        template: PromptTemplate = DEFAULT_TEMPLATE,
        fusion: str | None = None,
        fusion_weight: float = 0.5,
        rrf_k: int = 60,
        show_progress: bool = False,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("QRHeadScorer needs a fast tokenizer (exact passage spans need offsets)")
        if candidate_order not in _ORDERS:
            raise ValueError(f"candidate_order must be one of {_ORDERS}, not {candidate_order!r}")
        for name, value in (("max_context_tokens", max_context_tokens),
                            ("max_passage_tokens", max_passage_tokens), ("max_query_tokens", max_query_tokens)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not null_query.strip():
            raise ValueError("null_query must not be empty")
        if fusion is not None and fusion not in FUSIONS:
            raise ValueError(f"fusion must be None or one of {FUSIONS}, not {fusion!r}")
        if not 0.0 <= fusion_weight <= 1.0:
            raise ValueError("fusion_weight must be between 0 and 1")
        self.model = model
        self.tokenizer = tokenizer
        self.shape = ModelShape.from_config(model.config)
        self.model_name = model_name or getattr(model, "name_or_path", None) or getattr(
            model.config, "_name_or_path", None
        ) or type(model).__name__
        self.heads = resolve_heads(heads, self.shape, self.model_name)
        self._check_head_provenance()
        self.candidate_order = candidate_order
        self.calibrate = calibrate
        self.null_query = null_query
        self.max_context_tokens = max_context_tokens
        self.max_passage_tokens = max_passage_tokens
        self.max_query_tokens = max_query_tokens
        self.template = template
        self.fusion = fusion
        self.fusion_weight = fusion_weight
        self.rrf_k = rrf_k
        self.show_progress = show_progress
        self._module_ids = attention_module_ids(model)
        self._input_device = input_device(model)
        text_config = model.config.get_text_config()
        self._num_kv_heads = getattr(text_config, "num_key_value_heads", None) or self.shape.num_heads

    def _check_head_provenance(self) -> None:
        """Warn when a head set records another model (same shape, so it runs, but means little)."""
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
        **options: Any,
    ) -> QRHeadScorer:
        """Load ``model`` (cached process-wide) and build a scorer; ``options`` go to ``__init__``."""
        loaded = load_model(
            model, device=device, device_map=device_map, dtype=dtype,
            attn_implementation=attn_implementation, revision=revision,
            trust_remote_code=trust_remote_code, model_kwargs=model_kwargs,
        )
        options.setdefault("model_name", loaded.name)
        return cls(loaded.model, loaded.tokenizer, heads, **options)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, heads: HeadSpec = None, **options: Any) -> QRHeadScorer:
        """Reuse an already loaded model (e.g. the generator's): no weights are copied or moved."""
        return cls(model, tokenizer, heads, **options)

    def __repr__(self) -> str:
        return (f"QRHeadScorer(model={self.model_name!r}, heads={self.heads.name!r} ({len(self.heads)}), "
                f"candidate_order={self.candidate_order!r}, calibrate={self.calibrate})")

    # --- public API ---------------------------------------------------------------------------
    def score(self, query: str, passages: Sequence[Any]) -> list[float]:
        """Calibrated QRHead score of each passage, in input order."""
        if len(passages) == 0:
            self._check_query(query)
            return []
        return self._encoded(passages, [query], keep_cache=False).score(query)

    def rank(self, query: str, passages: Sequence[Any], top_k: int | None = None,
             first_stage_scores: Sequence[float] | None = None) -> list[RankedPassage]:
        """Passages best first, each with ``index`` (input position), ``score`` and ``text``.

        With ``fusion`` set, the QRHead score is fused with the first stage: ``first_stage_scores``
        when given, else the input order (inputs arrive best-first).
        """
        if len(passages) == 0:
            self._check_query(query)
            return []
        enc = self._encoded(passages, [query], keep_cache=False)
        return enc.rank(query, top_k, first_stage_scores)

    def head_scores(self, query: str, passages: Sequence[Any], heads: HeadSpec = None,
                    calibrate: bool | None = None) -> HeadScores:
        """Per-head masses for ``heads`` (default: the scorer's heads; ``"all"`` for every head)."""
        capture = self.heads if heads is None else resolve_heads(heads, self.shape, self.model_name)
        if len(passages) == 0:
            raise ValueError("no passages")
        return self._encoded(passages, [query], heads=capture, keep_cache=False).head_scores(query, calibrate)

    def encode(self, passages: Sequence[Any], heads: HeadSpec = None) -> EncodedPassages:
        """Encode passages once, then call ``.score(query)`` / ``.rank(query)`` for many queries.

        Room for queries of up to ``max_query_tokens`` tokens is reserved when windows are planned.
        """
        if len(passages) == 0:
            raise ValueError("no passages to encode")
        capture = self.heads if heads is None else resolve_heads(heads, self.shape, self.model_name)
        return self._encoded(passages, [], heads=capture, keep_cache=True)

    def score_batch(self, pairs: Iterable[tuple[str, Sequence[Any]]], *,
                    show_progress: bool | None = None) -> list[list[float]]:
        """Score many ``(query, passages)`` pairs, in order; a progress bar when ``show_progress``
        (default: the scorer's setting).

        Consecutive pairs with the same passages (e.g. many questions about one document) share one
        encoding: the passages are read once, each further query costs one short pass (as with
        :meth:`encode`). Results equal ``[score(q, p) for q, p in pairs]``.
        """
        from tqdm.auto import tqdm

        pairs = [(q, p) for q, p in pairs]
        show = self.show_progress if show_progress is None else show_progress
        out: list[list[float]] = []
        with tqdm(total=len(pairs), desc="qrhead score", unit="query", disable=not show) as bar:
            i = 0
            while i < len(pairs):
                j = i + 1
                while j < len(pairs) and _same_passages(pairs[j][1], pairs[i][1]):
                    j += 1
                if j - i == 1 or len(pairs[i][1]) == 0:
                    for q, p in pairs[i:j]:
                        out.append(self.score(q, p))
                        bar.update(1)
                else:
                    enc = self._encoded(pairs[i][1], [q for q, _ in pairs[i:j]], keep_cache=True)
                    # Passages split over several windows: keep one window's cache at a time (each query
                    # re-reads them, only the null query's pass is shared), as score() would.
                    enc.keep_cache = len(enc.windows) == len(enc._orders)
                    for q, _ in pairs[i:j]:
                        out.append(enc.score(q))
                        bar.update(1)
                    del enc
                i = j
        return out

    # --- internals ----------------------------------------------------------------------------
    def _check_query(self, query: Any) -> str:
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, not {type(query).__name__}")
        if not query.strip():
            raise ValueError("query is empty")
        return query.strip()

    def _prompt(self, passages: Sequence[Passage], query: str) -> TokenizedPrompt:
        return build_prompt(self.tokenizer, passages, query, self.template)

    def _plan(self, heads: HeadSet) -> CapturePlan:
        layers = {
            layer: LayerHeads.build(hs, self.shape.num_heads, self._num_kv_heads)
            for layer, hs in heads.layers.items()
        }
        return CapturePlan(self._module_ids, layers, order=heads.heads, stop_layer=heads.deepest_layer)

    def context_limit(self) -> int:
        """Tokens one prompt may hold: the model's context, or ``max_context_tokens`` if smaller."""
        text = self.model.config.get_text_config()
        limit = getattr(text, "max_position_embeddings", None) or 1 << 30
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1 << 24:
            limit = min(limit, tok_max)
        if self.max_context_tokens is not None:
            limit = min(limit, self.max_context_tokens)
        return int(limit)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the scorer reads it (special-token text counts as plain text)."""
        return len(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    _token_count = count_tokens

    def _truncate(self, passage: Passage, max_tokens: int) -> tuple[Passage, bool]:
        enc = self.tokenizer(passage.text, add_special_tokens=False, split_special_tokens=True,
                             return_offsets_mapping=True)
        if len(enc["input_ids"]) <= max_tokens:
            return passage, False
        cut = enc["offset_mapping"][max_tokens - 1][1] if max_tokens > 0 else 0
        return Passage(passage.text[:cut], passage.title), True

    def _encoded(self, passages: Sequence[Any], queries: list[str], *, heads: HeadSet | None = None,
                 keep_cache: bool) -> EncodedPassages:
        queries = [self._check_query(q) for q in queries]
        items = [as_passage(p, i) for i, p in enumerate(passages)]
        truncated = [False] * len(items)
        if self.max_passage_tokens is not None:
            for i, p in enumerate(items):
                items[i], truncated[i] = self._truncate(p, self.max_passage_tokens)
        budget = self.context_limit()
        query_room = max((self._token_count(q) for q in queries), default=self.max_query_tokens)
        overhead = len(self._prompt([], "q")) - 1 + query_room
        available = budget - overhead
        if available < 16:
            raise ValueError(
                f"the context budget ({budget} tokens) leaves no room for passages after the "
                f"template and a query of {query_room} tokens"
            )
        # Block length of each passage ([i] marker, title, text, separator), with a small margin.
        lengths = [self._token_count(self.template.passage_block(999, p) + self.template.separator) + 2
                   for p in items]
        for i, length in enumerate(lengths):
            if length > available:
                keep = max(1, self._token_count(items[i].text) - (length - available))
                items[i], _ = self._truncate(items[i], keep)
                truncated[i] = True
                lengths[i] = available
                logger.warning(
                    "passage %d does not fit the context budget of %d tokens on its own; "
                    "it was truncated to %d tokens (flagged on its result)", i, budget, keep)
        capture = heads or self.heads
        null_room = self._token_count(self.null_query)
        if len(items) > 1 and sum(lengths) > available:
            # The per-passage estimate (with its margin) says "windows"; the exact prompt may still fit:
            # measure it before splitting (a prompt a few tokens under the context stays whole).
            whole = EncodedPassages(self, items, capture, [list(range(len(items)))], truncated, keep_cache,
                                    query_room)
            if max(len(w.null_prompt) - null_room + query_room for _, w in whole.windows) <= budget:
                return whole
        for _ in range(8):
            windows = plan_windows(lengths, available)
            enc = EncodedPassages(self, items, capture, windows, truncated, keep_cache, query_room)
            longest = max(len(w.null_prompt) - null_room + query_room for _, w in enc.windows)
            if longest <= budget:
                if len(windows) > 1:
                    logger.info("%d passages split into %d windows (budget %d tokens)",
                                len(items), len(windows), budget)
                return enc
            available -= longest - budget + 8  # the estimate was short: plan again with less room
        raise RuntimeError("could not lay out the passages within the context budget")

    @torch.inference_mode()
    def _encode_prefix(self, prefix: Sequence[int], plan: CapturePlan) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        plan.rows = None
        ids = torch.tensor([list(prefix)], dtype=torch.long, device=self._input_device)
        with capturing(self.model, plan):
            run_until_stop(self.model, plan, input_ids=ids, past_key_values=cache, use_cache=True)
        return cache

    @torch.inference_mode()
    def _query_mass(self, prompt: TokenizedPrompt, cache: Any, plan: CapturePlan) -> np.ndarray:
        start = prompt.suffix_start
        suffix = prompt.input_ids[start:]
        q0, q1 = prompt.query_span
        plan.rows = slice(q0 - start, q1 - start)
        plan.out = {}
        ids = torch.tensor([list(suffix)], dtype=torch.long, device=self._input_device)
        saved = _snapshot(cache)
        try:
            _keep_prefix_only(saved)
            with capturing(self.model, plan):
                run_until_stop(self.model, plan, input_ids=ids, past_key_values=cache, use_cache=True)
        finally:
            _restore(cache, saved)
            plan.rows = None
        total = len(prompt.input_ids)
        n = len(prompt.passage_spans)
        seg = torch.full((total,), n, dtype=torch.long)
        for i, (a, b) in enumerate(prompt.passage_spans):
            seg[a:b] = i
        rows = []
        for layer, lh in plan.layers.items():
            mass = plan.out.pop(layer).cpu()  # [h, K]: keys are the last K positions
            keys = mass.shape[1]
            per = torch.zeros((mass.shape[0], n + 1), dtype=torch.float64)
            per.index_add_(1, seg[total - keys:], mass.double())
            rows.append((layer, lh, per[:, :n]))
        by_head = {}
        for layer, lh, per in rows:
            for pos, head in enumerate(lh.heads):
                by_head[(layer, head)] = per[pos]
        return torch.stack([by_head[h] for h in plan.order]).numpy()

    def _ranking(self, passages: list[Passage], scores: list[float], top_k: int | None,
                 truncated: list[bool], window_of: list[int],
                 first_stage_scores: Sequence[float] | None = None) -> list[RankedPassage]:
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
            raise ValueError(f"top_k must be a non-negative integer or None, not {top_k!r}")
        if first_stage_scores is not None and len(first_stage_scores) != len(scores):
            raise ValueError(f"first_stage_scores has {len(first_stage_scores)} values for {len(scores)} passages")
        final = scores
        if self.fusion is not None:
            final = fuse(scores, first_stage_scores, self.fusion, self.fusion_weight, self.rrf_k)
        order = sorted(range(len(final)), key=lambda i: (-final[i], i))
        if top_k is not None:
            order = order[:top_k]
        return [
            RankedPassage(index=i, score=final[i], rank=r, text=passages[i].text, title=passages[i].title,
                          truncated=truncated[i], window=window_of[i], qrhead_score=scores[i],
                          first_stage_score=None if first_stage_scores is None else float(first_stage_scores[i]))
            for r, i in enumerate(order, start=1)
        ]


def _same_passages(a: Sequence[Any], b: Sequence[Any]) -> bool:
    if a is b:
        return True
    if len(a) != len(b):
        return False
    try:
        return all(x is y or x == y for x, y in zip(a, b))
    except Exception:
        return False


def _snapshot(cache: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """References to the cache's state; layer updates concatenate into new tensors, never in place."""
    layers = list(cache.layers)
    return layers, [dict(layer.__dict__) for layer in layers]


def _keep_prefix_only(saved: tuple[list[Any], list[dict[str, Any]]]) -> None:
    """During a query pass, let each cache layer go back to its prefix state right after its update.

    A cache layer's ``update`` concatenates the cached and the new keys/values and keeps the result;
    over a whole pass that holds a second copy of the passages' cache (every layer up to the stop
    layer) until :func:`_restore`. Here each layer still hands the concatenation to its attention, but
    its stored state is reset at once, so at most one layer's concatenation is alive at a time. The
    override is an instance attribute that the reset itself removes (and :func:`_restore` for layers
    the pass never reaches).
    """
    layers, states = saved
    for layer, state in zip(layers, states):
        original = layer.update

        def update(*args: Any, _layer: Any = layer, _state: dict[str, Any] = state, _original: Any = original,
                   **kwargs: Any) -> Any:
            out = _original(*args, **kwargs)
            _layer.__dict__.clear()
            _layer.__dict__.update(_state)
            return out

        layer.update = update


def _restore(cache: Any, saved: tuple[list[Any], list[dict[str, Any]]]) -> None:
    layers, states = saved
    cache.layers[:] = layers
    for layer, state in zip(layers, states):
        layer.__dict__.clear()
        layer.__dict__.update(state)
