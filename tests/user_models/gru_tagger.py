"""A sequence tagger on token ids: Embedding + GRU + Linear, one tag per token.

Random weights (seeded); its example input is int64 ids ``(1, 12)``, its output
``(1, 12, TAGS)``. No data of its own: the harness draws evaluation ids from the
embedding's range and scores fidelity to the fp32 model.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 40
TAGS = 6
SEQ = 12


class GruTagger(nn.Module):
    def __init__(self, vocab: int = VOCAB, dim: int = 16, hidden: int = 32, tags: int = TAGS):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embed(tokens))
        return self.head(states)


def make() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return GruTagger().eval(), torch.randint(0, VOCAB, (1, SEQ))
