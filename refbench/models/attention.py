"""Document 001 section 3.4 (names only, no code): a GRU encoder-decoder with attention, three score functions.

The encoder is a bidirectional GRU; the decoder a GRU whose every output
state attends over the encoder states. The attention layer follows Luong
et al. (2015): context = sum_s softmax(score(h_t, e_s)) e_s over the
unpadded source positions, then tanh(W [context; h_t]) predicts the token.
Three workloads differ only in ``score``:

- ``attention_additive`` (Bahdanau): v^T tanh(W_q h + W_k e), for the document's "content attention"
- ``attention_dot`` (Luong): h . e, for its "query-key value attention"
- ``attention_general`` (Luong): h^T W e, for its "general attention"
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from refbench.models._notes import CPU_CHECK, Notes
from refbench.models._registry import register_model
from refbench.models._workload import Recipe, Target
from refbench.models.data import seq2seq
from refbench.models.data._sequences import PAD
from refbench.models.transformer import SEQ2SEQ_FULL, Seq2SeqWorkload

SCORES = ("additive", "dot", "general")


class Attention(nn.Module):
    """Weights over source positions for each query; padding gets weight zero.

    The softmax is an ``nn.Softmax`` module so a kernel can be swapped in.
    """

    def __init__(self, score: str, hidden: int):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score {score!r} is not one of {SCORES}")
        self.score = score
        if score == "additive":
            self.w_query = nn.Linear(hidden, hidden, bias=False)
            self.w_key = nn.Linear(hidden, hidden)
            self.v = nn.Linear(hidden, 1, bias=False)
        elif score == "general":
            self.w = nn.Linear(hidden, hidden, bias=False)
        self.softmax = nn.Softmax(dim=-1)

    def scores(self, queries, keys):
        """(batch, queries, keys) unnormalised scores."""
        if self.score == "additive":
            return self.v(torch.tanh(self.w_query(queries)[:, :, None] + self.w_key(keys)[:, None])).squeeze(-1)
        if self.score == "general":
            keys = self.w(keys)
        return queries @ keys.transpose(1, 2)

    def forward(self, queries, keys, mask):
        """(context (batch, queries, hidden), weights (batch, queries, keys)).

        ``mask`` (batch, keys) is True on tokens, False on padding.
        """
        weights = self.softmax(self.scores(queries, keys).masked_fill(~mask[:, None], float("-inf")))
        return weights @ keys, weights


class AttentionSeq2Seq(nn.Module):
    def __init__(self, score: str, *, vocab_size: int = seq2seq.VOCAB_SIZE, embed: int = 32, hidden: int = 128):
        super().__init__()
        self.src_embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.encoder = nn.GRU(embed, hidden // 2, batch_first=True, bidirectional=True)
        self.decoder = nn.GRU(embed, hidden, batch_first=True)
        self.attention = Attention(score, hidden)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.generator = nn.Linear(hidden, vocab_size)

    def encode(self, src):
        """(encoder states (batch, src length, hidden), mask, the decoder's initial state)."""
        mask = src != PAD
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(self.src_embed(src), lengths, batch_first=True, enforce_sorted=False)
        states, last = self.encoder(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=src.shape[1])
        return states, mask, torch.cat([last[0], last[1]], dim=-1)[None]  # both directions' final states

    def attend(self, outputs, states, mask):
        """Logits from decoder outputs and their attention context; also the weights."""
        context, weights = self.attention(outputs, states, mask)
        return self.generator(torch.tanh(self.combine(torch.cat([context, outputs], dim=-1)))), weights

    def forward(self, src, tgt_in):
        states, mask, hidden = self.encode(src)
        outputs, _ = self.decoder(self.tgt_embed(tgt_in), hidden)
        return self.attend(outputs, states, mask)[0]

    @torch.no_grad()
    def generate(self, src, steps: int, *, return_weights: bool = False):
        """Greedy decoding, one GRU step at a time: (batch, steps) tokens [and (batch, steps, src) weights]."""
        states, mask, hidden = self.encode(src)
        token = torch.full((src.shape[0], 1), seq2seq.BOS, dtype=torch.long, device=src.device)
        tokens, all_weights = [], []
        for _ in range(steps):
            output, hidden = self.decoder(self.tgt_embed(token), hidden)
            logits, weights = self.attend(output, states, mask)
            token = logits.argmax(-1)
            tokens.append(token)
            all_weights.append(weights)
        tokens = torch.cat(tokens, dim=1)
        return (tokens, torch.cat(all_weights, dim=1)) if return_weights else tokens


ATTENTION_NOTES = Notes(
    document="001", section="3.4 注意力机制",
    says=(
        "The section names `内容注意力（content attention）`, `查询-键值注意力（query-key value attention）` and "
        "`通用注意力（general attention）` and defines none of them; it gives no code, model, task, data set or "
        "recipe.",
    ),
    changed=(
        "The model is refbench's: a GRU encoder-decoder in which all three score functions sit in the same "
        "decoder (Luong's placement: the decoder GRU runs first and its output attends), so they are compared "
        "on equal terms; Bahdanau's original feeds the context into the GRU step instead.",
        "The encoder is a bidirectional GRU over packed sequences, so padding never reaches its final states; "
        "padded positions get attention weight zero.",
    ),
    substituted=("The document names no task; refbench reverses synthetic digit strings of 2 to 10 digits, held "
                 "out: no test string occurs in training.",),
    own_choices=("'reference' (Adam, lr 1e-3, batch 64, 10 epochs) and 'fast' (lr 3e-3, batch 128) are "
                 "refbench's; the targets use 'fast'.",),
    as_written="None: the document gives no code.",
)


def reading(phrase: str, score: str) -> Notes:
    """The shared notes, with which of the document's names this score function stands for."""
    return ATTENTION_NOTES.adding(own_choices=(
        f"The {score} score stands for the document's {phrase}; the mapping is refbench's reading, since the "
        f"document defines none of its names.",))


class AttentionWorkload(Seq2SeqWorkload):
    score: str
    recipes = {
        "reference": Recipe(optimizer="adam", lr=1e-3, batch_size=64, epochs=10, source="refbench's"),
        "fast": Recipe(optimizer="adam", lr=3e-3, batch_size=128, epochs=10, source="refbench's"),
    }
    targets = {
        "quick": Target("sequence_accuracy", 0.95, recipe="fast", max_epochs=3, max_steps=800, wall_cap_s=200,
                        eval_every_steps=100, source=CPU_CHECK),
        "full": Target("sequence_accuracy", 0.99, recipe="fast", max_epochs=20, stop_at_target=True,
                       source=SEQ2SEQ_FULL),
    }

    def build(self) -> nn.Module:
        return AttentionSeq2Seq(self.score)


@register_model
class AdditiveAttentionWorkload(AttentionWorkload):
    name, score = "attention_additive", "additive"
    source = "document 001 section 3.4: GRU seq2seq with additive (Bahdanau) attention"
    notes = reading("content attention: Bahdanau's v^T tanh(W_q h + W_k e) scores the content of both states",
                    "additive")


@register_model
class DotAttentionWorkload(AttentionWorkload):
    name, score = "attention_dot", "dot"
    source = "document 001 section 3.4: GRU seq2seq with dot-product (Luong) attention"
    notes = reading("query-key value attention: the decoder state is the query, the encoder states are keys "
                    "scored by a dot product and the values averaged", "dot")


@register_model
class GeneralAttentionWorkload(AttentionWorkload):
    name, score = "attention_general", "general"
    source = "document 001 section 3.4: GRU seq2seq with general (Luong) attention"
    notes = reading("general attention, Luong et al.'s name for h^T W e", "general")
