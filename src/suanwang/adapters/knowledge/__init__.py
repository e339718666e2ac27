"""Knowledge-base adapters: the embedded index (sqlite-vec + FTS5), the sandboxed document
parser, Chinese word segmentation and the embedder that calls the gateway."""
