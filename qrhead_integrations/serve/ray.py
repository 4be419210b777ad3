"""Beyond one machine: Ray Serve replicas behind the same HTTP API, and a Ray Data batch job.

Serving: one replica per GPU (CPU replicas when the cluster has none), each with its own model and
worker thread, behind ``qrhead serve``'s FastAPI app (Cohere ``/v1|/v2/rerank``, TEI ``/rerank``)::

    from ray import serve
    from qrhead_integrations.serve import ScorerSettings
    from qrhead_integrations.serve.ray import deployment

    serve.run(deployment(ScorerSettings(model="Qwen/Qwen2.5-7B-Instruct"), num_replicas=4, num_gpus=1))

or ``serve run qrhead_integrations.serve.ray:build_app model=... num_replicas=4`` (a Ray Serve
application builder, also usable from a Serve config file), or
``python -m qrhead_integrations.serve.ray serve --num-replicas 4``.

Batch: score a large set of ``{"query": ..., "candidates": [...]}`` rows with one actor per device::

    from qrhead_integrations.serve.ray import rerank_dataset
    rerank_dataset("pairs.jsonl", ScorerSettings(), num_actors=8).write_parquet("scored/")

or ``python -m qrhead_integrations.serve.ray batch --input pairs.jsonl --output scored.jsonl``. Each
output row is the input row plus ``scores`` (one per candidate, input order), ``ranking`` (candidate
indices best first, ``top_n`` of them when given) and ``error`` (null, or why the row failed).

Every score is ``scorer.rank(query, candidates)``'s, through the same batching path as the HTTP server and a
single process, so results do not depend on the number of replicas or actors. Ray is imported lazily:
this module imports without the ``ray`` extra; its functions then say how to install it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..cli_options import add_load_args, load_from_args
from .config import API_KEY_ENV, Limits, ScorerSettings, require_extra
from .worker import rank_groups


def _ray() -> Any:
    require_extra("ray", "qrhead_integrations.serve.ray")
    import ray

    return ray


def cluster_gpus() -> float:
    """GPUs in the Ray cluster (connecting to it, or starting a local one, if needed)."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init()
    return float(ray.cluster_resources().get("GPU", 0))


def _placement(num_workers: int | None, num_gpus: float | None) -> tuple[int, float]:
    """``(workers, gpus per worker)``: one per GPU of the cluster, else one CPU worker, unless given."""
    if num_gpus is None:
        num_gpus = 1.0 if cluster_gpus() >= 1 else 0.0
    if num_workers is None:
        num_workers = max(1, int(cluster_gpus() // num_gpus)) if num_gpus else 1
    return num_workers, num_gpus


def _on_cpu_without_gpus(settings: ScorerSettings, num_gpus: float) -> ScorerSettings:
    """Workers given no GPU run on the CPU even where a GPU is visible (Ray may not hide it from them)."""
    if not num_gpus and settings.device is None and "device_map" not in settings.options:
        return dataclasses.replace(settings, device="cpu")
    return settings


# --- Ray Serve ---------------------------------------------------------------------------------


def deployment(
    settings: ScorerSettings | None = None,
    limits: Limits | None = None,
    *,
    num_replicas: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    api_key: str | None = None,
    api_key_env: str | None = API_KEY_ENV,
    docs: bool = True,
    name: str = "qrhead-rerank",
    **deployment_options: Any,
) -> Any:
    """A Ray Serve application (``serve.run(...)`` it) serving ``settings``' scorer over HTTP.

    ``num_gpus`` per replica (default: 1 when the cluster has GPUs, else 0) and ``num_replicas``
    (default: one per GPU, or 1) place the replicas; ``num_cpus`` per replica defaults to 1. Each
    replica loads the model itself (``settings`` travel, weights do not) and answers the same routes as
    ``qrhead serve``. ``api_key`` is pickled into the deployment; prefer leaving it ``None`` and setting
    ``$QRHEAD_API_KEY`` (``api_key_env``) in the replicas' environment, e.g. with
    ``ray_actor_options={"runtime_env": {"env_vars": {...}}}`` or on the nodes. Further keyword
    arguments go to ``serve.deployment`` (``autoscaling_config``, ``max_ongoing_requests``,
    ``ray_actor_options``...); ``max_ongoing_requests`` defaults to ``limits.max_queue`` so that
    requests reach the replica's own queue, where those over the same documents share an encoding.
    """
    _ray()
    from ray import serve

    from .app import create_app

    settings = settings or ScorerSettings()
    limits = limits or Limits()
    autoscaling = deployment_options.get("autoscaling_config") is not None
    replicas, gpus = _placement(num_replicas if not autoscaling else 1, num_gpus)
    actor_options = dict(deployment_options.pop("ray_actor_options", None) or {})
    actor_options.setdefault("num_gpus", gpus)
    actor_options.setdefault("num_cpus", 1 if num_cpus is None else num_cpus)
    deployment_options.setdefault("max_ongoing_requests", limits.max_queue)
    if not autoscaling:
        deployment_options["num_replicas"] = replicas
    settings = _on_cpu_without_gpus(settings, actor_options["num_gpus"])
    app = create_app(settings, limits, api_key=api_key, api_key_env=api_key_env, docs=docs)

    @serve.ingress(app)
    class QRHeadRerankDeployment:
        """One replica: a model, its worker thread and the HTTP routes of ``qrhead serve``."""

    return serve.deployment(QRHeadRerankDeployment, name=name, ray_actor_options=actor_options,
                            **deployment_options).bind()


def _coerce(value: Any, kind: type) -> Any:
    if value is None or isinstance(value, kind):
        return value
    text = str(value)
    if kind is bool:
        return text.lower() in ("1", "true", "yes", "on")
    return kind(text)


def scoring_options(args: dict[str, Any]) -> dict[str, Any]:
    """The scoring options among ``args`` (strings from ``serve run``, coerced by each option's declared
    type; ``order`` is ``candidate_order``), validated by ``ScoringOptions``."""
    from ..engine.options import ScoringOptions, option_specs

    options: dict[str, Any] = {}
    for spec in option_specs():
        raw = args.get(spec.name, args.get("order") if spec.name == "candidate_order" else None)
        if raw is None or spec.name == "show_progress":
            continue
        none = spec.nullable and str(raw).lower() == "none"
        options[spec.name] = None if none else raw if spec.kind is str else _coerce(raw, spec.kind)
    ScoringOptions(**options)  # a bad value fails here, before any replica starts
    return options


def loading_settings(args: dict[str, Any]) -> dict[str, Any]:
    """The model-loading settings among ``args`` (strings from ``serve run``; generated from
    :class:`~qrhead_integrations.engine.load_options.LoadOptions`: ``model``, ``device``, ``device_map``,
    ``dtype``, ``attn_implementation``, ``revision``, ``trust_remote_code``, ``model_kwargs`` as JSON),
    validated by ``LoadOptions``."""
    from ..cli_options import json_object
    from ..engine.load_options import LoadOptions, load_specs

    load: dict[str, Any] = {}
    for spec in load_specs():
        if spec.name not in args:
            continue
        raw = args[spec.name]
        if isinstance(raw, str) and raw.lower() == "none":
            raw = None
        if spec.kind is dict and isinstance(raw, str):
            raw = json_object(raw)
        elif spec.kind is bool:
            raw = _coerce(raw, bool)
        load[spec.name] = raw
    LoadOptions(**load)  # a bad value fails here, before any replica starts
    return load


def build_app(args: dict[str, Any]) -> Any:
    """Ray Serve application builder: ``serve run qrhead_integrations.serve.ray:build_app model=X ...``.

    Keys (strings on the command line): heads; every model-loading setting by its name (model, device,
    device_map, dtype, attn_implementation, revision, trust_remote_code, model_kwargs as JSON); every scoring option by its name
    (:class:`~qrhead_integrations.ScoringOptions`: ``candidate_order`` or ``order``, ``first_stage``,
    ``fusion``, ``max_context_tokens``..., ``none`` for None); num_replicas, num_gpus, num_cpus;
    max_documents, max_request_tokens, max_query_tokens, max_body_bytes, max_queue, max_group; docs. The
    API key comes from ``$QRHEAD_API_KEY`` in the replicas' environment.
    """
    args = dict(args or {})
    options = scoring_options(args)
    settings = ScorerSettings.from_load(loading_settings(args), heads=args.get("heads"), options=options)
    limit_args: dict[str, Any] = {}
    for key in ("max_documents", "max_request_tokens", "max_query_tokens", "max_body_bytes", "max_queue",
                "max_group"):
        if key in args:
            value = _coerce(args[key], int)
            limit_args[key] = None if value == 0 and key not in ("max_queue", "max_group") else value
    limits = Limits(**limit_args)
    return deployment(
        settings, limits,
        num_replicas=_coerce(args.get("num_replicas"), int), num_gpus=_coerce(args.get("num_gpus"), float),
        num_cpus=_coerce(args.get("num_cpus"), float), docs=_coerce(args.get("docs", True), bool),
    )


# --- Ray Data ----------------------------------------------------------------------------------


def rerank_rows(scorer: Any, rows: Sequence[dict[str, Any]], *, query_key: str = "query",
                candidates_key: str = "candidates", top_n: int | None = None) -> list[dict[str, Any]]:
    """Score rows in this process: ``[{"scores", "ranking", "error"}]``, one per row, in order.

    ``scores``: one per candidate, input order; ``ranking``: candidate indices best first (``top_n``
    of them when given); ``error``: ``None``, or the message of the row's error (then ``scores`` and
    ``ranking`` are ``None``). Rows with identical candidates share one encoding.
    """
    requests = []
    for row in rows:
        candidates = row.get(candidates_key)
        requests.append((row.get(query_key), list(candidates) if candidates is not None else []))
    out: list[dict[str, Any]] = [{} for _ in rows]
    for pos, result, _ in rank_groups(scorer, requests):
        if isinstance(result, BaseException):
            out[pos] = {"scores": None, "ranking": None, "error": f"{type(result).__name__}: {result}"}
            continue
        scores = [0.0] * len(result)
        for r in result:
            scores[r.index] = float(r.score)
        ranking = [r.index for r in result]
        out[pos] = {"scores": scores, "ranking": ranking if top_n is None else ranking[:top_n], "error": None}
    return out


class RerankPredictor:
    """Ray Data callable class (``map_batches``): one scorer per actor, pyarrow batches in and out.

    Adds the columns ``scores``, ``ranking`` and ``error`` (see :func:`rerank_rows`) to each batch.
    """

    def __init__(self, settings: ScorerSettings, query_key: str = "query", candidates_key: str = "candidates",
                 top_n: int | None = None):
        self.scorer = settings.load()
        self.query_key = query_key
        self.candidates_key = candidates_key
        self.top_n = top_n

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.select([self.query_key, self.candidates_key]).to_pylist()
        out = rerank_rows(self.scorer, rows, query_key=self.query_key, candidates_key=self.candidates_key,
                          top_n=self.top_n)
        columns = {
            "scores": pa.array([o["scores"] for o in out], type=pa.list_(pa.float64())),
            "ranking": pa.array([o["ranking"] for o in out], type=pa.list_(pa.int64())),
            "error": pa.array([o["error"] for o in out], type=pa.string()),
        }
        for name, column in columns.items():
            if name in batch.column_names:
                batch = batch.drop_columns([name])
            batch = batch.append_column(name, column)
        return batch


def _read(data: Any) -> Any:
    ray = _ray()
    if isinstance(data, ray.data.Dataset):
        return data
    if isinstance(data, str):
        if data.endswith(".parquet"):
            return ray.data.read_parquet(data)
        try:  # JSON Lines unless the name ends with .json (then one JSON document per file)
            return ray.data.read_json(data, lines=not data.endswith(".json"))
        except TypeError:  # Ray versions without ``lines`` detect JSON Lines themselves
            return ray.data.read_json(data)
    return ray.data.from_items(list(data))


def rerank_dataset(
    data: Any,
    settings: ScorerSettings | None = None,
    *,
    query_key: str = "query",
    candidates_key: str = "candidates",
    top_n: int | None = None,
    num_actors: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    batch_size: int = 16,
) -> Any:
    """A lazy Ray Dataset: ``data``'s rows with ``scores``, ``ranking`` and ``error`` added.

    ``data``: a ``ray.data.Dataset``, a ``.jsonl``/``.json``/``.parquet`` path (local or remote, as Ray
    reads it) or a list of dicts. ``num_gpus`` per actor (default: 1 when the cluster has GPUs) and
    ``num_actors`` (default: one per GPU, or 1) place the actors; ``num_cpus`` per actor defaults to 1.
    Write the result with ``.write_parquet(...)``/``.write_json(...)`` or iterate it; set
    ``ray.data.DataContext.get_current().execution_options.preserve_order = True`` first to keep the
    input order. Candidates of one file must be all strings or all objects with ``text``.
    """
    ray = _ray()
    settings = settings or ScorerSettings()
    ds = _read(data)
    actors, gpus = _placement(num_actors, num_gpus)
    settings = _on_cpu_without_gpus(settings, gpus)
    return ds.map_batches(
        RerankPredictor,
        fn_constructor_kwargs={"settings": settings, "query_key": query_key, "candidates_key": candidates_key,
                               "top_n": top_n},
        batch_format="pyarrow", batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus, num_cpus=1 if num_cpus is None else num_cpus,
    )


# --- command line ------------------------------------------------------------------------------


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    add_load_args(p, only=("model",), helps={"model": "hub id, local folder, .gguf file or packaged model name"})
    p.add_argument("--heads", default=None, help="head set (default: the one registered for the model)")
    add_load_args(p, skip=("model",), helps={"device": "default: the replica's/actor's GPU, else cpu"})
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local one)")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs per replica/actor (default: 1 if any)")
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs per replica/actor (default 1)")


def _settings(args: argparse.Namespace) -> ScorerSettings:
    return ScorerSettings.from_load(load_from_args(args), heads=args.heads)


def cmd_batch(args: argparse.Namespace) -> int:
    ray = _ray()
    ray.init(address=args.address, ignore_reinit_error=True)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = rerank_dataset(args.input, _settings(args), query_key=args.query_key, candidates_key=args.candidates_key,
                        top_n=args.top_n, num_actors=args.num_actors, num_gpus=args.num_gpus,
                        num_cpus=args.num_cpus, batch_size=args.batch_size)
    n = failed = 0
    with open(args.output, "w", encoding="utf-8") as f:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in batch.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                n += 1
                failed += row.get("error") is not None
    print(f"wrote {n} rows to {args.output}" + (f" ({failed} with an error)" if failed else ""), file=sys.stderr)
    return 0 if not failed else 1


def cmd_serve(args: argparse.Namespace) -> int:
    ray = _ray()
    from ray import serve

    ray.init(address=args.address, ignore_reinit_error=True)
    serve.start(http_options={"host": args.host, "port": args.port})
    limits = Limits(max_documents=args.max_documents or None, max_queue=args.max_queue)
    app = deployment(_settings(args), limits, num_replicas=args.num_replicas, num_gpus=args.num_gpus,
                     num_cpus=args.num_cpus)
    print(f"serving on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
    serve.run(app, name="qrhead", route_prefix="/", blocking=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qrhead_integrations.serve.ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("batch", help="score a JSONL/Parquet file of (query, candidates) rows with Ray Data")
    b.add_argument("--input", required=True, help=".jsonl (one {query, candidates} object a line) or .parquet")
    b.add_argument("--output", required=True, help=".jsonl: input rows + scores, ranking, error (input order)")
    b.add_argument("--query-key", default="query")
    b.add_argument("--candidates-key", default="candidates")
    b.add_argument("--top-n", type=int, default=None, help="keep only the best N indices in 'ranking'")
    b.add_argument("--num-actors", type=int, default=None, help="default: one per GPU, or 1")
    b.add_argument("--batch-size", type=int, default=16, help="rows per batch (default 16)")
    _add_model_arguments(b)
    b.set_defaults(func=cmd_batch)
    s = sub.add_parser("serve", help="serve the HTTP API on Ray Serve (one replica per GPU)")
    s.add_argument("--host", default="127.0.0.1", help="address of Serve's HTTP proxy (0.0.0.0 for all)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--num-replicas", type=int, default=None, help="default: one per GPU, or 1")
    s.add_argument("--max-documents", type=int, default=Limits().max_documents)
    s.add_argument("--max-queue", type=int, default=Limits().max_queue)
    _add_model_arguments(s)
    s.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
