"""The encoder with SpanBERT's two heads: masked-language modelling and span boundary.

The span boundary objective (SBO) predicts each token of a masked span from the encoder
outputs at the span's two boundary tokens (x_{s-1}, x_{e+1}) and a learned embedding of
the token's position inside the span, through a 2-layer feed-forward network with GeLU
and LayerNorm; its output weights are the word embeddings (tied), as in the reference.
Both heads score only the masked positions: a full-vocabulary projection of every token
would cost more than the encoder on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel

from ..runtime.hub import offline_error, resolve


class SpanBoundaryHead(nn.Module):
    def __init__(self, hidden_size: int, vocab_size: int, max_positions: int = 30,
                 position_size: int = 200, eps: float = 1e-12, init_std: float = 0.02):
        super().__init__()
        self.max_positions = max_positions
        self.position = nn.Embedding(max_positions, position_size)
        # Named like the reference's MLPWithLayerNorm; "layer_norm" also keeps weight decay
        # off these parameters (reader.train.optimizer_groups).
        self.linear1 = nn.Linear(2 * hidden_size + position_size, hidden_size)
        self.layer_norm1 = nn.LayerNorm(hidden_size, eps=eps)
        self.linear2 = nn.Linear(hidden_size, hidden_size)
        self.layer_norm2 = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        for module in (self.position, self.linear1, self.linear2):  # BERT's initialisation
            nn.init.normal_(module.weight, std=init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor,
                row: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                position: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for each span target (flat, one row per target)."""
        x = torch.cat([hidden[row, left], hidden[row, right], self.position(position)], dim=-1)
        x = self.layer_norm1(F.gelu(self.linear1(x)))
        x = self.layer_norm2(F.gelu(self.linear2(x)))
        return F.linear(x, word_embeddings, self.bias)


class SpanBertPretrainer(nn.Module):
    """A masked-LM encoder plus an optional SBO head; `forward` returns summed losses."""

    def __init__(self, mlm: PreTrainedModel, sbo: bool = True, max_span_positions: int = 30):
        super().__init__()
        if not hasattr(mlm, "cls"):
            raise ValueError(f"{type(mlm).__name__}: span pretraining needs a BERT-family "
                             "masked-LM model (with a `cls` prediction head)")
        self.mlm = mlm
        config = mlm.config
        self.sbo = (SpanBoundaryHead(config.hidden_size, config.vocab_size, max_span_positions,
                                     eps=config.layer_norm_eps,
                                     init_std=config.initializer_range) if sbo else None)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Summed cross-entropies (MLM, SBO) and target counts, so the caller can average
        over a global batch split across accumulation steps and processes."""
        hidden = self.mlm.base_model(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"]).last_hidden_state
        labels = batch["labels"]
        where = labels != -100
        mlm_logits = self.mlm.cls(hidden[where])
        out = {"mlm_loss": F.cross_entropy(mlm_logits.float(), labels[where], reduction="sum"),
               "mlm_targets": where.sum()}
        if self.sbo is not None:
            embeddings = self.mlm.get_input_embeddings().weight
            logits = self.sbo(hidden, embeddings, batch["sbo_row"], batch["sbo_left"],
                              batch["sbo_right"], batch["sbo_position"])
            out["sbo_loss"] = F.cross_entropy(logits.float(), batch["sbo_target"],
                                              reduction="sum")
            out["sbo_targets"] = torch.tensor(len(batch["sbo_target"]))
        return out


def load_mlm_model(name_or_path: str) -> PreTrainedModel:
    """An encoder with a masked-LM head (a new head when the checkpoint has none, as the
    offline MiniLM, a sentence-embedding model, does not)."""
    name = resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name)
        return AutoModelForMaskedLM.from_pretrained(name, config=config)
    except (OSError, ValueError) as exc:
        raise offline_error(name, exc) from exc
