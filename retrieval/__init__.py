"""Retrieval: text and speaker embedders, a FAISS + SQLite store, ingestion and search.

    from stepvoice.retrieval import Retriever
    r = Retriever.open(data_dir)            # DATA/index/...
    r.add_paths(["notes/", "manual.pdf"])
    r.search("how do I reset it?", k=5)     # -> [Hit(id, kind, source, text, score, path)]
"""
from stepvoice.retrieval.ingest import ChunkingConfig, IngestError, chunk_text
from stepvoice.retrieval.retriever import Hit, IngestReport, Retriever
from stepvoice.retrieval.speaker_embedder import CampPlusEmbedder, DVectorEmbedder, SpeakerEmbedder, load_speaker_embedder
from stepvoice.retrieval.store import NewItem, Store, StoreBusy, StoreConfig, StoreError
from stepvoice.retrieval.text_embedder import E5Embedder, HashEmbedder, TextEmbedder, TransformerEmbedder, load_text_embedder

__all__ = [
    "CampPlusEmbedder", "ChunkingConfig", "DVectorEmbedder", "E5Embedder", "HashEmbedder", "Hit", "IngestError",
    "IngestReport", "NewItem", "Retriever", "SpeakerEmbedder", "Store", "StoreBusy", "StoreConfig", "StoreError",
    "TextEmbedder", "TransformerEmbedder", "chunk_text", "load_speaker_embedder", "load_text_embedder",
]
