"""newsknn: a 20 Newsgroups classifier made of a triplet-fine-tuned sentence embedding model,
an hnswlib index over the training documents and a k-nearest-neighbour vote.

The package holds the logic shared by the DVC stages (``stages/``) and the web app (``app/``);
the stages only parse arguments and do I/O around these functions.
"""

__version__ = "0.1.0"
