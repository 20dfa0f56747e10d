"""Retrieval and re-ranking (ICMA_SPEC §2–3): BM25, fingerprints, GIN embeddings, neighbour files, selection."""

from icma_jax.retrieval.index import (Neighbours, from_positions, read_neighbours_jsonl, read_neighbours_tsv,
                                      write_neighbours_jsonl, write_neighbours_tsv)
from icma_jax.retrieval.rerank import SelectionConfig, prompt_order, select, select_all
from icma_jax.retrieval.retrieve import METHODS, retrieve, self_exclusions

__all__ = ["METHODS", "Neighbours", "SelectionConfig", "from_positions", "prompt_order", "read_neighbours_jsonl",
           "read_neighbours_tsv", "retrieve", "select", "select_all", "self_exclusions", "write_neighbours_jsonl",
           "write_neighbours_tsv"]
